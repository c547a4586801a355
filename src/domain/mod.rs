//! The rules and types of offergate. Nothing here knows about HTTP or SQL.

pub mod api_key;
pub mod blind;
pub mod community;
pub mod identity;
pub mod instant;
mod nicknames;
pub mod offer;
pub mod record;
pub mod session;

/// One field at fault, as the domain reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub field: String,
    pub message: String,
}

impl Invalid {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}
