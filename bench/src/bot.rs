//! One bot: connect over the chosen transport (WebTransport sessions on the run's shared
//! endpoints) and join its room ([`connect`]; a late joiner from the room's first message, so
//! the server replays all of it), then send its messages on schedule while recording, raw, everything its client reports
//! ([`Bot::drive`]), until the run tells it to finish. The loop drives a [`Link`]: Quibble's
//! client here ([`QuibbleLink`]), or a peer server's (`peers/`, for `versus`), so that every
//! server is driven by the same schedule and leaves the same records.

use std::future::{Future, pending};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use quibble_client::{
    Api, Client, ClientEvent, ClientOptions, ConversationId, ErrorCode, Event, TransportKind,
    UserId, WtEndpoints,
};
use tokio::sync::watch;

use crate::args::choice;
use crate::record::{Arrival, BotRecord, Sent};
use crate::seen::Seen;
use crate::tracker::Tracker;

/// A bot that is connected and has joined its room.
#[derive(Debug)]
pub struct Bot<L = QuibbleLink> {
    link: L,
    user: UserId,
    room: ConversationId,
    connect_join: Duration,
    /// When its room was joined.
    joined_at: Instant,
    late: bool,
}

/// A bot's connection to the server under test, as the driving loop uses it.
pub trait Link: Send + 'static {
    /// Hand `text` to the server for the bot's room; the client id its answer and arrivals
    /// carry. An error means the connection is gone.
    fn send(&mut self, text: String) -> impl Future<Output = anyhow::Result<u64>> + Send;
    /// The next thing the bot records; `None` once the connection is gone for good. The loop
    /// drops it when a send falls due, so it must lose nothing when dropped.
    fn next(&mut self) -> impl Future<Output = Option<Observed>> + Send;
    /// Close the connection.
    fn close(self) -> impl Future<Output = ()> + Send;
}

/// What a link reports, as the record keeps it.
#[derive(Debug, Clone)]
pub enum Observed {
    Arrival(Arrival),
    /// The server acknowledged this client id, at this moment.
    Acked(u64, Instant),
    /// The server refused this client id for good.
    Rejected(u64, ErrorCode),
    /// Something went wrong (worded without bot names, so that they group).
    Error(String),
    /// The server cut the connection or the room's stream (worded as `Error`).
    Cut(String),
    /// The server refused a send for now; the client sends it again by itself.
    Throttled,
}

/// Quibble's client, joined to one room; it tells reconnects (and what follows them) apart
/// from the events of a healthy session.
#[derive(Debug)]
pub struct QuibbleLink {
    client: Client,
    room: ConversationId,
    /// Disconnected, and the room not joined again yet.
    reconnecting: bool,
}

/// How bots reach the server: its REST client (whose pooled HTTP connections fetch the
/// certificate hash), the transport, and the WebTransport endpoints they share.
#[derive(Debug, Clone)]
pub struct Dialer {
    pub api: Api,
    pub kind: TransportKind,
    pub endpoints: WtEndpoints,
}
/// When a bot sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pacing {
    /// Message `i` is due at `start + offset + i × interval`.
    Every {
        interval: Duration,
        offset: Duration,
    },
    /// Whenever fewer than this many sends are unanswered.
    Window(u32),
}

/// A bot's part of the run.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    pub start: Instant,
    pub pacing: Pacing,
    /// Messages to send, warmup included.
    pub sends: u32,
    /// The first this many are not measured.
    pub warmup: u32,
    /// Members of the room (for what a refused send no longer owes).
    pub members: u64,
    /// Bytes of each message's text.
    pub message_size: u32,
    /// Arrivals it is owed (every message of its room): its record holds that many from the
    /// start, so recording one never reallocates.
    pub owed: u64,
}

/// The most arrivals a record holds from the start (160 MiB); past it the record grows.
const MAX_RESERVED_ARRIVALS: u64 = 1 << 22;

/// The text of message `n`: its number, padded to `size` bytes (a longer number is kept whole).
fn message_text(n: u32, size: u32) -> String {
    let mut text = format!("bench message {n} ");
    let size = size as usize;
    if text.len() < size {
        text.extend(std::iter::repeat_n('x', size - text.len()));
    }
    text
}

