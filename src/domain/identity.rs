//! Identity fields and their canonical forms. Two spellings of one person
//! ("José  O'Brien-Smith", "jose obriensmith", "Ｊｏｓｅ", "Bob"/"Robert")
//! canonicalise alike, so their blind indexes match.

use std::fmt;

use time::Date;
use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

use super::Invalid;
use super::nicknames::given_name_for;

const FIELD_MAX_CHARS: usize = 320;

/// The version of the canonical forms below. Every blind index written
/// carries it (records keep it beside their indexes), so a change of
/// canonicalisation shows up as records of an older version to re-import,
/// not as members who silently stop matching. Version 2 folds the Latin
/// letters that decomposition leaves whole (Ł, Ø, Đ, Æ, Þ, ...).
pub const CANON_VERSION: i16 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdentityField {
    Email,
    GivenName,
    FamilyName,
    BirthDate,
    Organization,
    LicenseNumber,
}

impl IdentityField {
    pub fn as_str(self) -> &'static str {
        match self {
            IdentityField::Email => "email",
            IdentityField::GivenName => "given_name",
            IdentityField::FamilyName => "family_name",
            IdentityField::BirthDate => "birth_date",
            IdentityField::Organization => "organization",
            IdentityField::LicenseNumber => "license_number",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        [
            IdentityField::Email,
            IdentityField::GivenName,
            IdentityField::FamilyName,
            IdentityField::BirthDate,
            IdentityField::Organization,
            IdentityField::LicenseNumber,
        ]
        .into_iter()
        .find(|f| f.as_str() == name)
    }
}

impl fmt::Display for IdentityField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether `c` is a letter of the Latin script beyond ASCII: the blocks
/// Latin-1 Supplement to Latin Extended-B, IPA, Latin Extended Additional,
/// -C and -D. Letters of other scripts (Cyrillic, Greek, Han, ...) are kept
/// as they are: transliterating them would make different names alike.
fn is_extended_latin(c: char) -> bool {
    matches!(c as u32, 0x00C0..=0x02AF | 0x1E00..=0x1EFF | 0x2C60..=0x2C7F | 0xA720..=0xA7FF)
}

/// Letters and digits only, accents and case folded, compatibility forms
/// (full-width, ligatures) unfolded: spaces, hyphens and apostrophes vanish.
/// Latin letters that carry no combining accent (Ł, Ø, Đ, ß, Æ, ı) fold to
/// their ASCII spelling, as people type them on a keyboard without them.
pub fn canonical_text(raw: &str) -> String {
    let lowered = raw.nfkd().collect::<String>().to_lowercase();
    let mut canonical = String::with_capacity(lowered.len());
    for c in lowered.nfkd() {
        if is_combining_mark(c) || !c.is_alphanumeric() {
            continue;
        }
        match deunicode::deunicode_char(c) {
            Some(ascii) if is_extended_latin(c) => canonical.extend(
                ascii
                    .chars()
                    .filter(char::is_ascii_alphanumeric)
                    .map(|a| a.to_ascii_lowercase()),
            ),
            _ => canonical.push(c),
        }
    }
    canonical
}

/// A given name in canonical form, with common nicknames mapped to one name.
pub fn canonical_given_name(raw: &str) -> String {
    let text = canonical_text(raw);
    match given_name_for(&text) {
        Some(name) => name.to_owned(),
        None => text,
    }
}

/// An e-mail address: trimmed, compatibility forms unfolded, lowercased.
pub fn canonical_email(raw: &str) -> String {
    let lowered = raw.nfkc().collect::<String>().to_lowercase();
    lowered.nfkc().collect::<String>().trim().to_owned()
}

/// The identity fields of a person, canonical and checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    pub email: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub birth_date: Option<Date>,
    pub license_number: Option<String>,
    /// Never a match key, but checked against the record's like the others.
    pub organization: Option<String>,
}

/// Identity fields as they arrive.
#[derive(Debug, Clone, Default)]
pub struct RawIdentity {
    pub email: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    /// YYYY-MM-DD.
    pub birth_date: Option<String>,
    /// Not a match key; where the record names one, it must agree.
    pub organization: Option<String>,
    pub license_number: Option<String>,
}

