//! Offers: what a community's members get, when, and how many times.

use time::OffsetDateTime;
use uuid::Uuid;

use super::Invalid;
use super::community::Community;

const TITLE_MAX: usize = 200;
const DESCRIPTION_MAX: usize = 4_000;
pub const DEFAULT_TOKEN_TTL_SECS: i32 = 900;
/// The smallest percentage that is not 0.00 once kept in hundredths.
const MIN_PERCENT_OFF: f64 = 0.005;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OfferStatus {
    Draft,
    Active,
    Paused,
    Archived,
}

impl OfferStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OfferStatus::Draft => "draft",
            OfferStatus::Active => "active",
            OfferStatus::Paused => "paused",
            OfferStatus::Archived => "archived",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [
            OfferStatus::Draft,
            OfferStatus::Active,
            OfferStatus::Paused,
            OfferStatus::Archived,
        ]
        .into_iter()
        .find(|s| s.as_str() == raw)
    }
}

/// What the offer gives.
#[derive(Debug, Clone, PartialEq)]
pub enum Discount {
    /// A percentage off, e.g. 15.
    Percent { percent_off: f64 },
    /// A fixed amount off in minor units (cents) of an ISO 4217 currency.
    Fixed { amount_minor: i64, currency: String },
    /// Anything else: "a free upgrade".
    Reward { reward: String },
}

