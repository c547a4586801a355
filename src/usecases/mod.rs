//! One module per operation a caller can perform. Each owns its
//! transaction (on the checkout path, a single call of a server-side
//! function), takes typed input, returns a domain result, and knows nothing
//! of HTTP.

pub mod confirm;
pub mod erase;
pub mod events;
pub mod idempotency;
pub mod import;
pub mod issue_token;
pub mod offers;
pub mod places;
pub mod prune;
pub mod redeem;
pub mod reverse;
pub mod revoke_token;
pub mod sessions;
pub mod verify;
