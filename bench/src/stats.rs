//! From the bots' raw records to a run's figures: every ack and arrival is matched to its send
//! by (author, client id); deliveries are counted per member (first arrivals, duplicates,
//! messages nobody sent there) against what the room owes; latencies go into hdrhistograms
//! (microseconds) and come out as p50/p90/p99/p99.9/max. Late joiners' arrivals count as
//! deliveries but not in the fan-out latency (most of theirs are replays); their connect+join
//! is summarised apart. The fan-out histogram is kept whole for the latency plot.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use quibble_client::{ConversationId, UserId};
use serde::Serialize;

use crate::record::{BotRecord, MessageKey};
use crate::server_cpu::ServerCost;
use crate::step_figures::StepFigures;

/// Distinct error lines kept as samples.
const ERROR_SAMPLES: usize = 10;
/// The largest latency a histogram holds exactly (larger ones are clamped): one hour.
const MAX_LATENCY_US: u64 = 3_600_000_000;

/// The figures of one run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunStats {
    pub bots: u64,
    pub planned: u64,
    pub sent: u64,
    pub acked: u64,
    pub rejected: u64,
    /// Rejections by error code.
    pub rejected_by_code: BTreeMap<String, u64>,
    pub unanswered: u64,
    pub expected: u64,
    pub delivered: u64,
    pub lost: u64,
    pub duplicated: u64,
    /// First arrivals of a message after a later message of the same author, at one member.
    pub out_of_order: u64,
    pub unexpected: u64,
    pub errors: u64,
    /// The most frequent distinct errors, with their counts.
    pub error_samples: Vec<(String, u64)>,
    pub throughput: Throughput,
    pub latency_us: Latencies,
    /// What the server spent over the measured window (only with `--server-pid`).
    pub server: Option<ServerCost>,
    /// What this process, the load generator, spent over the same window (`versus`): a
    /// saturated bench shows as latency that is not the server's.
    pub bench: Option<ServerCost>,
    /// A sweep step's figures up to its deadline (`versus --sweep`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<StepFigures>,
    /// Every fan-out latency (µs), for the plot.
    #[serde(skip)]
    pub fanout_histogram: Histogram<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Throughput {
    /// Seconds from the first measured send to the last measured ack or delivery.
    pub window_s: f64,
    pub acked_per_s: f64,
    pub delivered_per_s: f64,
    /// Acks of measured messages.
    pub measured_acks: u64,
    /// First arrivals of measured messages, at every member, the author included.
    pub measured_deliveries: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Latencies {
    pub ack: Summary,
    pub fanout: Summary,
    pub connect_join: Summary,
    /// Connect+join of the late joiners (empty unless some joined late).
    pub late_connect_join: Summary,
}

/// A latency distribution in microseconds (all zero when empty).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct Summary {
    pub count: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p99_9: u64,
    pub max: u64,
    pub mean: f64,
}

impl RunStats {
    /// Nothing lost, duplicated, unexpected, refused or unanswered, nothing unsent, no errors.
    pub fn clean(&self) -> bool {
        self.sent == self.planned
            && self.rejected == 0
            && self.unanswered == 0
            && self.lost == 0
            && self.duplicated == 0
            && self.out_of_order == 0
            && self.unexpected == 0
            && self.errors == 0
    }
}

/// A send, as the matching needs it.
struct SendInfo {
    at: Instant,
    room: ConversationId,
    measured: bool,
    /// Its place among its author's sends.
    position: usize,
}

