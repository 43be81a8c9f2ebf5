//! The server-wide heartbeat sweep: one task closes every connection whose peer has been
//! silent for the whole window (three heartbeats), instead of a timer in each connection.
//!
//! Design: a connection, once welcomed, is put on the watch list with a weak reference to its
//! [`Liveness`] stamp (which its transport touches for everything received) and a [`Closer`]
//! for its outbound queue; neither keeps anything of the connection alive. Every quarter of a
//! heartbeat the sweep walks the list: an entry whose connection is gone is dropped, and a
//! connection silent since `window` ago or longer is closed with "no heartbeat" (its engine
//! sees the queue close and ends, as for any other close) and dropped. So a silent peer is
//! closed no sooner than the window and at most a quarter heartbeat after it; an idle peer
//! that answers stays. An idle connection costs one list entry (two pointers) and no timer.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior};

use crate::chat::liveness::Liveness;
use crate::chat::outbound::Closer;
use crate::chat::stream::CloseReason;
use crate::state::AppState;

/// Sweeps per heartbeat: how late after its window a silent peer may be closed.
const SWEEPS_PER_HEARTBEAT: u32 = 4;

/// Heartbeats of silence after which a connection is closed.
pub const SILENT_HEARTBEATS: u32 = 3;

struct Watched {
    liveness: Weak<Liveness>,
    connection: Closer,
}

/// The connections the sweep watches.
#[derive(Default)]
pub struct Heartbeats {
    watched: Mutex<Vec<Watched>>,
}

impl Heartbeats {
    /// Watch a welcomed connection until it ends or falls silent. Its window starts now,
    /// whatever the handshake took.
    pub fn watch(&self, liveness: &Arc<Liveness>, connection: Closer) {
        liveness.touch();
        let mut watched = self.watched.lock().unwrap_or_else(|p| p.into_inner());
        watched.push(Watched {
            liveness: Arc::downgrade(liveness),
            connection,
        });
    }

    /// Close every connection silent for `window` at `now`, forget those that ended; returns
    /// how many were closed.
    pub fn sweep(&self, now: Instant, window: Duration) -> usize {
        let mut silent = Vec::new();
        let mut watched = self.watched.lock().unwrap_or_else(|p| p.into_inner());
        watched.retain(|entry| {
            let Some(liveness) = entry.liveness.upgrade() else {
                return false;
            };
            if liveness.last_seen() + window <= now {
                silent.push(entry.connection.clone());
                return false;
            }
            true
        });
        // A list emptied by a wave of disconnects gives its memory back.
        let len = watched.len();
        if len * 4 < watched.capacity() {
            watched.shrink_to(len * 2);
        }
        drop(watched);
        for connection in &silent {
            connection.close(CloseReason::normal("no heartbeat"));
        }
        silent.len()
    }

    /// Connections watched (ended ones until the next sweep included).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.watched.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// The sweep task: runs until aborted at shutdown.
pub async fn sweep(state: AppState) {
    let heartbeat = state.limits.heartbeat;
    let mut ticker = tokio::time::interval(heartbeat / SWEEPS_PER_HEARTBEAT);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        let now = ticker.tick().await;
        let closed = state.heartbeats.sweep(now, heartbeat * SILENT_HEARTBEATS);
        if closed > 0 {
            tracing::debug!("closed {closed} silent connections");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::outbound::Outbound;

    #[tokio::test]
    async fn a_silent_connection_is_closed_after_its_window_and_a_live_one_stays() {
        let heartbeats = Heartbeats::default();
        let window = Duration::from_millis(200);
        let (silent, live) = (Outbound::multiplexed(), Outbound::multiplexed());
        let (silent_control, live_control) = (silent.open(0), live.open(0));
        // Before the stamps, so the window cannot seem to end early.
        let started = Instant::now();
        let silent_stamp = Arc::new(Liveness::default());
        let live_stamp = Arc::new(Liveness::default());
        heartbeats.watch(&silent_stamp, silent_control.closer());
        heartbeats.watch(&live_stamp, live_control.closer());
        // Sweep every 10 ms while the live peer is heard from every 10 ms.
        let closed_after = loop {
            tokio::time::sleep(Duration::from_millis(10)).await;
            live_stamp.touch();
            if heartbeats.sweep(Instant::now(), window) > 0 {
                break started.elapsed();
            }
            assert!(started.elapsed() < Duration::from_secs(5), "never closed");
        };
        assert!(closed_after >= window, "closed after {closed_after:?}");
        assert_eq!(
            silent_control.closing(),
            Some(CloseReason::normal("no heartbeat"))
        );
        // The live one stays through several windows more.
        for _ in 0..40 {
            tokio::time::sleep(Duration::from_millis(10)).await;
            live_stamp.touch();
            assert_eq!(heartbeats.sweep(Instant::now(), window), 0);
        }
        assert_eq!(live_control.closing(), None, "a live connection was closed");
        assert_eq!(heartbeats.len(), 1);
    }

    #[test]
    fn an_ended_connection_is_forgotten_and_kept_alive_by_nothing() {
        let heartbeats = Heartbeats::default();
        let outbound = Outbound::multiplexed();
        let control = outbound.open(0);
        let stamp = Arc::new(Liveness::default());
        heartbeats.watch(&stamp, control.closer());
        let closer = control.closer();
        drop((control, outbound, stamp));
        assert!(closer.is_gone(), "the watch list kept the queue alive");
        heartbeats.sweep(Instant::now(), Duration::from_secs(3));
        assert_eq!(heartbeats.len(), 0);
    }
}