/// Connect as `token` over exactly the dialer's transport, join `room` (`late`: from its first
/// message on), and wait until it is joined.
pub async fn connect(
    dialer: &Dialer,
    token: String,
    room: ConversationId,
    late: bool,
) -> anyhow::Result<Bot> {
    let started = Instant::now();
    let kind = dialer.kind;
    let options = ClientOptions::new(dialer.api.server().base().as_str(), token)
        .transport(choice(kind))
        .api(dialer.api.clone())
        .wt_endpoints(dialer.endpoints.clone());
    // A bot joining with the recent page sends `Join` with `Hello` (pipelined); a late one
    // joins from seq 0, which needs the store's epoch from `Welcome` first.
    let options = if late { options } else { options.join(room) };
    let client = Client::connect(options).await.context("cannot connect")?;
    if late {
        client.join_from(room, 0);
    }
    loop {
        match client.next_event().await {
            Some(ClientEvent::Session(Event::Joined { conversation, .. }))
                if conversation == room =>
            {
                break;
            }
            Some(ClientEvent::Session(Event::Error { code, reason, .. })) => {
                bail!(
                    "the server refused to join room {}: {code}: {reason}",
                    room.0
                )
            }
            Some(ClientEvent::Session(Event::Disconnected)) => bail!("disconnected while joining"),
            Some(_) => {}
            None => bail!("the client stopped while joining"),
        }
    }
    let joined_at = Instant::now();
    let connect_join = joined_at.saturating_duration_since(started);
    match client.transport() {
        Some(used) if used == kind => Ok(Bot {
            user: client.user(),
            link: QuibbleLink {
                client,
                room,
                reconnecting: false,
            },
            room,
            connect_join,
            joined_at,
            late,
        }),
        Some(used) => bail!("asked for {kind} but the client uses {used}"),
        None => bail!("disconnected right after joining"),
    }
}

impl Bot<QuibbleLink> {
    /// The bot's client, still open.
    pub fn into_client(self) -> Client {
        self.link.client
    }
}

impl<L: Link> Bot<L> {
    /// From starting to connect until its room was joined.
    pub fn connect_join(&self) -> Duration {
        self.connect_join
    }

    /// When its room was joined.
    pub fn joined_at(&self) -> Instant {
        self.joined_at
    }

    /// The bot's link, still open.
    pub fn into_link(self) -> L {
        self.link
    }

    /// A bot of `user` in `room` on `link`, which took `connect_join` to open and join.
    pub fn new(link: L, user: UserId, room: ConversationId, connect_join: Duration) -> Bot<L> {
        Bot {
            link,
            user,
            room,
            connect_join,
            joined_at: Instant::now(),
            late: false,
        }
    }

    /// Send on `schedule` and record everything until `finish` turns true (or its sender is
    /// gone); hands back the link, still open, and the record.
    pub async fn drive(
        self,
        schedule: Schedule,
        tracker: Arc<Tracker>,
        mut finish: watch::Receiver<bool>,
    ) -> (L, BotRecord) {
        let Bot {
            mut link,
            user,
            room,
            connect_join,
            late,
            ..
        } = self;
        let mut record = BotRecord::new(user, room, connect_join);
        record.late = late;
        let reserve = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        record
            .arrivals
            .reserve_exact(reserve(schedule.owed.min(MAX_RESERVED_ARRIVALS)));
        record.sends.reserve_exact(reserve(schedule.sends.into()));
        record.acks.reserve_exact(reserve(schedule.sends.into()));
        let mut state = State {
            record,
            seen: Seen::default(),
            unanswered: 0,
            members: schedule.members,
            tracker,
        };
        let start = tokio::time::Instant::from_std(schedule.start);
        let mut next = 0u32;
        loop {
            let due = if next < schedule.sends {
                match schedule.pacing {
                    Pacing::Every { interval, offset } => {
                        start.checked_add(offset.saturating_add(interval.saturating_mul(next)))
                    }
                    Pacing::Window(window) if state.unanswered < window => {
                        Some(tokio::time::Instant::now())
                    }
                    Pacing::Window(_) => None,
                }
            } else {
                None
            };
            tokio::select! {
                biased;
                changed = finish.changed() => {
                    if changed.is_err() || *finish.borrow_and_update() {
                        break;
                    }
                }
                () = sleep_until_some(due) => {
                    let at = Instant::now();
                    let measured = next >= schedule.warmup;
                    if measured {
                        state.tracker.measuring();
                    }
                    let client_id = match link.send(message_text(next, schedule.message_size)).await {
                        Ok(client_id) => client_id,
                        Err(e) => {
                            state.record.errors.push(format!("a send failed: {e:#}"));
                            break;
                        }
                    };
                    state.record.sends.push(Sent {
                        client_id,
                        at,
                        measured,
                    });
                    state.unanswered += 1;
                    next += 1;
                }
                observed = link.next() => match observed {
                    Some(observed) => state.on_observed(observed),
                    None => {
                        state.record.errors.push("the client stopped".into());
                        break;
                    }
                },
            }
        }
        (link, state.record)
    }
}

