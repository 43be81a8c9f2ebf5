//! Ingress backpressure per conversation: when most of a conversation's live readers are
//! behind, the server is what cannot keep up, so new sends into it are refused with
//! `RateLimited` and a "retry in N ms" hint (clients resend by themselves, in order) instead of
//! letting every reader's queue fill until the hub cuts them all.
//!
//! Measuring: as the hub pushes a message into each live subscriber's queue it learns how many
//! bytes that subscriber's connection holds ([`Tally::count`]). A reader holding at least the
//! high-water mark is behind; one below the low-water mark (half of it) has caught up. A reader
//! whose queue has not shrunk for [`STALL`] while above the low-water mark does not read at
//! all: it is left out of the count, so peers that stop reading cannot hold a room's senders
//! back (their queues fill and the hub cuts them, as before). A single slow reader never
//! congests a conversation either: it takes a strict majority of the counted readers.
//!
//! Deciding: each publish's tally sets the conversation's [`Congestion`] (a majority behind:
//! refuse sends for the retry time, renewed by every such publish) or clears it (at most half
//! above the low-water mark). While nothing is published nobody measures, so a refusal lasts
//! only the retry time: the sends admitted after it are the next measurement. The hint is the
//! time left plus up to as much again at random, so refused senders do not all come back at
//! once.
//!
//! In flight: sends already queued with the store when the conversation becomes congested
//! still commit and are delivered to every reader, so they are bounded per conversation too:
//! at most [`INFLIGHT_BYTES`] of them (bodies plus [`SEND_OVERHEAD`] each) between admission
//! and acknowledgement ([`Admitted`] holds a send's share); past that a send is refused the
//! same way, with a hint of about a store commit. Without it a hundred senders with deep
//! pipelines would land a burst of several MiB in every reader's queue before the first
//! publish could measure anything, and the hub would cut them all. So a reader's queue passes
//! the high-water mark by at most that budget, well inside the caps of `outbound`.
//!
//! Cost: the send path reads one atomic and adds to another ([`Congestion::admit`]); a clock
//! is read only while the conversation is congested. The hub reads the clock once per publish.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use crate::config::Limits;

/// How long a reader above the low-water mark may go without its queue shrinking before it
/// counts as not reading (left out of the majority).
pub const STALL: Duration = Duration::from_secs(1);
/// Bytes of sends one conversation may have between admission and acknowledgement: three
/// quarters of a stream's queue cap, so their burst (counted generously: [`SEND_OVERHEAD`] is
/// more than a frame's other bytes) still fits in every reader's queue on top of the default
/// high-water mark. It caps a conversation's rate at this over the commit latency: about
/// 1,100 messages of 100 bytes, so 7,000 a second even at 150 ms per commit (a quarter of
/// the cap limited a loaded machine's bench to 2,400).
pub const INFLIGHT_BYTES: usize = crate::chat::outbound::STREAM_QUEUE_BYTES * 3 / 4;
/// What a send counts for beyond its body: its frame's other fields (the author's name, the
/// numbers) and the queue's per-frame overhead, rounded up.
pub const SEND_OVERHEAD: usize = 256;
/// The shortest wait a send refused for the in-flight budget is told to take: about one
/// store commit.
const INFLIGHT_RETRY: Duration = Duration::from_millis(10);

/// The thresholds, from the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// A reader whose connection holds at least this many bytes is behind.
    pub high_water: usize,
    /// A reader holding less has caught up.
    pub low_water: usize,
    /// How long refused senders wait, at least.
    pub retry: Duration,
}

impl Policy {
    pub fn new(high_water: usize, retry: Duration) -> Policy {
        let high_water = high_water.max(1);
        Policy {
            high_water,
            low_water: high_water / 2,
            retry: retry.max(Duration::from_millis(1)),
        }
    }
}

impl Default for Policy {
    fn default() -> Self {
        Policy::from(&Limits::default())
    }
}

impl From<&Limits> for Policy {
    fn from(limits: &Limits) -> Self {
        Policy::new(limits.congested_queue_bytes, limits.congestion_retry)
    }
}

/// Microseconds since the first call (never 0), the clock this module keeps times in.
fn now_us() -> u64 {
    static ORIGIN: LazyLock<Instant> = LazyLock::new(Instant::now);
    u64::try_from(ORIGIN.elapsed().as_micros())
        .unwrap_or(u64::MAX)
        .saturating_add(1)
}

