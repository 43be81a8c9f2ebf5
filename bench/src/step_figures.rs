//! What one step of `versus --sweep` measured, from the bots' raw records: the deliveries that
//! arrived between the first measured send and the step's end (its deadline, or when
//! everything owed had arrived), whichever message they carried (past saturation the warm-up's
//! backlog is still being delivered: it is throughput all the same), and their rate; what
//! happened to the messages acknowledged by then; how often the server cut a bot's connection
//! or stream; and how many sends it refused for now (pushing back on the sender).
//!
//! An acknowledged message that a member still lacks when the records close (after the
//! drain) is lost for that member if the member got a later message of the same author: every
//! server here delivers one author's messages to a member in the order they were sent (a
//! single ordered stream; Quibble's client also fills gaps from history), so it will not
//! come. Otherwise it is late: still on its way, which past saturation can take longer than
//! the drain. A message unacknowledged at the end is neither: the server had not taken it yet.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use quibble_client::{ConversationId, UserId};
use serde::Serialize;

use crate::record::{BotRecord, MessageKey};
use crate::stats::per_second;

/// A sweep step's figures up to its end.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct StepFigures {
    /// The step reached its deadline with deliveries still owed.
    pub cut: bool,
    /// From the first measured send to the last delivery by the end, seconds.
    pub window_s: f64,
    /// First arrivals in that window, at every member (the author included).
    pub delivered_in_time: u64,
    /// `delivered_in_time` / `window_s`.
    pub delivered_per_s: f64,
    /// Deliveries of messages acknowledged by the end that never came: the member got a later
    /// message of the same author instead.
    pub lost: u64,
    /// Deliveries of messages acknowledged by the end still on their way when the records
    /// closed.
    pub late: u64,
    /// Connections or streams the server cut, over every bot.
    pub cut_streams: u64,
    /// Sends refused for now (`RateLimited`), resent by the client.
    pub throttled: u64,
}

/// A send as the figures need it.
struct SendInfo {
    room: ConversationId,
    /// Its place among its author's sends.
    position: usize,
    acked: bool,
}

/// The figures of `records`, for a step that ended at `end` (`cut`: at its deadline).
pub fn of(records: &[BotRecord], end: Instant, cut: bool) -> StepFigures {
    let mut sends: HashMap<MessageKey, SendInfo> = HashMap::new();
    let mut first_measured: Option<Instant> = None;
    for record in records {
        for (position, sent) in record.sends.iter().enumerate() {
            let info = SendInfo {
                room: record.room,
                position,
                acked: false,
            };
            sends.insert((record.user, sent.client_id), info);
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
                send.acked = true;
            }
        }
    }
    let mut acked_by_room: HashMap<ConversationId, Vec<(MessageKey, usize)>> = HashMap::new();
    for (&key, send) in &sends {
        if send.acked {
            acked_by_room
                .entry(send.room)
                .or_default()
                .push((key, send.position));
        }
    }
    let (mut delivered_in_time, mut lost, mut late) = (0u64, 0u64, 0u64);
    let mut last_in_time: Option<Instant> = None;
    for record in records {
        let mut seen: HashSet<MessageKey> = HashSet::new();
        // The latest message of each author this member got.
        let mut latest: HashMap<UserId, usize> = HashMap::new();
        for arrival in &record.arrivals {
            let Some(send) = sends.get(&arrival.key) else {
                continue;
            };
            if send.room != record.room
                || arrival.conversation != record.room
                || !seen.insert(arrival.key)
            {
                continue;
            }
            let author = latest.entry(arrival.key.0).or_default();
            *author = (*author).max(send.position);
            let in_window = first_measured.is_some_and(|from| from <= arrival.at);
            if in_window && arrival.at <= end {
                delivered_in_time += 1;
                last_in_time = last_in_time.max(Some(arrival.at));
            }
        }
        for &(key, position) in acked_by_room.get(&record.room).into_iter().flatten() {
            if seen.contains(&key) {
                continue;
            }
            if latest.get(&key.0).is_some_and(|&got| got > position) {
                lost += 1;
            } else {
                late += 1;
            }
        }
    }
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
        late,
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
    fn counts_what_arrived_in_time_and_tells_lost_from_late() {
        let t0 = Instant::now();
        // Two members; each sends three measured messages (client ids 1 to 3).
        let mut records: Vec<BotRecord> = (1..=2)
            .map(|user| {
                let mut r = BotRecord::new(UserId(user), ROOM, ms(1));
                r.sends = (1..=3)
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
        // User 1's second: acked in time, reaches user 1 (after the end), not user 2, who got
        // user 1's third instead: lost for user 2.
        records[0].acks.push((2, t0 + ms(300)));
        arrive(&mut records[0], 1, 2, 1_500);
        arrive(&mut records[1], 1, 3, 800);
        // User 2's first: acked in time, reaches user 2 only; user 1 got nothing later from
        // user 2: late for user 1.
        records[1].acks.push((1, t0 + ms(400)));
        arrive(&mut records[1], 2, 1, 400);
        // User 2's second: acked after the end and never delivered: neither lost nor late.
        records[1].acks.push((2, t0 + ms(1_200)));
        // User 2's third: unanswered, delivered to user 2 in time.
        arrive(&mut records[1], 2, 3, 900);
        records[1].cuts = 1;
        records[0].throttled = 3;
        let figures = of(&records, t0 + ms(1_000), true);
        assert_eq!(
            figures,
            StepFigures {
                cut: true,
                window_s: 0.8,
                delivered_in_time: 5,
                delivered_per_s: 5.0 / 0.8,
                lost: 1,
                late: 1,
                cut_streams: 1,
                throttled: 3,
            }
        );
    }
}