/// A driving bot's bookkeeping.
struct State {
    record: BotRecord,
    /// Messages that have arrived, to tell first deliveries from duplicates.
    seen: Seen,
    unanswered: u32,
    members: u64,
    tracker: Arc<Tracker>,
}

impl State {
    fn on_observed(&mut self, observed: Observed) {
        match observed {
            Observed::Arrival(arrival) => {
                if arrival.conversation == self.record.room && self.seen.insert(arrival.key) {
                    self.tracker.delivered();
                }
                self.record.arrivals.push(arrival);
            }
            Observed::Acked(client_id, at) => {
                self.unanswered = self.unanswered.saturating_sub(1);
                self.tracker.acked();
                self.record.acks.push((client_id, at));
            }
            Observed::Rejected(client_id, code) => {
                self.unanswered = self.unanswered.saturating_sub(1);
                self.tracker.rejected(self.members);
                self.record.rejections.push((client_id, code));
            }
            Observed::Error(what) => self.record.errors.push(what),
            Observed::Cut(what) => {
                self.record.cuts = self.record.cuts.saturating_add(1);
                self.record.errors.push(what);
            }
            Observed::Throttled => {
                self.record.throttled = self.record.throttled.saturating_add(1);
            }
        }
    }
}

impl Link for QuibbleLink {
    async fn send(&mut self, text: String) -> anyhow::Result<u64> {
        Ok(self.client.send(self.room, text))
    }

    async fn next(&mut self) -> Option<Observed> {
        loop {
            let event = self.client.next_event().await?;
            if let Some(observed) = self.observe(event, Instant::now()) {
                return Some(observed);
            }
        }
    }

    async fn close(self) {
        self.client.close().await;
    }
}

impl QuibbleLink {
    /// What the record keeps of `event`, which came `at`.
    fn observe(&mut self, event: ClientEvent, at: Instant) -> Option<Observed> {
        let event = match event {
            ClientEvent::Session(event) => event,
            // Follows a disconnect, which is what counts.
            ClientEvent::TransportChanged(_) => return None,
        };
        let error = |what: &str| Some(Observed::Error(what.to_owned()));
        let cut = |what: &str| Some(Observed::Cut(what.to_owned()));
        match event {
            Event::Message(message) => Some(Observed::Arrival(Arrival {
                conversation: message.conversation,
                key: (message.author, message.client_id),
                at,
            })),
            Event::Sent { client_id, .. } => Some(Observed::Acked(client_id, at)),
            // The session sends it again by itself; its ack (or refusal) is what counts.
            Event::Throttled { .. } => Some(Observed::Throttled),
            Event::Rejected {
                client_id, code, ..
            } => Some(Observed::Rejected(client_id, code)),
            Event::Disconnected => {
                self.reconnecting = true;
                cut("disconnected (the client reconnects and resumes)")
            }
            // The consequences of a disconnect, counted there.
            Event::Connected { .. } | Event::Joined { .. } if self.reconnecting => {
                self.reconnecting = !matches!(event, Event::Joined { .. });
                None
            }
            Event::Connected { .. } => error("welcomed again without a disconnect"),
            Event::Joined { .. } => cut("the room's stream was rejoined (lagged or failed)"),
            Event::Error { code, reason, .. } => {
                Some(Observed::Error(format!("server error {code}: {reason}")))
            }
            Event::GoAway { .. } => error("the server is going away"),
            Event::Reset { .. } => error("the store's epoch changed (history reset)"),
            Event::History { .. } => error("a history page nobody asked for"),
            // The social events (conversation list, receipts, presence, …) are not measured.
            Event::ConversationList(_)
            | Event::ConversationUpdated(_)
            | Event::ConversationRemoved { .. }
            | Event::Receipt { .. }
            | Event::Friend { .. }
            | Event::Presence { .. }
            | Event::Typing { .. }
            | Event::Deleted { .. } => None,
        }
    }
}

/// Sleep until `due`; forever without one.
pub async fn sleep_until_some(due: Option<tokio::time::Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due).await,
        None => pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::message_text;

    #[test]
    fn texts_are_padded_to_the_size_and_told_apart() {
        assert_eq!(message_text(7, 100).len(), 100);
        assert_ne!(message_text(7, 100), message_text(8, 100));
        assert_eq!(message_text(123_456, 16), "bench message 123456 ");
    }
}
