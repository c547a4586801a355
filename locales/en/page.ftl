# The hosted verification page, in English. Every message here must also
# be in fr/page.ftl and ru/page.ftl (a test checks).

page-title = Confirm your eligibility
heading = Confirm your eligibility
intro = { $brand } has an offer for { $group }. Enter your details exactly as your records hold them.
language-nav = Language
choose-legend = Which group do you belong to?
choose-continue = Continue
field-given_name = First name
field-family_name = Last name
field-email = Email address
field-license_number = Licence number
field-organization = School, employer or organisation
field-birth_date = Date of birth
field-birth_day = Day
field-birth_month = Month
field-birth_year = Year
hint-birth_date = For example, 27 3 2007
hint-email = The address your school, employer or service gave you
consent = I agree that { $brand } may check these details against its verification records to confirm that I belong to this group. They are used only for this check.
submit = Verify
required-note = All fields are required.
error-summary-title = There is a problem
error-given_name = Enter your first name
error-family_name = Enter your last name
error-email = Enter an email address, like name@example.com
error-license_number = Enter your licence number
error-organization = Enter your school, employer or organisation
error-birth_date = Enter a real date of birth, like 27 3 2007
error-consent = Tick the box to agree to the check
error-community = Choose the group you belong to
error-other = Check this field
error-prefix = Error:
not-verified-title = We could not verify you
not-verified-body = Check that your details match your records, then try again.
attempts-left = { $left ->
    [one] You have { $left } attempt left.
   *[other] You have { $left } attempts left.
}
exhausted-body = You can go back to { $brand } and continue without the offer.
verified-title = You are verified
verified-body = Your eligibility is confirmed. { $brand } can now apply the offer.
continue = Continue to { $brand }
back = Back to { $brand }
expired-title = This link has expired
expired-body = Go back to { $brand } to start again.
canceled-title = This check was canceled
canceled-body = Go back to { $brand } to start again.
unknown-title = This link is not valid
unknown-body = Check the link, or go back to the shop to start again.
rate-limited-title = Too many attempts
rate-limited-body = { $minutes ->
    [one] Wait { $minutes } minute, then try again.
   *[other] Wait { $minutes } minutes, then try again.
}
csrf-title = We could not confirm your request
csrf-body = Open the page again and resubmit the form. Cookies must be allowed for this page.
reload = Open the page again
community-student = students
community-teacher = teachers
community-nurse = nurses
community-military = members of the military
community-first_responder = first responders
community-senior = seniors
subsegment-high_school = high school students
subsegment-college = college students
subsegment-active_duty = active duty
subsegment-veteran = veterans
subsegment-reservist = reservists
subsegment-military_family = military families
subsegment-police = police officers
subsegment-emt = emergency medical technicians
subsegment-firefighter = firefighters
group-with-subsegment = { $community } ({ $subsegment })