fn present(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

fn text_field(
    value: &Option<String>,
    field: IdentityField,
    canonical: fn(&str) -> String,
    errors: &mut Vec<Invalid>,
) -> Option<String> {
    let raw = present(value)?;
    if raw.chars().count() > FIELD_MAX_CHARS {
        errors.push(Invalid::new(
            field.as_str(),
            format!("at most {FIELD_MAX_CHARS} characters"),
        ));
        return None;
    }
    let text = canonical(raw);
    if text.is_empty() {
        errors.push(Invalid::new(field.as_str(), "has no letters or digits"));
        return None;
    }
    Some(text)
}

pub fn parse_date(raw: &str) -> Option<Date> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    Date::parse(raw.trim(), &format).ok()
}

impl Identity {
    pub fn parse(raw: &RawIdentity) -> Result<Self, Vec<Invalid>> {
        let mut errors = Vec::new();
        let email = text_field(
            &raw.email,
            IdentityField::Email,
            canonical_email,
            &mut errors,
        );
        if let Some(email) = &email
            && !looks_like_email(email)
        {
            errors.push(Invalid::new("email", "is not an e-mail address"));
        }
        let given_name = text_field(
            &raw.given_name,
            IdentityField::GivenName,
            canonical_given_name,
            &mut errors,
        );
        let family_name = text_field(
            &raw.family_name,
            IdentityField::FamilyName,
            canonical_text,
            &mut errors,
        );
        let license_number = text_field(
            &raw.license_number,
            IdentityField::LicenseNumber,
            canonical_text,
            &mut errors,
        );
        let organization = text_field(
            &raw.organization,
            IdentityField::Organization,
            canonical_text,
            &mut errors,
        );
        let birth_date = match present(&raw.birth_date) {
            None => None,
            Some(value) => match parse_date(value) {
                Some(date) => Some(date),
                None => {
                    errors.push(Invalid::new(
                        "birth_date",
                        "must be a date written YYYY-MM-DD",
                    ));
                    None
                }
            },
        };
        if errors.is_empty() {
            Ok(Identity {
                email,
                given_name,
                family_name,
                birth_date,
                license_number,
                organization,
            })
        } else {
            Err(errors)
        }
    }

    pub fn has(&self, field: IdentityField) -> bool {
        match field {
            IdentityField::Email => self.email.is_some(),
            IdentityField::GivenName => self.given_name.is_some(),
            IdentityField::FamilyName => self.family_name.is_some(),
            IdentityField::BirthDate => self.birth_date.is_some(),
            IdentityField::LicenseNumber => self.license_number.is_some(),
            IdentityField::Organization => self.organization.is_some(),
        }
    }

    /// Whether any match rule can apply: an e-mail; given name, family name
    /// and birth date; or licence number and family name.
    pub fn is_matchable(&self) -> bool {
        self.email.is_some()
            || (self.given_name.is_some()
                && self.family_name.is_some()
                && self.birth_date.is_some())
            || (self.license_number.is_some() && self.family_name.is_some())
    }
}

