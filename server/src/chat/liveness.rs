//! When a connection last heard from its peer. Any frame on any stream (and, on WebSocket,
//! any message at all) proves the peer is alive, not only `Ping`: the transports' readers
//! touch it, and the connection closes for silence only when nothing arrived for the whole
//! window. One atomic per connection, no task and no lock.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::time::Instant;

pub struct Liveness {
    start: Instant,
    /// Milliseconds after `start` of the last thing received.
    last_ms: AtomicU64,
}

impl Default for Liveness {
    fn default() -> Self {
        Liveness {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }
}

impl Liveness {
    /// Something arrived from the peer.
    pub fn touch(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last_ms.fetch_max(ms, Ordering::Relaxed);
    }

    /// When something last arrived (the connection's start if nothing has).
    pub fn last_seen(&self) -> Instant {
        self.start + std::time::Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}
