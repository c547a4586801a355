//! Instants as offergate stores and shows them: in UTC, within the years
//! 0000 to 9999.
//!
//! An RFC 3339 instant may carry any offset, so one written in the year
//! 9999 can name an instant in the year 10000 once moved to UTC, and one in
//! the year 0000 an instant before it. Neither can be stored (the database
//! layer moves every instant to UTC) nor written back as RFC 3339, so they
//! are refused here, where the text becomes an instant, instead of failing
//! (or panicking) deeper down.

use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

/// Why an RFC 3339 text is not an instant offergate can keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadInstant {
    /// Not RFC 3339.
    Malformed,
    /// Before 0000-01-01T00:00:00Z.
    TooEarly,
    /// After 9999-12-31T23:59:59.999999999Z.
    TooLate,
}

impl BadInstant {
    pub fn message(self) -> &'static str {
        match self {
            BadInstant::Malformed => "must be an RFC 3339 instant, e.g. 2026-11-11T00:00:00Z",
            BadInstant::TooEarly => "must not be before the year 0000 (in UTC)",
            BadInstant::TooLate => "must not be after the year 9999 (in UTC)",
        }
    }
}

/// The instant in UTC, or why it cannot be kept.
pub fn in_utc(at: OffsetDateTime) -> Result<OffsetDateTime, BadInstant> {
    match at.checked_to_offset(UtcOffset::UTC) {
        Some(utc) if utc.year() < 0 => Err(BadInstant::TooEarly),
        Some(utc) => Ok(utc),
        // Out of range either way: the offset's sign says which.
        None if at.offset().is_negative() => Err(BadInstant::TooLate),
        None => Err(BadInstant::TooEarly),
    }
}

/// An RFC 3339 text as the UTC instant it names.
pub fn parse_rfc3339(raw: &str) -> Result<OffsetDateTime, BadInstant> {
    let at = OffsetDateTime::parse(raw, &Rfc3339).map_err(|_| BadInstant::Malformed)?;
    in_utc(at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn an_offset_is_moved_to_utc() {
        assert_eq!(
            parse_rfc3339("2026-11-11T09:00:00+09:00"),
            Ok(datetime!(2026-11-11 0:00 UTC))
        );
        assert!(
            parse_rfc3339("2026-11-11T09:00:00+09:00")
                .unwrap()
                .offset()
                .is_utc()
        );
    }

    #[test]
    fn instants_beyond_the_years_0000_to_9999_in_utc_are_refused() {
        assert_eq!(
            parse_rfc3339("9999-12-31T23:00:00-05:00"),
            Err(BadInstant::TooLate)
        );
        assert_eq!(
            parse_rfc3339("0000-01-01T00:00:00+01:00"),
            Err(BadInstant::TooEarly)
        );
        assert_eq!(
            parse_rfc3339("9999-12-31T23:59:59Z").map(|t| t.year()),
            Ok(9999)
        );
        assert_eq!(
            parse_rfc3339("0000-01-01T00:00:00Z").map(|t| t.year()),
            Ok(0)
        );
        assert_eq!(parse_rfc3339("soon"), Err(BadInstant::Malformed));
    }
}
