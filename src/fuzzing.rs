//! The surface the fuzz targets in `fuzz/` drive: pure parts of offergate
//! that otherwise sit behind the database. Not an API: it may change with
//! any release.
//!
//! The identity canonicaliser and blind indexes are public already
//! (`domain::identity`, `domain::blind`); token checks are
//! [`crate::signing::TokenRules`] and [`crate::signing::ActiveKey`].

pub use crate::http::fuzzing::json_routes;
pub use crate::usecases::import::{RowsChecked, check_rows};
