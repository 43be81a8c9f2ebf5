//! What one step of `versus --sweep` measured, from the bots' raw records: the deliveries that
//! arrived by the step's end (its deadline, or when everything owed had arrived) and their
//! rate; the deliveries owed by messages acknowledged by then that never arrived, even after
//! the drain (lost: the server said it had the message and some member never got it); how
//! often the server cut a bot's connection or stream; and how many sends it refused for now
//! (pushing back on the sender). A message still unacknowledged at the end is neither
//! delivered in time nor lost: it is what the server had not taken yet.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use quibble_client::ConversationId;
use serde::Serialize;

use crate::record::{BotRecord, MessageKey};
use crate::stats::per_second;

/// A sweep step's figures up to its end.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct StepFigures {
    /// The step reached its deadline with deliveries still owed.
    pub cut: bool,
    /// From the first measured send to the last measured delivery by the end, seconds.
    pub window_s: f64,
    /// First arrivals of measured messages by the end, at every member (the author included).
    pub delivered_in_time: u64,
    /// `delivered_in_time` / `window_s`.
    pub delivered_per_s: f64,
    /// Deliveries owed by messages acknowledged by the end that had not arrived when the
    /// records closed (after the drain).
    pub lost: u64,
    /// Connections or streams the server cut, over every bot.
    pub cut_streams: u64,
    /// Sends refused for now (`RateLimited`), resent by the client.
    pub throttled: u64,
}

/// The figures of `records`, for a step that ended at `end` (`cut`: at its deadline).
pub fn of(records: &[BotRecord], end: Instant, cut: bool) -> StepFigures {
    let mut members: HashMap<ConversationId, u64> = HashMap::new();
    // Every send: its room, whether it is measured, and whether it was acknowledged by `end`.
    let mut sends: HashMap<MessageKey, (ConversationId, bool, bool)> = HashMap::new();
    let mut first_measured: Option<Instant> = None;
    for record in records {
        *members.entry(record.room).or_default() += 1;
        for sent in &record.sends {
            sends.insert(
                (record.user, sent.client_id),
                (record.room, sent.measured, false),
            );
            if sent.measured {
                first_measured = Some(first_measured.map_or(sent.at, |t| t.min(sent.at)));
            }
        }
    }
    for record in records {
        for &(client_id, at) in &record.acks {
            if at <= end
                && let Some(send) = sends.get_mut(&(record.user, client_id))
            {
                send.2 = true;
            }
        }
    }
    let mut arrived: HashMap<MessageKey, u64> = HashMap::new();
    let mut delivered_in_time = 0u64;
    let mut last_in_time: Option<Instant> = None;
    for record in records {
        let mut seen: HashSet<MessageKey> = HashSet::new();
        for arrival in &record.arrivals {
            let Some(&(room, measured, _)) = sends.get(&arrival.key) else {
                continue;
            };
            if room != record.room || arrival.conversation != room || !seen.insert(arrival.key) {
                continue;
            }
            *arrived.entry(arrival.key).or_default() += 1;
            if measured && arrival.at <= end {
                delivered_in_time += 1;
                last_in_time = last_in_time.max(Some(arrival.at));
            }
        }
    }
    let lost = sends
        .iter()
        .filter(|(_, (_, _, acked))| *acked)
        .map(|(key, (room, _, _))| {
            let owed = members.get(room).copied().unwrap_or_default();
            owed.saturating_sub(arrived.get(key).copied().unwrap_or_default())
        })
        .sum();
    let window = match (first_measured, last_in_time) {
        (Some(from), Some(to)) => to.saturating_duration_since(from),
        _ => std::time::Duration::ZERO,
    };
    StepFigures {
        cut,
        window_s: window.as_secs_f64(),
        delivered_in_time,
        delivered_per_s: per_second(delivered_in_time, window),
        lost,
        cut_streams: records.iter().map(|r| u64::from(r.cuts)).sum(),
        throttled: records.iter().map(|r| u64::from(r.throttled)).sum(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use quibble_client::UserId;

    use super::*;
    use crate::record::{Arrival, Sent};

    const ROOM: ConversationId = ConversationId(3);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn counts_what_arrived_in_time_and_what_acknowledged_never_arrived() {
        let t0 = Instant::now();
        // Two members; each sends two measured messages (client ids 1 and 2).
        let mut records: Vec<BotRecord> = (1..=2)
            .map(|user| {
                let mut r = BotRecord::new(UserId(user), ROOM, ms(1));
                r.sends = (1..=2)
                    .map(|client_id| Sent {
                        client_id,
                        at: t0 + ms(client_id * 100),
                        measured: true,
                    })
                    .collect();
                r
            })
            .collect();
        let arrive = |r: &mut BotRecord, author: u64, client_id: u64, at: u64| {
            r.arrivals.push(Arrival {
                conversation: ROOM,
                key: (UserId(author), client_id),
                at: t0 + ms(at),
            });
        };
        // User 1's first message: acked, reaches both in time (and one duplicate).
        records[0].acks.push((1, t0 + ms(150)));
        arrive(&mut records[0], 1, 1, 150);
        arrive(&mut records[1], 1, 1, 200);
        arrive(&mut records[1], 1, 1, 210);
        // User 1's second: acked in time, reaches user 1 only, after the end: one lost.
        records[0].acks.push((2, t0 + ms(300)));
        arrive(&mut records[0], 1, 2, 1_500);
        // User 2's first: acked after the end, never delivered: not lost, not in time.
        records[1].acks.push((1, t0 + ms(1_200)));
        // User 2's second: unanswered, delivered to user 2 in time.
        arrive(&mut records[1], 2, 2, 900);
        records[1].cuts = 1;
        records[0].throttled = 3;
        let figures = of(&records, t0 + ms(1_000), true);
        assert_eq!(
            figures,
            StepFigures {
                cut: true,
                window_s: 0.8,
                delivered_in_time: 3,
                delivered_per_s: 3.0 / 0.8,
                lost: 1,
                cut_streams: 1,
                throttled: 3,
            }
        );
    }
}
