//! Communities: who can be verified, with which fields, for how long.

use std::collections::HashMap;
use std::fmt;

use time::{Date, Duration, OffsetDateTime};

use super::Invalid;
use super::identity::{Identity, IdentityField};

/// A community's key: `student`, `ski_instructor`, ...
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CommunityKey(String);

impl CommunityKey {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let ok = (2..=63).contains(&raw.len())
            && raw.starts_with(|c: char| c.is_ascii_lowercase())
            && raw
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if ok {
            Ok(CommunityKey(raw.to_owned()))
        } else {
            Err(Invalid::new(
                "key",
                "2 to 63 lowercase letters, digits and underscores, starting with a letter",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CommunityKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

const DISPLAY_NAME_MAX: usize = 100;
const MAX_REVERIFY_DAYS: i32 = 36_500;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Community {
    pub key: String,
    pub display_name: String,
    pub subsegments: Vec<String>,
    pub required_fields: Vec<IdentityField>,
    /// None: a success lasts until its record ends.
    pub reverify_after_days: Option<i32>,
    /// Per sub-status overrides; a `None` value means "until the record ends".
    pub subsegment_reverify: HashMap<String, Option<i32>>,
    pub min_age: Option<i32>,
    pub builtin: bool,
}

impl Community {
    /// Every rule a community must keep, each fault named.
    pub fn validate(&self) -> Vec<Invalid> {
        let mut errors = Vec::new();
        if let Err(error) = CommunityKey::parse(&self.key) {
            errors.push(error);
        }
        let name_chars = self.display_name.trim().chars().count();
        if name_chars == 0 || name_chars > DISPLAY_NAME_MAX {
            errors.push(Invalid::new(
                "display_name",
                format!("1 to {DISPLAY_NAME_MAX} characters"),
            ));
        }
        for (at, subsegment) in self.subsegments.iter().enumerate() {
            if CommunityKey::parse(subsegment).is_err() {
                errors.push(Invalid::new(
                    format!("subsegments[{at}]"),
                    "2 to 63 lowercase letters, digits and underscores, starting with a letter",
                ));
            } else if self.subsegments[..at].contains(subsegment) {
                errors.push(Invalid::new(format!("subsegments[{at}]"), "appears twice"));
            }
        }
        let requires = |field| self.required_fields.contains(&field);
        let complete_rule = requires(IdentityField::Email)
            || (requires(IdentityField::GivenName)
                && requires(IdentityField::FamilyName)
                && requires(IdentityField::BirthDate))
            || (requires(IdentityField::LicenseNumber) && requires(IdentityField::FamilyName));
        if !complete_rule {
            errors.push(Invalid::new(
                "required_fields",
                "must hold a whole match rule: email; or given_name, family_name and birth_date; \
                 or license_number and family_name",
            ));
        }
        let days_ok = |days: Option<i32>| days.is_none_or(|d| (1..=MAX_REVERIFY_DAYS).contains(&d));
        if !days_ok(self.reverify_after_days) {
            errors.push(Invalid::new(
                "reverify_after_days",
                format!("1 to {MAX_REVERIFY_DAYS}, or null"),
            ));
        }
        let mut overridden: Vec<&String> = self.subsegment_reverify.keys().collect();
        overridden.sort();
        for subsegment in overridden {
            let field = format!("subsegment_reverify.{subsegment}");
            if !self.has_subsegment(subsegment) {
                errors.push(Invalid::new(field, "is not one of subsegments"));
            } else if !days_ok(self.subsegment_reverify[subsegment]) {
                errors.push(Invalid::new(
                    field,
                    format!("1 to {MAX_REVERIFY_DAYS}, or null"),
                ));
            }
        }
        if let Some(age) = self.min_age {
            if !(1..=130).contains(&age) {
                errors.push(Invalid::new("min_age", "1 to 130"));
            } else if !requires(IdentityField::BirthDate) {
                errors.push(Invalid::new(
                    "min_age",
                    "an age gate needs birth_date among required_fields",
                ));
            }
        }
        errors
    }

    pub fn has_subsegment(&self, subsegment: &str) -> bool {
        self.subsegments.iter().any(|s| s == subsegment)
    }

    /// Fields the community needs that the identity lacks.
    pub fn missing_fields(&self, identity: &Identity) -> Vec<IdentityField> {
        self.required_fields
            .iter()
            .copied()
            .filter(|field| !identity.has(*field))
            .collect()
    }

    pub fn reverify_days(&self, subsegment: Option<&str>) -> Option<i32> {
        match subsegment.and_then(|s| self.subsegment_reverify.get(s)) {
            Some(days) => *days,
            None => self.reverify_after_days,
        }
    }

    /// When a success on a record ending at `record_end` expires: the
    /// earlier of that end and the re-verification period.
    pub fn membership_expiry(
        &self,
        subsegment: Option<&str>,
        record_end: Option<OffsetDateTime>,
        now: OffsetDateTime,
    ) -> Option<OffsetDateTime> {
        let period_end = self
            .reverify_days(subsegment)
            .map(|days| now + Duration::days(i64::from(days)));
        match (record_end, period_end) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The age gate: whether someone born on `born` is old enough `today`.
    pub fn admits_age(&self, born: Option<Date>, today: Date) -> bool {
        let Some(min_age) = self.min_age else {
            return true;
        };
        let Some(born) = born else {
            return false;
        };
        age_on(born, today) >= min_age
    }
}

/// Whole years from `born` to `today`.
pub fn age_on(born: Date, today: Date) -> i32 {
    let mut age = today.year() - born.year();
    if (u8::from(today.month()), today.day()) < (u8::from(born.month()), born.day()) {
        age -= 1;
    }
    age
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::{date, datetime};

    fn military() -> Community {
        Community {
            key: "military".into(),
            display_name: "Military".into(),
            subsegments: vec!["active_duty".into(), "veteran".into()],
            required_fields: vec![IdentityField::GivenName, IdentityField::FamilyName],
            reverify_after_days: Some(365),
            subsegment_reverify: HashMap::from([("veteran".to_owned(), None)]),
            min_age: None,
            builtin: true,
        }
    }

    #[test]
    fn expiry_is_the_earlier_of_record_end_and_period() {
        let now = datetime!(2026-01-01 0:00 UTC);
        let soon = datetime!(2026-03-01 0:00 UTC);
        let late = datetime!(2030-01-01 0:00 UTC);
        let c = military();
        assert_eq!(
            c.membership_expiry(Some("active_duty"), Some(soon), now),
            Some(soon)
        );
        assert_eq!(
            c.membership_expiry(Some("active_duty"), Some(late), now),
            Some(datetime!(2027-01-01 0:00 UTC))
        );
        assert_eq!(
            c.membership_expiry(Some("active_duty"), None, now),
            Some(datetime!(2027-01-01 0:00 UTC))
        );
    }

    #[test]
    fn a_veteran_is_verified_for_life_on_an_open_record() {
        let now = datetime!(2026-01-01 0:00 UTC);
        assert_eq!(
            military().membership_expiry(Some("veteran"), None, now),
            None
        );
    }

    #[test]
    fn the_age_gate_counts_whole_years() {
        let senior = Community {
            min_age: Some(65),
            ..military()
        };
        assert!(senior.admits_age(Some(date!(1960 - 11 - 22)), date!(2025 - 11 - 22)));
        assert!(!senior.admits_age(Some(date!(1960 - 11 - 23)), date!(2025 - 11 - 22)));
        assert!(!senior.admits_age(None, date!(2025 - 11 - 22)));
        assert!(military().admits_age(None, date!(2025 - 11 - 22)));
    }

    #[test]
    fn community_keys_are_short_snake_case() {
        assert!(CommunityKey::parse("ski_instructor").is_ok());
        for bad in ["", "a", "Ski", "9lives", "ski-instructor", &"a".repeat(64)] {
            assert!(CommunityKey::parse(bad).is_err(), "{bad}");
        }
    }
}