/// The figures of a run whose bots left `records` and which planned `planned` sends.
pub fn aggregate(records: &[BotRecord], planned: u64) -> anyhow::Result<RunStats> {
    let mut members: HashMap<ConversationId, u64> = HashMap::new();
    let mut sends: HashMap<MessageKey, SendInfo> = HashMap::new();
    for record in records {
        *members.entry(record.room).or_default() += 1;
        for (position, sent) in record.sends.iter().enumerate() {
            let info = SendInfo {
                at: sent.at,
                room: record.room,
                measured: sent.measured,
                position,
            };
            sends.insert((record.user, sent.client_id), info);
        }
    }
    let mut ack_latency = histogram()?;
    let mut fanout_latency = histogram()?;
    let mut connect_join = histogram()?;
    let mut late_connect_join = histogram()?;
    let first_measured = sends.values().filter(|s| s.measured).map(|s| s.at).min();
    let mut last_ack = None;
    let mut last_delivery = None;
    let (mut acked, mut measured_acks) = (0u64, 0u64);
    let mut rejected: HashSet<MessageKey> = HashSet::new();
    let mut rejected_by_code: BTreeMap<String, u64> = BTreeMap::new();
    let mut errors: BTreeMap<&str, u64> = BTreeMap::new();

    for record in records {
        let joins = if record.late {
            &mut late_connect_join
        } else {
            &mut connect_join
        };
        record_latency(joins, record.connect_join);
        for error in &record.errors {
            *errors.entry(error).or_default() += 1;
        }
        for &(client_id, at) in &record.acks {
            let Some(send) = sends.get(&(record.user, client_id)) else {
                *errors.entry("an ack for a message never sent").or_default() += 1;
                continue;
            };
            acked += 1;
            if send.measured {
                measured_acks += 1;
                record_latency(&mut ack_latency, at.saturating_duration_since(send.at));
                last_ack = last_ack.max(Some(at));
            }
        }
        for &(client_id, code) in &record.rejections {
            rejected.insert((record.user, client_id));
            *rejected_by_code.entry(code.to_string()).or_default() += 1;
        }
    }

    let (mut delivered, mut measured_deliveries) = (0u64, 0u64);
    let (mut duplicated, mut unexpected, mut out_of_order) = (0u64, 0u64, 0u64);
    for record in records {
        let mut seen: HashSet<MessageKey> = HashSet::new();
        // The latest message of each author this member got.
        let mut latest: HashMap<UserId, usize> = HashMap::new();
        for arrival in &record.arrivals {
            let send = sends.get(&arrival.key).filter(|send| {
                send.room == arrival.conversation
                    && arrival.conversation == record.room
                    && !rejected.contains(&arrival.key)
            });
            let Some(send) = send else {
                unexpected += 1;
                continue;
            };
            if !seen.insert(arrival.key) {
                duplicated += 1;
                continue;
            }
            match latest.entry(arrival.key.0) {
                Entry::Occupied(latest) if *latest.get() > send.position => out_of_order += 1,
                Entry::Occupied(mut latest) => *latest.get_mut() = send.position,
                Entry::Vacant(first) => {
                    first.insert(send.position);
                }
            }
            delivered += 1;
            if send.measured {
                measured_deliveries += 1;
                last_delivery = last_delivery.max(Some(arrival.at));
                if arrival.key.0 != record.user && !record.late {
                    record_latency(
                        &mut fanout_latency,
                        arrival.at.saturating_duration_since(send.at),
                    );
                }
            }
        }
    }

    let expected: u64 = sends
        .iter()
        .filter(|(key, _)| !rejected.contains(key))
        .map(|(_, send)| members.get(&send.room).copied().unwrap_or_default())
        .sum();
    let sent = count(sends.len());
    let rejected_count = count(rejected.len());
    let acks_window = window(first_measured, last_ack);
    let deliveries_window = window(first_measured, last_delivery);
    let mut error_samples: Vec<(String, u64)> = errors
        .iter()
        .map(|(error, &n)| ((*error).to_owned(), n))
        .collect();
    error_samples.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    error_samples.truncate(ERROR_SAMPLES);
    Ok(RunStats {
        bots: count(records.len()),
        planned,
        sent,
        acked,
        rejected: rejected_count,
        rejected_by_code,
        unanswered: sent.saturating_sub(acked).saturating_sub(rejected_count),
        expected,
        delivered,
        lost: expected.saturating_sub(delivered),
        duplicated,
        out_of_order,
        unexpected,
        errors: errors.values().sum(),
        error_samples,
        throughput: Throughput {
            window_s: acks_window.max(deliveries_window).as_secs_f64(),
            acked_per_s: per_second(measured_acks, acks_window),
            delivered_per_s: per_second(measured_deliveries, deliveries_window),
            measured_acks,
            measured_deliveries,
        },
        latency_us: Latencies {
            ack: summarize(&ack_latency),
            fanout: summarize(&fanout_latency),
            connect_join: summarize(&connect_join),
            late_connect_join: summarize(&late_connect_join),
        },
        server: None,
        bench: None,
        step: None,
        fanout_histogram: fanout_latency,
    })
}

/// Events per second over `window` (0 for an empty window).
pub fn per_second(events: u64, window: Duration) -> f64 {
    let seconds = window.as_secs_f64();
    if seconds > 0.0 {
        events as f64 / seconds
    } else {
        0.0
    }
}

fn window(from: Option<Instant>, to: Option<Instant>) -> Duration {
    match (from, to) {
        (Some(from), Some(to)) => to.saturating_duration_since(from),
        _ => Duration::ZERO,
    }
}

fn count(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// The summary of `latencies`.
pub fn summary_of(latencies: impl IntoIterator<Item = Duration>) -> anyhow::Result<Summary> {
    let mut all = histogram()?;
    for latency in latencies {
        record_latency(&mut all, latency);
    }
    Ok(summarize(&all))
}

pub fn histogram() -> anyhow::Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).context("cannot make a latency histogram")
}

