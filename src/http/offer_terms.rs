//! The wire form of an offer's discount and status: the domain's types
//! carry no serialisation, so the JSON shape is decided here, once.

use serde::{Deserialize, Serialize};

use crate::domain::offer::{Discount, OfferStatus};

/// What the offer gives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "lowercase")]
#[schema(as = Discount)]
pub enum DiscountBody {
    /// A percentage off, e.g. 15.
    Percent {
        #[schema(minimum = 0.005, maximum = 100)]
        percent_off: f64,
    },
    /// A fixed amount off in minor units (cents) of an ISO 4217 currency.
    Fixed {
        #[schema(minimum = 1, maximum = 9223372036854775807_i64)]
        amount_minor: i64,
        #[schema(pattern = "^[A-Z]{3}$", example = "USD")]
        currency: String,
    },
    /// Anything else: "a free upgrade".
    Reward {
        #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
        reward: String,
    },
}

impl From<Discount> for DiscountBody {
    fn from(d: Discount) -> Self {
        match d {
            Discount::Percent { percent_off } => DiscountBody::Percent { percent_off },
            Discount::Fixed {
                amount_minor,
                currency,
            } => DiscountBody::Fixed {
                amount_minor,
                currency,
            },
            Discount::Reward { reward } => DiscountBody::Reward { reward },
        }
    }
}

impl From<DiscountBody> for Discount {
    fn from(d: DiscountBody) -> Self {
        match d {
            DiscountBody::Percent { percent_off } => Discount::Percent { percent_off },
            DiscountBody::Fixed {
                amount_minor,
                currency,
            } => Discount::Fixed {
                amount_minor,
                currency,
            },
            DiscountBody::Reward { reward } => Discount::Reward { reward },
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = OfferStatus)]
pub enum StatusBody {
    Draft,
    Active,
    Paused,
    Archived,
}

impl From<OfferStatus> for StatusBody {
    fn from(s: OfferStatus) -> Self {
        match s {
            OfferStatus::Draft => StatusBody::Draft,
            OfferStatus::Active => StatusBody::Active,
            OfferStatus::Paused => StatusBody::Paused,
            OfferStatus::Archived => StatusBody::Archived,
        }
    }
}

impl From<StatusBody> for OfferStatus {
    fn from(s: StatusBody) -> Self {
        match s {
            StatusBody::Draft => OfferStatus::Draft,
            StatusBody::Active => OfferStatus::Active,
            StatusBody::Paused => OfferStatus::Paused,
            StatusBody::Archived => OfferStatus::Archived,
        }
    }
}
