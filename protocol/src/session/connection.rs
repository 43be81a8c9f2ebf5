//! One transport connection as the session sees it: when to ping, when silence (or a handshake
//! that never completes) means the connection is dead, whether the session has asked the
//! driver to close it, and the server's reconnect hint if it sent `GoAway`.

/// Shortest ping interval accepted from the config or the server, so that a zero interval
/// cannot turn into a busy loop.
pub(super) const MIN_HEARTBEAT_MS: u64 = 100;

/// Heartbeat intervals of silence after which a connection is dead.
const MISSED_HEARTBEATS: u64 = 3;

/// A ping interval, clamped to [`MIN_HEARTBEAT_MS`].
pub(super) fn heartbeat_interval(ms: u64) -> u64 {
    ms.max(MIN_HEARTBEAT_MS)
}

#[derive(Debug)]
pub(super) struct Connection {
    heartbeat_ms: u64,
    connected_at_ms: u64,
    last_received_ms: u64,
    last_ping_ms: u64,
    next_nonce: u64,
    /// The session asked the driver to close this connection: its timers are off.
    pub(super) closing: bool,
    /// From `GoAway`: reconnect this long after the connection is down, instead of backoff.
    pub(super) go_away_after_ms: Option<u64>,
}

impl Connection {
    /// A connection that came up at `now_ms` (which counts as the last ping and the last
    /// sign of life).
    pub(super) fn new(now_ms: u64, heartbeat_ms: u64) -> Self {
        Connection {
            heartbeat_ms: heartbeat_interval(heartbeat_ms),
            connected_at_ms: now_ms,
            last_received_ms: now_ms,
            last_ping_ms: now_ms,
            next_nonce: 0,
            closing: false,
            go_away_after_ms: None,
        }
    }

    pub(super) fn set_heartbeat(&mut self, ms: u64) {
        self.heartbeat_ms = heartbeat_interval(ms);
    }

    /// Something arrived from the server.
    pub(super) fn received(&mut self, now_ms: u64) {
        self.last_received_ms = self.last_received_ms.max(now_ms);
    }

    pub(super) fn next_ping_at(&self) -> u64 {
        self.last_ping_ms.saturating_add(self.heartbeat_ms)
    }

    /// The nonce of a ping to send now, if one is due.
    pub(super) fn ping_due(&mut self, now_ms: u64) -> Option<u64> {
        if now_ms < self.next_ping_at() {
            return None;
        }
        self.last_ping_ms = now_ms;
        let nonce = self.next_nonce;
        self.next_nonce = self.next_nonce.wrapping_add(1);
        Some(nonce)
    }

    /// When the connection counts as dead: after [`Connection::silence_limit_ms`] without a
    /// frame once welcomed, or without a `Welcome` since it came up.
    pub(super) fn dead_at(&self, welcomed: bool) -> u64 {
        let since = if welcomed {
            self.last_received_ms
        } else {
            self.connected_at_ms
        };
        since.saturating_add(self.silence_limit_ms())
    }

    pub(super) fn silence_limit_ms(&self) -> u64 {
        self.heartbeat_ms.saturating_mul(MISSED_HEARTBEATS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pings_every_interval_and_dies_after_three_silent_intervals() {
        let mut c = Connection::new(1_000, 500);
        assert_eq!(c.next_ping_at(), 1_500);
        assert_eq!(c.ping_due(1_499), None);
        assert_eq!(c.ping_due(1_600), Some(0));
        assert_eq!(c.next_ping_at(), 2_100);
        assert_eq!(c.ping_due(2_100), Some(1));
        assert_eq!(c.dead_at(false), 2_500);
        c.received(2_000);
        assert_eq!(c.dead_at(false), 2_500);
        assert_eq!(c.dead_at(true), 3_500);
        c.received(10);
        assert_eq!(c.dead_at(true), 3_500);
    }

    #[test]
    fn a_zero_interval_is_clamped() {
        let mut c = Connection::new(0, 0);
        assert_eq!(c.next_ping_at(), MIN_HEARTBEAT_MS);
        c.set_heartbeat(u64::MAX);
        assert_eq!(c.dead_at(true), u64::MAX);
    }
}