impl Discount {
    pub fn validate(&self) -> Vec<Invalid> {
        match self {
            // Kept in hundredths: anything that rounds to 0.00 would be no discount.
            Discount::Percent { percent_off }
                if !(*percent_off >= MIN_PERCENT_OFF && *percent_off <= 100.0) =>
            {
                vec![Invalid::new(
                    "discount.percent_off",
                    "0.01 to 100 (kept in hundredths)",
                )]
            }
            Discount::Fixed {
                amount_minor,
                currency,
            } => {
                let mut errors = Vec::new();
                if *amount_minor <= 0 {
                    errors.push(Invalid::new(
                        "discount.amount_minor",
                        "a positive amount in minor units",
                    ));
                }
                if !(currency.len() == 3 && currency.bytes().all(|b| b.is_ascii_uppercase())) {
                    errors.push(Invalid::new(
                        "discount.currency",
                        "an ISO 4217 code such as USD or EUR",
                    ));
                }
                errors
            }
            Discount::Reward { reward }
                if reward.trim().is_empty() || reward.chars().count() > TITLE_MAX =>
            {
                vec![Invalid::new(
                    "discount.reward",
                    format!("1 to {TITLE_MAX} characters"),
                )]
            }
            _ => Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Offer {
    pub id: Uuid,
    pub title: String,
    pub description: String,
    pub communities: Vec<String>,
    pub subsegments: Vec<String>,
    pub discount: Discount,
    pub starts_at: Option<OffsetDateTime>,
    pub ends_at: Option<OffsetDateTime>,
    pub status: OfferStatus,
    pub partner_id: Option<Uuid>,
    pub total_cap: Option<i32>,
    pub per_person_limit: Option<i32>,
    pub token_ttl_secs: i32,
    pub reversal_returns_token: bool,
}

/// Why a membership cannot have a token for an offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ineligible {
    NotOpen,
    Community,
}

impl Offer {
    /// Every rule an offer must keep; `known` looks up a community.
    pub fn validate(&self, known: impl Fn(&str) -> Option<Community>) -> Vec<Invalid> {
        let mut errors = Vec::new();
        let title = self.title.trim().chars().count();
        if title == 0 || title > TITLE_MAX {
            errors.push(Invalid::new(
                "title",
                format!("1 to {TITLE_MAX} characters"),
            ));
        }
        if self.description.chars().count() > DESCRIPTION_MAX {
            errors.push(Invalid::new(
                "description",
                format!("at most {DESCRIPTION_MAX} characters"),
            ));
        }
        if self.communities.is_empty() {
            errors.push(Invalid::new("communities", "name at least one community"));
        }
        let mut eligible = Vec::new();
        for (at, key) in self.communities.iter().enumerate() {
            match known(key) {
                Some(community) => eligible.push(community),
                None => errors.push(Invalid::new(
                    format!("communities[{at}]"),
                    format!("no community has the key `{key}`"),
                )),
            }
        }
        for (at, subsegment) in self.subsegments.iter().enumerate() {
            if !eligible.is_empty() && !eligible.iter().any(|c| c.has_subsegment(subsegment)) {
                errors.push(Invalid::new(
                    format!("subsegments[{at}]"),
                    format!("`{subsegment}` is not a sub-status of the eligible communities"),
                ));
            }
        }
        errors.extend(self.discount.validate());
        if let (Some(starts), Some(ends)) = (self.starts_at, self.ends_at)
            && starts >= ends
        {
            errors.push(Invalid::new("ends_at", "must be after starts_at"));
        }
        if self.total_cap.is_some_and(|c| c < 1) {
            errors.push(Invalid::new("total_cap", "at least 1, or null for no cap"));
        }
        if self.per_person_limit.is_some_and(|c| c < 1) {
            errors.push(Invalid::new(
                "per_person_limit",
                "at least 1, or null for no limit",
            ));
        }
        if !(10..=2_592_000).contains(&self.token_ttl_secs) {
            errors.push(Invalid::new("token_ttl_secs", "10 seconds to 30 days"));
        }
        errors
    }

    /// Whether the offer can issue tokens now.
    pub fn is_open(&self, now: OffsetDateTime) -> bool {
        self.status == OfferStatus::Active
            && self.starts_at.is_none_or(|s| s <= now)
            && self.ends_at.is_none_or(|e| now < e)
    }

    /// Whether a member of `community` with `subsegment` may have a token.
    pub fn admits(
        &self,
        community: &str,
        subsegment: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<(), Ineligible> {
        if !self.is_open(now) {
            return Err(Ineligible::NotOpen);
        }
        let community_ok = self.communities.iter().any(|c| c == community);
        let subsegment_ok = self.subsegments.is_empty()
            || subsegment.is_some_and(|s| self.subsegments.iter().any(|x| x == s));
        if community_ok && subsegment_ok {
            Ok(())
        } else {
            Err(Ineligible::Community)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn offer() -> Offer {
        Offer {
            id: Uuid::nil(),
            title: "Veterans Day".into(),
            description: String::new(),
            communities: vec!["military".into()],
            subsegments: vec!["veteran".into()],
            discount: Discount::Percent { percent_off: 20.0 },
            starts_at: Some(datetime!(2026-11-10 0:00 UTC)),
            ends_at: Some(datetime!(2026-11-12 0:00 UTC)),
            status: OfferStatus::Active,
            partner_id: None,
            total_cap: Some(50),
            per_person_limit: Some(1),
            token_ttl_secs: DEFAULT_TOKEN_TTL_SECS,
            reversal_returns_token: false,
        }
    }

    #[test]
    fn an_offer_admits_its_communities_within_its_window() {
        let during = datetime!(2026-11-11 12:00 UTC);
        assert_eq!(offer().admits("military", Some("veteran"), during), Ok(()));
        assert_eq!(
            offer().admits("military", Some("active_duty"), during),
            Err(Ineligible::Community)
        );
        assert_eq!(
            offer().admits("student", None, during),
            Err(Ineligible::Community)
        );
        assert_eq!(
            offer().admits("military", Some("veteran"), datetime!(2026-11-12 0:00 UTC)),
            Err(Ineligible::NotOpen)
        );
        let paused = Offer {
            status: OfferStatus::Paused,
            ..offer()
        };
        assert_eq!(
            paused.admits("military", Some("veteran"), during),
            Err(Ineligible::NotOpen)
        );
    }

    #[test]
    fn discounts_are_checked() {
        assert!(
            !Discount::Percent { percent_off: 120.0 }
                .validate()
                .is_empty()
        );
        assert!(
            !Discount::Fixed {
                amount_minor: 500,
                currency: "usd".into()
            }
            .validate()
            .is_empty()
        );
        assert!(
            Discount::Fixed {
                amount_minor: 500,
                currency: "USD".into()
            }
            .validate()
            .is_empty()
        );
        assert!(
            !Discount::Reward { reward: " ".into() }
                .validate()
                .is_empty()
        );
    }
}
