//! Measurements of one run: the expected counts of a scenario ([`Plan`]), latency histograms
//! in microseconds ([`Latency`]), and the [`Ledger`] that matches every send with its
//! acknowledgement and its deliveries, counting losses, duplicates and errors.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use quibble_client::{ErrorCode, TransportKind, UserId};
use serde::Serialize;

/// The largest latency tracked exactly, in microseconds (an hour); longer ones saturate.
const MAX_LATENCY_US: u64 = 3_600_000_000;

/// The shape of a scenario and what it must produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub rooms: u64,
    pub users_per_room: u64,
    pub messages: u64,
}

impl Plan {
    pub fn bots(&self) -> u64 {
        self.rooms * self.users_per_room
    }

    /// Every bot sends its messages.
    pub fn sends(&self) -> u64 {
        self.bots() * self.messages
    }

    /// Every message reaches every member of its room, its sender included.
    pub fn deliveries(&self) -> u64 {
        self.sends() * self.users_per_room
    }

    /// Deliveries to members other than the sender (the fan-out latency samples).
    pub fn fanouts(&self) -> u64 {
        self.sends() * (self.users_per_room - 1)
    }
}

/// A latency histogram, microseconds.
#[derive(Debug, Clone)]
pub struct Latency(Histogram<u64>);

impl Default for Latency {
    fn default() -> Latency {
        // Constant, valid bounds: 1 µs to an hour, 3 significant digits.
        Latency(
            Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)
                .expect("constant histogram bounds are valid"),
        )
    }
}

impl Latency {
    pub fn record(&mut self, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.0.saturating_record(us);
    }

    pub fn summary(&self) -> LatencySummary {
        let h = &self.0;
        if h.is_empty() {
            return LatencySummary::default();
        }
        LatencySummary {
            count: h.len(),
            p50_us: h.value_at_quantile(0.50),
            p90_us: h.value_at_quantile(0.90),
            p99_us: h.value_at_quantile(0.99),
            max_us: h.max(),
        }
    }
}

/// Percentiles of a [`Latency`] (all zero when empty).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LatencySummary {
    pub count: u64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

/// A bot as the ledger sees it: its account, its room (index) and its place in the room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    pub user: UserId,
    pub room: usize,
    pub slot: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    author: UserId,
    client_id: u64,
}

#[derive(Debug)]
struct Entry {
    sent_at: Instant,
    room: usize,
    acked: bool,
    /// Which members of the room have it, by slot.
    seen: Vec<bool>,
}

/// Running counts of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Counts {
    sent: u64,
    acked: u64,
    rejected: u64,
    delivered: u64,
    duplicated: u64,
    errors: BTreeMap<String, u64>,
}

/// Every send of a run, matched with its acknowledgement and deliveries.
#[derive(Debug)]
pub struct Ledger {
    plan: Plan,
    entries: HashMap<Key, Entry>,
    counts: Counts,
    ack: Latency,
    fanout: Latency,
    first_send: Option<Instant>,
    last_ack: Option<Instant>,
    last_delivery: Option<Instant>,
}

impl Ledger {
    pub fn new(plan: Plan) -> Ledger {
        Ledger {
            plan,
            entries: HashMap::new(),
            counts: Counts::default(),
            ack: Latency::default(),
            fanout: Latency::default(),
            first_send: None,
            last_ack: None,
            last_delivery: None,
        }
    }

    /// `author` sent `client_id` at `at`.
    pub fn on_sent(&mut self, author: Member, client_id: u64, at: Instant) {
        let key = Key {
            author: author.user,
            client_id,
        };
        let members = usize::try_from(self.plan.users_per_room).unwrap_or(usize::MAX);
        let entry = Entry {
            sent_at: at,
            room: author.room,
            acked: false,
            seen: vec![false; members],
        };
        if self.entries.insert(key, entry).is_some() {
            self.error("reused_client_id");
        }
        self.counts.sent += 1;
        self.first_send = Some(self.first_send.map_or(at, |first| first.min(at)));
    }

    /// The server acknowledged `author`'s `client_id` as durable.
    pub fn on_ack(&mut self, author: Member, client_id: u64, at: Instant) {
        let key = Key {
            author: author.user,
            client_id,
        };
        let Some(entry) = self.entries.get_mut(&key) else {
            return self.error("unknown_ack");
        };
        if entry.acked {
            return self.error("duplicate_ack");
        }
        entry.acked = true;
        self.ack.record(at.saturating_duration_since(entry.sent_at));
        self.counts.acked += 1;
        self.last_ack = Some(self.last_ack.map_or(at, |last| last.max(at)));
    }

    /// The server refused `author`'s `client_id`.
    pub fn on_rejected(&mut self, author: Member, client_id: u64, code: ErrorCode) {
        let key = Key {
            author: author.user,
            client_id,
        };
        if !self.entries.contains_key(&key) {
            return self.error("unknown_rejection");
        }
        self.counts.rejected += 1;
        self.error(&format!("rejected_{}", code.as_str()));
    }