/// What the hub keeps for one live subscriber: whether its queue drains.
#[derive(Debug, Clone, Copy)]
pub struct Reader {
    /// The bytes its connection held after the last push.
    last_held: usize,
    /// When its queue was last seen to shrink (or to be below the low-water mark).
    progressed_at: u64,
}

impl Default for Reader {
    fn default() -> Self {
        Reader {
            // The first push always counts as progress.
            last_held: usize::MAX,
            progressed_at: now_us(),
        }
    }
}

/// One publish's count of a conversation's live readers.
#[derive(Debug)]
pub struct Tally {
    policy: Policy,
    now: u64,
    /// Readers counted (those that read).
    live: u32,
    /// Counted readers at or above the high-water mark.
    behind: u32,
    /// Counted readers at or above the low-water mark.
    above_low: u32,
}

impl Tally {
    pub fn new(policy: Policy) -> Tally {
        Tally {
            policy,
            now: now_us(),
            live: 0,
            behind: 0,
            above_low: 0,
        }
    }

    /// A message was queued for `reader`, whose connection now holds `held` bytes.
    pub fn count(&mut self, reader: &mut Reader, held: usize) {
        let low = self.policy.low_water;
        if held <= reader.last_held || held < low {
            reader.progressed_at = self.now;
        }
        reader.last_held = held;
        if held < low {
            self.live += 1;
            return;
        }
        let stalled = self.now.saturating_sub(reader.progressed_at) > STALL.as_micros() as u64;
        if stalled {
            return;
        }
        self.live += 1;
        self.above_low += 1;
        if held >= self.policy.high_water {
            self.behind += 1;
        }
    }
}

/// Whether sends into one conversation are refused now; shared by the hub, which sets it from
/// each publish's [`Tally`], and the conversation's streams, which check it on every send.
#[derive(Debug, Default)]
pub struct Congestion {
    /// Until when (in [`now_us`] time) sends are refused; 0 when they are not.
    until: AtomicU64,
    /// Bytes of the sends admitted and not yet acknowledged.
    inflight: AtomicUsize,
}

/// Why a send into a conversation is refused now, with how long to wait (jittered).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error(
        "the conversation's readers are behind (server busy); retry in {} ms",
        .0.as_millis().max(1)
    )]
    Behind(Duration),
    #[error(
        "too many messages on their way into this conversation; retry in {} ms",
        .0.as_millis().max(1)
    )]
    InFlight(Duration),
}

impl Refused {
    pub fn wait(self) -> Duration {
        match self {
            Refused::Behind(wait) | Refused::InFlight(wait) => wait,
        }
    }

    /// The `reason` label of `quibble_sends_congested_total`.
    pub fn label(self) -> &'static str {
        match self {
            Refused::Behind(_) => "readers_behind",
            Refused::InFlight(_) => "in_flight",
        }
    }
}

/// An admitted send's share of its conversation's in-flight budget, given back on drop (once
/// the send is acknowledged, or its stream is gone).
#[derive(Debug)]
pub struct Admitted {
    congestion: Arc<Congestion>,
    bytes: usize,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.congestion
            .inflight
            .fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

impl Congestion {
    /// Decide from a publish's tally (see the module doc).
    pub fn observe(&self, tally: &Tally) {
        if tally.live == 0 {
            return;
        }
        if tally.behind * 2 > tally.live {
            let retry = u64::try_from(tally.policy.retry.as_micros()).unwrap_or(u64::MAX);
            self.until
                .store(tally.now.saturating_add(retry), Ordering::Relaxed);
        } else if tally.above_low * 2 <= tally.live && self.until.load(Ordering::Relaxed) != 0 {
            self.until.store(0, Ordering::Relaxed);
        }
    }

    /// Admit a send with a body of `body_len` bytes now, or refuse it (see the module doc).
    pub fn admit(self: &Arc<Self>, body_len: usize) -> Result<Admitted, Refused> {
        self.check()?;
        let bytes = body_len.saturating_add(SEND_OVERHEAD);
        let before = self.inflight.fetch_add(bytes, Ordering::Relaxed);
        if before > 0 && before.saturating_add(bytes) > INFLIGHT_BYTES {
            self.inflight.fetch_sub(bytes, Ordering::Relaxed);
            return Err(Refused::InFlight(jittered(INFLIGHT_RETRY)));
        }
        Ok(Admitted {
            congestion: Arc::clone(self),
            bytes,
        })
    }