pub fn record_latency(histogram: &mut Histogram<u64>, latency: Duration) {
    let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
    histogram.saturating_record(us.max(1));
}

pub fn summarize(histogram: &Histogram<u64>) -> Summary {
    if histogram.is_empty() {
        return Summary::default();
    }
    Summary {
        count: histogram.len(),
        p50: histogram.value_at_quantile(0.5),
        p90: histogram.value_at_quantile(0.9),
        p99: histogram.value_at_quantile(0.99),
        p99_9: histogram.value_at_quantile(0.999),
        max: histogram.max(),
        mean: histogram.mean(),
    }
}

#[cfg(test)]
mod tests {
    use quibble_client::{ErrorCode, UserId};

    use super::*;
    use crate::record::{Arrival, Sent};

    const ROOM: ConversationId = ConversationId(7);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn bot(user: u64, t0: Instant, sends: &[(u64, u64, bool)]) -> BotRecord {
        let mut record = BotRecord::new(UserId(user), ROOM, ms(user * 10));
        record.sends = sends
            .iter()
            .map(|&(client_id, at, measured)| Sent {
                client_id,
                at: t0 + ms(at),
                measured,
            })
            .collect();
        record
    }

    fn arrive(record: &mut BotRecord, t0: Instant, author: u64, client_id: u64, at: u64) {
        record.arrivals.push(Arrival {
            conversation: ROOM,
            key: (UserId(author), client_id),
            at: t0 + ms(at),
        });
    }

    #[test]
    fn a_clean_run_adds_up() {
        let t0 = Instant::now();
        // Two members; each sends one warmup message (id 1) and one measured (id 2).
        let mut a = bot(1, t0, &[(1, 0, false), (2, 100, true)]);
        let mut b = bot(2, t0, &[(1, 0, false), (2, 100, true)]);
        for (record, user) in [(&mut a, 1), (&mut b, 2)] {
            record.acks = vec![(1, t0 + ms(5)), (2, t0 + ms(100 + 4 * user))];
            for author in [1, 2] {
                arrive(record, t0, author, 1, 6);
                arrive(record, t0, author, 2, 110 + 10 * user);
            }
        }
        let stats = aggregate(&[a, b], 4).unwrap();
        assert!(stats.clean(), "{stats:?}");
        assert_eq!((stats.bots, stats.sent, stats.acked), (2, 4, 4));
        assert_eq!((stats.expected, stats.delivered), (8, 8));
        // Ack latency of the measured messages only: 4 ms and 8 ms.
        let ack = stats.latency_us.ack;
        assert_eq!(ack.count, 2);
        // hdrhistogram keeps 3 significant digits.
        assert!((7_990..=8_010).contains(&ack.max), "{ack:?}");
        assert!((3_990..=4_010).contains(&ack.p50), "{ack:?}");
        // Fan-out: each measured message at the other member only (120 ms at bot 1, 130 ms
        // at bot 2, from sends at 100 ms).
        let fanout = stats.latency_us.fanout;
        assert_eq!(fanout.count, 2);
        assert!((19_980..=20_020).contains(&fanout.p50), "{fanout:?}");
        assert!((29_980..=30_020).contains(&fanout.max), "{fanout:?}");
        assert_eq!(stats.latency_us.connect_join.count, 2);
        // Window: first measured send at 100 ms; last measured ack at 108 ms, last measured
        // delivery at 130 ms; 2 acks and 4 deliveries in it.
        assert!((stats.throughput.acked_per_s - 2.0 / 0.008).abs() < 1e-6);
        assert!((stats.throughput.delivered_per_s - 4.0 / 0.030).abs() < 1e-6);
        assert!((stats.throughput.window_s - 0.030).abs() < 1e-9);
    }