    /// `receiver` got the message `client_id` of `author`.
    pub fn on_message(&mut self, receiver: Member, author: UserId, client_id: u64, at: Instant) {
        let Some(entry) = self.entries.get_mut(&Key { author, client_id }) else {
            return self.error("unknown_message");
        };
        if entry.room != receiver.room {
            return self.error("misrouted_message");
        }
        let Some(seen) = entry.seen.get_mut(receiver.slot) else {
            return self.error("misrouted_message");
        };
        if *seen {
            self.counts.duplicated += 1;
            return;
        }
        *seen = true;
        self.counts.delivered += 1;
        if receiver.user != author {
            self.fanout
                .record(at.saturating_duration_since(entry.sent_at));
        }
        self.last_delivery = Some(self.last_delivery.map_or(at, |last| last.max(at)));
    }

    /// Count an error of `kind`.
    pub fn error(&mut self, kind: &str) {
        *self.counts.errors.entry(kind.to_owned()).or_default() += 1;
    }

    /// Everything planned was sent, answered and (unless refused) delivered to every member.
    pub fn settled(&self) -> bool {
        let c = &self.counts;
        c.sent >= self.plan.sends()
            && c.acked + c.rejected >= c.sent
            && c.delivered + c.rejected * self.plan.users_per_room >= self.plan.deliveries()
    }

    /// The figures of the run.
    pub fn finish(&self, transport: TransportKind, connect: &Latency, timed_out: bool) -> RunStats {
        let c = &self.counts;
        let expected = self.plan.deliveries();
        let lost = expected.saturating_sub(c.delivered);
        let unacked = c.sent.saturating_sub(c.acked + c.rejected);
        let per_second = |count: u64, last: Option<Instant>| match (self.first_send, last) {
            (Some(first), Some(last)) if last > first => {
                count as f64 / last.duration_since(first).as_secs_f64()
            }
            _ => 0.0,
        };
        let ok = lost == 0
            && c.duplicated == 0
            && c.rejected == 0
            && unacked == 0
            && c.errors.is_empty()
            && !timed_out;
        RunStats {
            transport: transport_name(transport).to_owned(),
            ok,
            timed_out,
            planned_sends: self.plan.sends(),
            sent: c.sent,
            acked: c.acked,
            rejected: c.rejected,
            unacked,
            expected_deliveries: expected,
            expected_fanouts: self.plan.fanouts(),
            delivered: c.delivered,
            lost,
            duplicated: c.duplicated,
            errors: c.errors.clone(),
            connect_join_us: connect.summary(),
            ack_latency_us: self.ack.summary(),
            fanout_latency_us: self.fanout.summary(),
            acked_per_s: per_second(c.acked, self.last_ack),
            delivered_per_s: per_second(c.delivered, self.last_delivery),
        }
    }
}

/// The stable name of a transport in reports.
pub fn transport_name(kind: TransportKind) -> &'static str {
    match kind {
        TransportKind::WebTransport => "webtransport",
        TransportKind::WebSocket => "websocket",
    }
}

