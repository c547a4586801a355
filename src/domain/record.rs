//! A verification record as it arrives in an import, and its checks.

use std::collections::HashMap;

use time::{OffsetDateTime, Time};

use super::Invalid;
use super::community::Community;
use super::identity::{Identity, RawIdentity, parse_date};
use super::instant::{self, BadInstant};

const EXTERNAL_ID_MAX: usize = 200;
const ORGANIZATION_MAX: usize = 300;

/// One row of a CSV or NDJSON import, every column optional until checked.
#[derive(Debug, Clone, Default)]
pub struct RawRecord {
    pub external_id: Option<String>,
    pub community: Option<String>,
    pub subsegment: Option<String>,
    pub organization: Option<String>,
    pub email: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub birth_date: Option<String>,
    pub license_number: Option<String>,
    pub valid_from: Option<String>,
    pub valid_until: Option<String>,
}

/// The columns a record may have, in the order documented.
pub const COLUMNS: [&str; 11] = [
    "external_id",
    "community",
    "subsegment",
    "organization",
    "email",
    "given_name",
    "family_name",
    "birth_date",
    "license_number",
    "valid_from",
    "valid_until",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedRecord {
    pub external_id: String,
    pub community: String,
    pub subsegment: Option<String>,
    pub organization: Option<String>,
    pub identity: Identity,
    pub valid_from: Option<OffsetDateTime>,
    pub valid_until: Option<OffsetDateTime>,
}

fn present(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

#[derive(Clone, Copy)]
enum Bound {
    Start,
    End,
}

/// Why a validity bound was refused.
const BOUND_FORMAT: &str = "must be a date (YYYY-MM-DD) or an RFC 3339 instant";

/// A date means the whole day (UTC): `valid_until = 2027-06-30` is valid
/// through June 30th. An RFC 3339 instant means itself, moved to UTC.
///
/// `Ok(None)` is "no end": an end past the last instant offergate can keep
/// (the end of 9999-12-31, which data sources write for "open-ended") bounds
/// nothing any instant could pass, so it is kept as the open end it means
/// rather than refused. A start that late, or any bound before the year
/// 0000, is refused.
fn parse_bound(raw: &str, bound: Bound) -> Result<Option<OffsetDateTime>, &'static str> {
    if let Some(date) = parse_date(raw) {
        if date.year() < 0 {
            return Err(BadInstant::TooEarly.message());
        }
        let day = match bound {
            Bound::Start => Some(date),
            Bound::End => date.next_day(),
        };
        return Ok(day.map(|day| day.with_time(Time::MIDNIGHT).assume_utc()));
    }
    match (instant::parse_rfc3339(raw), bound) {
        (Ok(at), _) => Ok(Some(at)),
        (Err(BadInstant::TooLate), Bound::End) => Ok(None),
        (Err(BadInstant::Malformed), _) => Err(BOUND_FORMAT),
        (Err(bad), _) => Err(bad.message()),
    }
}

impl RawRecord {
    /// Each column's name and value, in the documented order.
    fn columns(&self) -> [(&'static str, Option<&str>); 11] {
        let values = [
            &self.external_id,
            &self.community,
            &self.subsegment,
            &self.organization,
            &self.email,
            &self.given_name,
            &self.family_name,
            &self.birth_date,
            &self.license_number,
            &self.valid_from,
            &self.valid_until,
        ];
        let mut at = 0;
        values.map(|value| {
            let name = COLUMNS[at];
            at += 1;
            (name, value.as_deref())
        })
    }

    pub fn parse(
        &self,
        communities: &HashMap<String, Community>,
    ) -> Result<ParsedRecord, Vec<Invalid>> {
        // No text column can store a NUL character; a field holding one is
        // named here rather than failing the whole import in the database.
        let errors: Vec<Invalid> = self
            .columns()
            .into_iter()
            .filter(|(_, value)| value.is_some_and(|v| v.contains('\0')))
            .map(|(name, _)| Invalid::new(name, "must not contain the NUL character"))
            .collect();
        if !errors.is_empty() {
            return Err(errors);
        }
        let mut errors = Vec::new();
        let external_id = match present(&self.external_id) {
            Some(id) if id.chars().count() <= EXTERNAL_ID_MAX => Some(id.to_owned()),
            Some(_) => {
                errors.push(Invalid::new(
                    "external_id",
                    format!("at most {EXTERNAL_ID_MAX} characters"),
                ));
                None
            }
            None => {
                errors.push(Invalid::new("external_id", "is required"));
                None
            }
        };
        let community = match present(&self.community) {
            Some(key) => match communities.get(key) {
                Some(community) => Some(community),
                None => {
                    errors.push(Invalid::new(
                        "community",
                        format!("no community has the key `{key}`"),
                    ));
                    None
                }
            },
            None => {
                errors.push(Invalid::new("community", "is required"));
                None
            }
        };
        let subsegment = present(&self.subsegment).map(str::to_owned);
        if let (Some(community), Some(subsegment)) = (community, &subsegment)
            && !community.has_subsegment(subsegment)
        {
            errors.push(Invalid::new(
                "subsegment",
                format!("`{subsegment}` is not a sub-status of {}", community.key),
            ));
        }
        let organization = present(&self.organization).map(str::to_owned);
        if organization
            .as_ref()
            .is_some_and(|o| o.chars().count() > ORGANIZATION_MAX)
        {
            errors.push(Invalid::new(
                "organization",
                format!("at most {ORGANIZATION_MAX} characters"),
            ));
        }
        let raw_identity = RawIdentity {
            email: self.email.clone(),
            given_name: self.given_name.clone(),
            family_name: self.family_name.clone(),
            birth_date: self.birth_date.clone(),
            organization: self.organization.clone(),
            license_number: self.license_number.clone(),
        };
        let identity = match Identity::parse(&raw_identity) {
            Ok(identity) => {
                if !identity.is_matchable() {
                    errors.push(Invalid::new(
                        "identity",
                        "needs an email, or given_name, family_name and birth_date, or license_number and family_name",
                    ));
                }
                Some(identity)
            }
            Err(mut invalid) => {
                errors.append(&mut invalid);
                None
            }
        };
        let mut bound = |field: &str, value: &Option<String>, which: Bound| match present(value) {
            None => None,
            Some(raw) => match parse_bound(raw, which) {
                Ok(parsed) => parsed,
                Err(message) => {
                    errors.push(Invalid::new(field, message));
                    None
                }
            },
        };
        let valid_from = bound("valid_from", &self.valid_from, Bound::Start);
        let valid_until = bound("valid_until", &self.valid_until, Bound::End);
        if let (Some(from), Some(until)) = (valid_from, valid_until)
            && from >= until
        {
            errors.push(Invalid::new("valid_until", "must be after valid_from"));
        }
        match (external_id, community, identity) {
            (Some(external_id), Some(community), Some(identity)) if errors.is_empty() => {
                Ok(ParsedRecord {
                    external_id,
                    community: community.key.clone(),
                    subsegment,
                    organization,
                    identity,
                    valid_from,
                    valid_until,
                })
            }
            _ => Err(errors),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::identity::IdentityField;
    use time::macros::datetime;

    fn communities() -> HashMap<String, Community> {
        let student = Community {
            key: "student".into(),
            display_name: "Students".into(),
            subsegments: vec!["college".into()],
            required_fields: vec![IdentityField::Email],
            reverify_after_days: Some(365),
            subsegment_reverify: HashMap::new(),
            min_age: None,
            builtin: true,
        };
        HashMap::from([("student".to_owned(), student)])
    }

    fn row() -> RawRecord {
        RawRecord {
            external_id: Some("s-1".into()),
            community: Some("student".into()),
            email: Some("Ann@Uni.edu".into()),
            ..Default::default()
        }
    }

    #[test]
    fn a_good_row_parses_with_canonical_identity() {
        let parsed = row().parse(&communities()).unwrap();
        assert_eq!(parsed.identity.email.as_deref(), Some("ann@uni.edu"));
        assert_eq!(parsed.valid_until, None);
    }

    #[test]
    fn a_date_bound_covers_the_whole_day() {
        let parsed = RawRecord {
            valid_from: Some("2026-09-01".into()),
            valid_until: Some("2027-06-30".into()),
            ..row()
        }
        .parse(&communities())
        .unwrap();
        assert_eq!(parsed.valid_from, Some(datetime!(2026-09-01 0:00 UTC)));
        assert_eq!(parsed.valid_until, Some(datetime!(2027-07-01 0:00 UTC)));
    }

    #[test]
    fn every_fault_of_a_row_is_named() {
        let errors = RawRecord {
            external_id: None,
            community: Some("wizard".into()),
            email: None,
            valid_until: Some("soon".into()),
            ..Default::default()
        }
        .parse(&communities())
        .unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            ["external_id", "community", "identity", "valid_until"]
        );
    }

    #[test]
    fn an_unknown_subsegment_and_reversed_bounds_are_refused() {
        let errors = RawRecord {
            subsegment: Some("phd".into()),
            valid_from: Some("2027-01-01".into()),
            valid_until: Some("2026-01-01".into()),
            ..row()
        }
        .parse(&communities())
        .unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["subsegment", "valid_until"]);
    }

    #[test]
    fn the_last_day_of_9999_is_an_open_end() {
        let parsed = RawRecord {
            valid_from: Some("2026-09-01".into()),
            valid_until: Some("9999-12-31".into()),
            ..row()
        }
        .parse(&communities())
        .unwrap();
        assert_eq!(parsed.valid_until, None);
        let instant = RawRecord {
            valid_until: Some("9999-12-31T23:00:00-05:00".into()),
            ..row()
        }
        .parse(&communities())
        .unwrap();
        assert_eq!(instant.valid_until, None);
    }

    #[test]
    fn bounds_are_kept_in_utc_and_unkeepable_ones_named() {
        let parsed = RawRecord {
            valid_from: Some("2026-09-01T09:00:00+09:00".into()),
            ..row()
        }
        .parse(&communities())
        .unwrap();
        assert_eq!(parsed.valid_from, Some(datetime!(2026-09-01 0:00 UTC)));
        assert!(parsed.valid_from.unwrap().offset().is_utc());
        for (from, until, field) in [
            ("9999-12-31T23:00:00-05:00", "", "valid_from"),
            ("0000-01-01T00:00:00+01:00", "", "valid_from"),
            ("", "0000-01-01T00:30:00+01:00", "valid_until"),
        ] {
            let errors = RawRecord {
                valid_from: Some(from.into()),
                valid_until: Some(until.into()),
                ..row()
            }
            .parse(&communities())
            .unwrap_err();
            assert_eq!(errors.len(), 1, "{from} {until}: {errors:?}");
            assert_eq!(errors[0].field, field);
        }
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// Dates of every shape: any year a parser might take, days and
        /// months off the calendar, signs, and text that is no date.
        fn date_text() -> impl Strategy<Value = String> {
            prop_oneof![
                (-99_999i32..=99_999, 0u8..=13, 0u8..=32)
                    .prop_map(|(y, m, d)| format!("{y:04}-{m:02}-{d:02}")),
                (0i32..=9_999, 1u8..=12, 1u8..=28)
                    .prop_map(|(y, m, d)| format!("{y:04}-{m:02}-{d:02}")),
                Just("9999-12-31".to_owned()),
                Just("0000-01-01".to_owned()),
                Just("+9999-12-31".to_owned()),
                Just("-0001-01-01".to_owned()),
                (
                    0i32..=9_999,
                    1u8..=12,
                    1u8..=28,
                    0u8..=23,
                    -23i8..=23,
                    0u8..=59
                )
                    .prop_map(|(y, m, d, h, oh, om)| {
                        let sign = if oh < 0 { '-' } else { '+' };
                        format!(
                            "{y:04}-{m:02}-{d:02}T{h:02}:00:00{sign}{:02}:{om:02}",
                            oh.unsigned_abs()
                        )
                    }),
                "\\PC{0,40}",
            ]
        }

        /// Any text: arbitrary Unicode, now and then very long.
        fn any_text() -> impl Strategy<Value = Option<String>> {
            prop_oneof![
                Just(None),
                "\\PC{0,60}".prop_map(Some),
                any::<String>().prop_map(Some),
                (any::<char>(), 0usize..20_000).prop_map(|(c, n)| Some(c.to_string().repeat(n))),
            ]
        }

        proptest! {
            #[test]
            fn the_record_parser_never_panics_and_names_each_bad_field(
                external_id in any_text(),
                community in prop_oneof![Just(Some("student".to_owned())), any_text()],
                subsegment in any_text(),
                organization in any_text(),
                email in prop_oneof![Just(Some("ann@uni.edu".to_owned())), any_text()],
                given_name in any_text(),
                family_name in any_text(),
                birth_date in prop::option::of(date_text()),
                license_number in any_text(),
                valid_from in prop::option::of(date_text()),
                valid_until in prop::option::of(date_text()),
            ) {
                let raw = RawRecord {
                    external_id, community, subsegment, organization, email, given_name,
                    family_name, birth_date, license_number, valid_from, valid_until,
                };
                match raw.parse(&communities()) {
                    Ok(parsed) => {
                        for bound in [parsed.valid_from, parsed.valid_until].into_iter().flatten() {
                            prop_assert!(bound.offset().is_utc());
                            prop_assert!((0..=9_999).contains(&bound.year()));
                        }
                        if let (Some(from), Some(until)) = (parsed.valid_from, parsed.valid_until) {
                            prop_assert!(from < until);
                        }
                    }
                    Err(errors) => {
                        prop_assert!(!errors.is_empty());
                        for error in errors {
                            prop_assert!(
                                COLUMNS.contains(&error.field.as_str()) || error.field == "identity",
                                "unnamed field {:?}", error
                            );
                            prop_assert!(!error.message.is_empty());
                        }
                    }
                }
            }

            #[test]
            fn every_calendar_date_is_a_bound(y in 0i32..=9_999, m in 1u8..=12, d in 1u8..=31) {
                let text = format!("{y:04}-{m:02}-{d:02}");
                let is_date = parse_date(&text).is_some();
                let parsed = RawRecord {
                    valid_from: Some(text.clone()),
                    valid_until: Some(text),
                    ..row()
                }
                .parse(&communities());
                prop_assert_eq!(parsed.is_ok(), is_date);
            }
        }
    }
}
