//! What the fuzz targets share: the communities they check against, the
//! blind-index key, a runtime, and a reader that hands input out in pieces.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use offergate::domain::blind::BlindIndexer;
use offergate::domain::community::Community;
use offergate::domain::identity::IdentityField;
use tokio::io::{AsyncRead, ReadBuf};

/// A fixed blind-index key: the targets check determinism, not secrecy.
pub const INDEX_KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

pub fn indexer() -> BlindIndexer {
    BlindIndexer::from_hex(INDEX_KEY).expect("a 32-byte key")
}

fn community(
    key: &str,
    subsegments: &[&str],
    required_fields: &[IdentityField],
    min_age: Option<i32>,
) -> (String, Community) {
    let community = Community {
        key: key.to_owned(),
        display_name: key.to_owned(),
        subsegments: subsegments.iter().map(|s| (*s).to_owned()).collect(),
        required_fields: required_fields.to_vec(),
        reverify_after_days: Some(365),
        subsegment_reverify: HashMap::new(),
        min_age,
        builtin: true,
    };
    (key.to_owned(), community)
}

/// Three of the built-in communities, each with other required fields.
pub fn communities() -> HashMap<String, Community> {
    use IdentityField::*;
    HashMap::from([
        community("student", &["high_school", "college"], &[Email], None),
        community(
            "military",
            &["active_duty", "veteran", "reservist", "military_family"],
            &[GivenName, FamilyName, BirthDate],
            None,
        ),
        community("teacher", &[], &[], None),
        community("nurse", &[], &[LicenseNumber, FamilyName], None),
        community("senior", &[], &[GivenName, FamilyName, BirthDate], Some(65)),
    ])
}

/// A single-threaded runtime with timers, as a request needs.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a current-thread runtime")
}

/// Hands out its bytes at most `step` at a time, so readers meet every
/// boundary a network stream can put between two bytes.
pub struct Trickle<'a> {
    data: &'a [u8],
    step: usize,
}

impl<'a> Trickle<'a> {
    pub fn new(data: &'a [u8], step: usize) -> Self {
        Trickle {
            data,
            step: step.max(1),
        }
    }
}

impl AsyncRead for Trickle<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let n = self.step.min(self.data.len()).min(buf.remaining());
        let (head, rest) = self.data.split_at(n);
        buf.put_slice(head);
        self.data = rest;
        Poll::Ready(Ok(()))
    }
}