    /// Whether most readers were behind at the last measure, and the retry time is not over.
    fn check(&self) -> Result<(), Refused> {
        let until = self.until.load(Ordering::Relaxed);
        if until == 0 {
            return Ok(());
        }
        let left = until.saturating_sub(now_us());
        if left == 0 {
            return Ok(());
        }
        Err(Refused::Behind(jittered(Duration::from_micros(left))))
    }
}

/// `wait` plus up to as much again at random, so refused senders do not all return at once.
fn jittered(wait: Duration) -> Duration {
    let us = u64::try_from(wait.as_micros()).unwrap_or(u64::MAX);
    Duration::from_micros(us.saturating_add(rand::random_range(0..=us)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KIB: usize = 1024;

    fn policy() -> Policy {
        Policy::new(64 * KIB, Duration::from_millis(50))
    }

    /// Count readers holding `held` bytes each (every one seen draining just before).
    fn tally(held: &[usize]) -> Tally {
        let mut tally = Tally::new(policy());
        for &h in held {
            tally.count(&mut Reader::default(), h);
        }
        tally
    }

    #[test]
    fn a_majority_behind_congests_and_a_majority_caught_up_clears() {
        let congestion = Congestion::default();
        congestion.observe(&tally(&[0, 0, 70 * KIB, 70 * KIB]));
        assert!(congestion.check().is_ok(), "half is not a majority");
        congestion.observe(&tally(&[0, 70 * KIB, 70 * KIB, 70 * KIB]));
        let refused = congestion.check().unwrap_err();
        let wait = refused.wait();
        assert!(
            matches!(refused, Refused::Behind(_))
                && wait > Duration::ZERO
                && wait <= Duration::from_millis(100),
            "{refused:?}"
        );
        assert!(refused.to_string().contains("retry in"), "{refused}");
        // Between the marks: it stays as it is.
        congestion.observe(&tally(&[40 * KIB, 40 * KIB, 40 * KIB, 0]));
        assert!(congestion.check().is_err());
        // Most readers below the low-water mark: clear.
        congestion.observe(&tally(&[40 * KIB, 40 * KIB, 0, 0]));
        assert!(congestion.check().is_ok());
    }

    #[test]
    fn a_refusal_lapses_after_the_retry_time_without_a_new_measure() {
        let congestion = Congestion::default();
        let mut tally = tally(&[70 * KIB]);
        tally.policy.retry = Duration::from_millis(1);
        congestion.observe(&tally);
        std::thread::sleep(Duration::from_millis(5));
        assert!(congestion.check().is_ok());
    }

    #[test]
    fn sends_in_flight_are_bounded_in_bytes_and_freed_when_done() {
        let congestion = Arc::new(Congestion::default());
        let body = 1000;
        let fit = INFLIGHT_BYTES / (body + SEND_OVERHEAD);
        let admitted: Vec<Admitted> = (0..fit)
            .map(|_| congestion.admit(body).expect("within the budget"))
            .collect();
        let refused = congestion.admit(body).unwrap_err();
        assert!(matches!(refused, Refused::InFlight(_)), "{refused:?}");
        assert!(refused.to_string().contains("retry in"), "{refused}");
        drop(admitted);
        assert_eq!(congestion.inflight.load(Ordering::Relaxed), 0);
        // A send larger than the whole budget still goes alone.
        assert!(congestion.admit(2 * INFLIGHT_BYTES).is_ok());
    }

    #[test]
    fn readers_that_do_not_drain_are_left_out_of_the_count() {
        let policy = policy();
        let mut deaf = Reader::default();
        let mut first = Tally::new(policy);
        first.count(&mut deaf, 70 * KIB);
        assert_eq!(first.behind, 1, "new readers count");
        // Its queue only grows, for longer than STALL.
        let mut later = Tally::new(policy);
        later.now = first.now + STALL.as_micros() as u64 + 1;
        later.count(&mut deaf, 80 * KIB);
        let mut healthy = Reader::default();
        later.count(&mut healthy, 0);
        assert_eq!((later.live, later.behind), (1, 0));
        let congestion = Congestion::default();
        congestion.observe(&later);
        assert!(congestion.check().is_ok(), "deaf readers congest nothing");
        // Once it drains it counts again.
        let mut again = Tally::new(policy);
        again.now = later.now + 1;
        again.count(&mut deaf, 75 * KIB);
        assert_eq!((again.live, again.behind), (1, 1));
    }
}