fn looks_like_email(email: &str) -> bool {
    match email.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !email.chars().any(char::is_whitespace)
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accents_and_case_fold_away() {
        assert_eq!(canonical_text("José"), "jose");
        assert_eq!(canonical_text("ZOË"), "zoe");
        assert_eq!(canonical_text("Łukasz"), canonical_text("łukasz"));
        assert_eq!(canonical_text("Straße"), "strasse");
    }

    #[test]
    fn latin_letters_without_a_combining_accent_fold_too() {
        assert_eq!(canonical_text("Łukasz Wałęsa"), "lukaszwalesa");
        assert_eq!(canonical_text("Øystein Sørensen"), "oysteinsorensen");
        assert_eq!(canonical_text("Đorđe"), "dorde");
        assert_eq!(canonical_text("Ærøskøbing"), "aeroskobing");
        assert_eq!(canonical_text("Yıldız"), "yildiz");
        assert_eq!(canonical_text("Þórunn"), "thorunn");
    }

    #[test]
    fn other_scripts_keep_their_letters() {
        assert_eq!(canonical_text("Иван Петров"), "иванпетров");
        assert_eq!(canonical_text("ИВАН"), canonical_text("иван"));
        assert_ne!(canonical_text("Иван"), canonical_text("Ivan"));
        assert_eq!(canonical_text("山田 太郎"), "山田太郎");
    }

    #[test]
    fn hyphens_apostrophes_and_spaces_vanish() {
        assert_eq!(canonical_text("O'Brien-Smith"), "obriensmith");
        assert_eq!(canonical_text("o brien smith"), "obriensmith");
        assert_eq!(canonical_text("  Van der Berg  "), "vanderberg");
        assert_eq!(canonical_text("D’Angelo"), "dangelo");
    }

    #[test]
    fn full_width_characters_unfold() {
        assert_eq!(canonical_text("Ｊｏｓｅ"), "jose");
        assert_eq!(canonical_email("ＡＮＮ@Example.EDU "), "ann@example.edu");
    }

    #[test]
    fn nicknames_map_to_one_given_name() {
        for nickname in ["Bob", "Rob", "Bobby", "robert"] {
            assert_eq!(canonical_given_name(nickname), "robert");
        }
        for nickname in ["Liz", "Beth", "Betty", "Elizabeth"] {
            assert_eq!(canonical_given_name(nickname), "elizabeth");
        }
        for nickname in ["Bill", "Will", "William"] {
            assert_eq!(canonical_given_name(nickname), "william");
        }
        assert_eq!(canonical_given_name("Ann"), "ann");
    }

    #[test]
    fn identity_parse_names_each_bad_field() {
        let raw = RawIdentity {
            email: Some("not-an-address".into()),
            birth_date: Some("17/04/2001".into()),
            given_name: Some("!!!".into()),
            ..Default::default()
        };
        let errors = Identity::parse(&raw).unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["email", "given_name", "birth_date"]);
    }

    #[test]
    fn blank_fields_count_as_absent() {
        let raw = RawIdentity {
            email: Some("   ".into()),
            ..Default::default()
        };
        assert_eq!(Identity::parse(&raw).unwrap(), Identity::default());
    }

    #[test]
    fn matchable_needs_a_complete_rule() {
        let date = parse_date("2001-04-17");
        let name_only = Identity {
            given_name: Some("ann".into()),
            family_name: Some("lee".into()),
            ..Default::default()
        };
        assert!(!name_only.is_matchable());
        assert!(
            Identity {
                birth_date: date,
                ..name_only.clone()
            }
            .is_matchable()
        );
        assert!(
            Identity {
                license_number: Some("rn1".into()),
                ..name_only
            }
            .is_matchable()
        );
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn canonical_text_is_idempotent(raw in "\\PC{0,40}") {
                let once = canonical_text(&raw);
                prop_assert_eq!(canonical_text(&once), once);
            }

            #[test]
            fn canonical_given_name_is_idempotent(raw in "\\PC{0,24}") {
                let once = canonical_given_name(&raw);
                prop_assert_eq!(canonical_given_name(&once), once);
            }

            #[test]
            fn canonical_email_is_idempotent(raw in "\\PC{0,40}") {
                let once = canonical_email(&raw);
                prop_assert_eq!(canonical_email(&once), once);
            }

            #[test]
            fn canonical_text_keeps_only_letters_and_digits(raw in any::<String>()) {
                let text = canonical_text(&raw);
                prop_assert!(text.chars().all(char::is_alphanumeric));
                prop_assert_eq!(text.to_lowercase(), text.clone());
            }

            #[test]
            fn parsing_any_identity_never_panics(
                email in any::<Option<String>>(),
                given in any::<Option<String>>(),
                family in ".{0,400}",
                born in "[0-9-]{0,12}|[+-]?[0-9]{1,6}-[0-9]{1,3}-[0-9]{1,3}",
                license in any::<Option<String>>(),
            ) {
                let raw = RawIdentity {
                    email,
                    given_name: given,
                    family_name: Some(family),
                    birth_date: Some(born),
                    organization: None,
                    license_number: license,
                };
                if let Ok(identity) = Identity::parse(&raw) {
                    for text in [&identity.given_name, &identity.family_name, &identity.license_number]
                        .into_iter()
                        .flatten()
                    {
                        prop_assert!(!text.is_empty());
                        prop_assert!(text.chars().count() <= 4 * FIELD_MAX_CHARS);
                    }
                }
            }
        }
    }
}