/// What one transport's run measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunStats {
    pub transport: String,
    /// Nothing lost, duplicated, refused or unacknowledged, no errors, no timeout.
    pub ok: bool,
    pub timed_out: bool,
    pub planned_sends: u64,
    pub sent: u64,
    pub acked: u64,
    pub rejected: u64,
    pub unacked: u64,
    pub expected_deliveries: u64,
    /// Deliveries to members other than the sender: the fan-out latency samples expected.
    pub expected_fanouts: u64,
    pub delivered: u64,
    pub lost: u64,
    pub duplicated: u64,
    /// Errors by kind (connection failures, disconnects, stream errors, stray frames, …).
    pub errors: BTreeMap<String, u64>,
    pub connect_join_us: LatencySummary,
    pub ack_latency_us: LatencySummary,
    pub fanout_latency_us: LatencySummary,
    /// Acknowledgements per second, from the first send to the last acknowledgement.
    pub acked_per_s: f64,
    /// Deliveries per second, from the first send to the last delivery.
    pub delivered_per_s: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAN: Plan = Plan {
        rooms: 1,
        users_per_room: 3,
        messages: 1,
    };

    fn member(slot: usize) -> Member {
        Member {
            user: UserId(10 + slot as u64),
            room: 0,
            slot,
        }
    }

    #[test]
    fn expected_counts() {
        let plan = Plan {
            rooms: 2,
            users_per_room: 3,
            messages: 10,
        };
        assert_eq!(plan.bots(), 6);
        assert_eq!(plan.sends(), 60);
        assert_eq!(plan.deliveries(), 180);
        assert_eq!(plan.fanouts(), 120);
        let alone = Plan {
            rooms: 4,
            users_per_room: 1,
            messages: 5,
        };
        assert_eq!(alone.deliveries(), 20);
        assert_eq!(alone.fanouts(), 0);
    }

    #[test]
    fn latency_percentiles_in_microseconds() {
        let mut latency = Latency::default();
        assert_eq!(latency.summary(), LatencySummary::default());
        for ms in 1..=100 {
            latency.record(Duration::from_millis(ms));
        }
        let s = latency.summary();
        assert_eq!(s.count, 100);
        // Three significant digits: within 0.1%.
        assert!(s.p50_us.abs_diff(50_000) <= 50, "{s:?}");
        assert!(s.p90_us.abs_diff(90_000) <= 90, "{s:?}");
        assert!(s.p99_us.abs_diff(99_000) <= 99, "{s:?}");
        assert!(s.max_us.abs_diff(100_000) <= 100, "{s:?}");
        latency.record(Duration::from_secs(100_000));
        assert!(latency.summary().max_us >= MAX_LATENCY_US);
    }

    /// Every member of the one room sends message `7 + slot`; all but `skip` are answered
    /// and delivered to every member.
    fn ledger_with_all_sent(skip: Option<usize>) -> (Ledger, Instant) {
        let t0 = Instant::now();
        let mut ledger = Ledger::new(PLAN);
        for author in 0..3 {
            ledger.on_sent(member(author), 7 + author as u64, t0);
        }
        assert!(!ledger.settled());
        for author in (0..3).filter(|a| Some(*a) != skip) {
            let id = 7 + author as u64;
            ledger.on_ack(member(author), id, t0 + Duration::from_millis(2));
            for slot in 0..3 {
                ledger.on_message(
                    member(slot),
                    member(author).user,
                    id,
                    t0 + Duration::from_millis(4),
                );
            }
        }
        (ledger, t0)
    }

    #[test]
    fn a_complete_run_is_settled_and_ok() {
        let (ledger, _) = ledger_with_all_sent(None);
        assert!(ledger.settled());
        let stats = ledger.finish(TransportKind::WebSocket, &Latency::default(), false);
        assert!(stats.ok, "{stats:?}");
        assert_eq!((stats.sent, stats.acked, stats.delivered), (3, 3, 9));
        assert_eq!(stats.expected_deliveries, 9);
        assert_eq!((stats.lost, stats.duplicated, stats.unacked), (0, 0, 0));
        assert_eq!(stats.ack_latency_us.count, 3);
        assert!(stats.ack_latency_us.p50_us.abs_diff(2_000) <= 2);
        assert!(stats.fanout_latency_us.max_us.abs_diff(4_000) <= 4);
        // The sender's own copy is a delivery but no fan-out sample.
        assert_eq!(stats.fanout_latency_us.count, 6);
        assert_eq!(stats.expected_fanouts, 6);
        assert!(stats.delivered_per_s > 0.0);
        assert_eq!(stats.transport, "websocket");
    }

    #[test]
    fn losses_duplicates_and_strays_are_counted() {
        let t0 = Instant::now();
        let mut ledger = Ledger::new(PLAN);
        ledger.on_sent(member(0), 7, t0);
        ledger.on_message(member(1), member(0).user, 7, t0);
        ledger.on_message(member(1), member(0).user, 7, t0);
        ledger.on_message(member(1), member(0).user, 8, t0);
        ledger.on_ack(member(1), 7, t0);
        let other_room = Member {
            room: 1,
            ..member(2)
        };
        ledger.on_message(other_room, member(0).user, 7, t0);
        assert!(!ledger.settled());
        let stats = ledger.finish(TransportKind::WebTransport, &Latency::default(), true);
        assert!(!stats.ok);
        assert_eq!(stats.sent, 1);
        assert_eq!(stats.delivered, 1);
        assert_eq!(stats.lost, 8);
        assert_eq!(stats.duplicated, 1);
        assert_eq!(stats.unacked, 1);
        assert_eq!(stats.errors.get("unknown_message"), Some(&1));
        assert_eq!(stats.errors.get("unknown_ack"), Some(&1));
        assert_eq!(stats.errors.get("misrouted_message"), Some(&1));
    }

    #[test]
    fn a_rejection_settles_its_message_but_fails_the_run() {
        let (mut ledger, _) = ledger_with_all_sent(Some(2));
        assert!(!ledger.settled());
        ledger.on_rejected(member(2), 9, ErrorCode::RateLimited);
        assert!(ledger.settled());
        let stats = ledger.finish(TransportKind::WebTransport, &Latency::default(), false);
        assert!(!stats.ok);
        assert_eq!(stats.rejected, 1);
        assert_eq!(stats.delivered, 6);
        assert_eq!(stats.lost, 3);
        assert_eq!(stats.errors.get("rejected_rate_limited"), Some(&1));
    }
}