    #[test]
    fn losses_duplicates_rejections_and_strangers_are_counted_apart() {
        let t0 = Instant::now();
        let mut a = bot(1, t0, &[(1, 0, true), (2, 10, true), (3, 20, true)]);
        let mut b = bot(2, t0, &[]);
        a.acks = vec![(1, t0 + ms(3)), (99, t0 + ms(4))];
        a.rejections = vec![(2, ErrorCode::RateLimited)];
        a.errors = vec!["disconnected".into(), "disconnected".into(), "x".into()];
        // Message 1 reaches a once and b twice; message 3 (unanswered) reaches only a; the
        // rejected message 2 shows up at b anyway; and b hears from someone unknown.
        arrive(&mut a, t0, 1, 1, 5);
        arrive(&mut a, t0, 1, 3, 25);
        arrive(&mut b, t0, 1, 1, 6);
        arrive(&mut b, t0, 1, 1, 7);
        arrive(&mut b, t0, 1, 2, 12);
        arrive(&mut b, t0, 9, 1, 8);
        let stats = aggregate(&[a, b], 3).unwrap();
        assert!(!stats.clean());
        assert_eq!((stats.sent, stats.acked, stats.rejected), (3, 1, 1));
        assert_eq!(stats.rejected_by_code.get("rate_limited"), Some(&1));
        assert_eq!(stats.unanswered, 1);
        // Messages 1 and 3 are owed to both members.
        assert_eq!((stats.expected, stats.delivered, stats.lost), (4, 3, 1));
        assert_eq!((stats.duplicated, stats.unexpected), (1, 2));
        // Two disconnects, "x", and the ack for id 99.
        assert_eq!(stats.errors, 4);
        assert_eq!(stats.error_samples[0], ("disconnected".to_owned(), 2));
        assert_eq!(stats.out_of_order, 0);
    }

    #[test]
    fn a_message_after_a_later_one_of_its_author_is_out_of_order() {
        let t0 = Instant::now();
        let sends = [(1, 0, true), (2, 10, true), (3, 20, true)];
        let (mut a, mut b) = (bot(1, t0, &sends), bot(2, t0, &[]));
        a.acks = vec![(1, t0 + ms(1)), (2, t0 + ms(11)), (3, t0 + ms(21))];
        // a gets its messages in order; b gets 3 before 2 (and 1 twice, late).
        for (id, at) in [(1, 2), (2, 12), (3, 22)] {
            arrive(&mut a, t0, 1, id, at);
        }
        for (id, at) in [(1, 2), (3, 22), (2, 23), (1, 24)] {
            arrive(&mut b, t0, 1, id, at);
        }
        let stats = aggregate(&[a, b], 3).unwrap();
        assert_eq!((stats.delivered, stats.lost), (6, 0));
        assert_eq!((stats.out_of_order, stats.duplicated), (1, 1));
        assert!(!stats.clean());
    }

    #[test]
    fn an_empty_run_has_empty_figures() {
        let stats = aggregate(&[], 10).unwrap();
        assert_eq!((stats.sent, stats.expected, stats.lost), (0, 0, 0));
        assert_eq!(stats.latency_us.ack, Summary::default());
        assert_eq!(stats.throughput.acked_per_s, 0.0);
        assert!(!stats.clean(), "nothing was sent of the 10 planned");
    }

    #[test]
    fn late_joiners_count_as_members_but_not_in_the_fan_out() {
        let t0 = Instant::now();
        let mut a = bot(1, t0, &[(1, 0, true), (2, 10, true)]);
        let mut late = bot(2, t0, &[]);
        late.late = true;
        a.acks = vec![(1, t0 + ms(2)), (2, t0 + ms(12))];
        for id in [1, 2] {
            arrive(&mut a, t0, 1, id, 3 + 10 * (id - 1));
        }
        // The late member gets both by replay, long after they were sent.
        arrive(&mut late, t0, 1, 1, 500);
        arrive(&mut late, t0, 1, 2, 500);
        let stats = aggregate(&[a, late], 2).unwrap();
        assert!(stats.clean(), "{stats:?}");
        assert_eq!((stats.expected, stats.delivered), (4, 4));
        // No other on-time member: no fan-out sample; the late join is summarised apart.
        assert_eq!(stats.latency_us.fanout.count, 0);
        assert!(stats.fanout_histogram.is_empty());
        assert_eq!(stats.latency_us.connect_join.count, 1);
        assert_eq!(stats.latency_us.late_connect_join.count, 1);
        // A late member that received nothing leaves both messages lost.
        let mut b = bot(1, t0, &[(1, 0, true)]);
        b.acks = vec![(1, t0 + ms(2))];
        arrive(&mut b, t0, 1, 1, 3);
        let mut missing = bot(2, t0, &[]);
        missing.late = true;
        let stats = aggregate(&[b, missing], 1).unwrap();
        assert_eq!(stats.lost, 1);
    }

    #[test]
    fn summaries_of_durations() {
        let summary = summary_of([ms(1), ms(2), ms(3)]).unwrap();
        assert_eq!(summary.count, 3);
        assert!((1_995..=2_005).contains(&summary.p50), "{summary:?}");
        assert_eq!(summary_of([]).unwrap(), Summary::default());
    }

    #[test]
    fn rates_over_a_window() {
        assert_eq!(per_second(50, ms(500)), 100.0);
        assert_eq!(per_second(50, Duration::ZERO), 0.0);
    }
}
