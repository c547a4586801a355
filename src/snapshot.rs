//! A value read whole from the database and shared by every request of the
//! process for a short while.
//!
//! However many requests find it missing or expired at once, one of them
//! reads it and the rest wait for that answer. Another process's change
//! shows within the time to live; this process's own changes call `forget`
//! and show at once.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use moka::future::Cache;

pub struct Snapshot<T> {
    /// Keyed by generation: a read that began before `forget` may still
    /// finish after it, and must not put its stale answer where later
    /// requests look.
    cache: Cache<u64, T>,
    generation: AtomicU64,
    reads: AtomicU64,
}

impl<T: Clone + Send + Sync + 'static> Snapshot<T> {
    pub fn new(time_to_live: Duration) -> Self {
        Snapshot {
            // Room for the current generation and a few superseded ones
            // whose late reads are still landing.
            cache: Cache::builder()
                .max_capacity(8)
                .time_to_live(time_to_live)
                .build(),
            generation: AtomicU64::new(0),
            reads: AtomicU64::new(0),
        }
    }

    /// The value, running `read` only when no fresh one is held and no other
    /// request is already reading it. A failed read is not kept: the next
    /// request tries again.
    pub async fn get<E>(&self, read: impl Future<Output = Result<T, E>>) -> Result<T, Arc<E>>
    where
        E: Send + Sync + 'static,
    {
        let generation = self.generation.load(Ordering::Acquire);
        self.cache
            .try_get_with(generation, async {
                self.reads.fetch_add(1, Ordering::Relaxed);
                read.await
            })
            .await
    }

    /// Drops the value after a change made by this process; the next request
    /// reads it again.
    pub fn forget(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.cache.invalidate_all();
    }

    /// How many times the value has been read from the database.
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }
}
