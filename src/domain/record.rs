//! A verification record as it arrives in an import, and its checks.

use std::collections::HashMap;

use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime, Time};

use super::Invalid;
use super::community::Community;
use super::identity::{Identity, RawIdentity, parse_date};

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

/// A date means the whole day (UTC): `valid_until = 2027-06-30` is valid
/// through June 30th. An RFC 3339 instant means itself.
fn parse_bound(raw: &str, bound: Bound) -> Option<OffsetDateTime> {
    if let Some(date) = parse_date(raw) {
        let start = date.with_time(Time::MIDNIGHT).assume_utc();
        return Some(match bound {
            Bound::Start => start,
            Bound::End => start + Duration::days(1),
        });
    }
    OffsetDateTime::parse(raw, &Rfc3339).ok()
}

impl RawRecord {
    pub fn parse(
        &self,
        communities: &HashMap<String, Community>,
    ) -> Result<ParsedRecord, Vec<Invalid>> {
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
            Some(raw) => {
                let parsed = parse_bound(raw, which);
                if parsed.is_none() {
                    errors.push(Invalid::new(
                        field,
                        "must be a date (YYYY-MM-DD) or an RFC 3339 instant",
                    ));
                }
                parsed
            }
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
}
