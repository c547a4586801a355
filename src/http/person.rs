//! The wire form of the identity fields a consumer gives.

use serde::{Deserialize, Serialize};

use crate::domain::identity::RawIdentity;

/// Identity fields as they arrive.
#[derive(Debug, Clone, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = RawIdentity)]
pub struct PersonBody {
    pub email: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    /// YYYY-MM-DD.
    pub birth_date: Option<String>,
    /// Accepted for the caller's records; never used to match.
    pub organization: Option<String>,
    pub license_number: Option<String>,
}

impl From<PersonBody> for RawIdentity {
    fn from(p: PersonBody) -> Self {
        RawIdentity {
            email: p.email,
            given_name: p.given_name,
            family_name: p.family_name,
            birth_date: p.birth_date,
            organization: p.organization,
            license_number: p.license_number,
        }
    }
}
