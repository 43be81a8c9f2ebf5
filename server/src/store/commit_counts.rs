//! What an engine's writer has committed ([`CommitCounts`]), counted by the writer and read by
//! the handle and `/metrics`; shared by the engines so the figures mean the same on each.

use std::sync::atomic::{AtomicU64, Ordering};

/// What the writer has committed since the store was opened ([`super::Store::commit_counts`];
/// also on `/metrics`): with many writers at once, far fewer commits than requests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommitCounts {
    /// Write transactions committed, each one fsync.
    pub commits: u64,
    /// Requests they applied (refused ones included).
    pub requests: u64,
    /// Messages they appended.
    pub messages: u64,
}

/// The writer's side of [`CommitCounts`], shared with the store handle.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    commits: AtomicU64,
    requests: AtomicU64,
    messages: AtomicU64,
}

impl Counters {
    pub(crate) fn get(&self) -> CommitCounts {
        CommitCounts {
            commits: self.commits.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
            messages: self.messages.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn committed(&self, requests: usize, messages: usize) {
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.requests.fetch_add(requests as u64, Ordering::Relaxed);
        self.messages.fetch_add(messages as u64, Ordering::Relaxed);
        crate::metrics::committed(requests, messages);
    }
}
