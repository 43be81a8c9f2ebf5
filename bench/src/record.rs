//! What one bot observed during a run, raw and timestamped: its sends, the answers to them,
//! every message that arrived, and anything that went wrong. Nothing is matched up while the
//! run goes on (no shared state to contend on while measuring); `stats` does that afterwards,
//! keyed by (author, client id), which is how the protocol identifies a message end to end.

use std::time::{Duration, Instant};

use quibble_client::{ConversationId, ErrorCode, UserId};

/// A message's identity across the whole run: its author and the author's client id.
pub type MessageKey = (UserId, u64);

/// One message a bot handed to its client.
#[derive(Debug, Clone, Copy)]
pub struct Sent {
    pub client_id: u64,
    /// Just before the send call.
    pub at: Instant,
    /// Past the warmup: counted in the latencies and throughput.
    pub measured: bool,
}

/// A message that arrived at a bot.
#[derive(Debug, Clone, Copy)]
pub struct Arrival {
    pub conversation: ConversationId,
    pub key: MessageKey,
    pub at: Instant,
}

/// Everything one bot saw.
#[derive(Debug, Clone)]
pub struct BotRecord {
    pub user: UserId,
    pub room: ConversationId,
    /// From starting to connect until its room was joined.
    pub connect_join: Duration,
    /// It joined late (during the measured window), for the whole room's replay.
    pub late: bool,
    pub sends: Vec<Sent>,
    /// Its sends the server acknowledged: client id and when.
    pub acks: Vec<(u64, Instant)>,
    /// Its sends the server refused: client id and why.
    pub rejections: Vec<(u64, ErrorCode)>,
    pub arrivals: Vec<Arrival>,
    /// What went wrong, one line each (worded without bot names so that they group).
    pub errors: Vec<String>,
    /// Times its connection or room stream was cut (closed by the server, or ended as
    /// lagging and rejoined); each is also one of `errors`.
    pub cuts: u32,
    /// Its sends the server refused for now (`RateLimited`), which its client sends again by
    /// itself: the server pushing back on the sender.
    pub throttled: u32,
}

impl BotRecord {
    pub fn new(user: UserId, room: ConversationId, connect_join: Duration) -> BotRecord {
        BotRecord {
            user,
            room,
            connect_join,
            late: false,
            sends: Vec::new(),
            acks: Vec::new(),
            rejections: Vec::new(),
            arrivals: Vec::new(),
            errors: Vec::new(),
            cuts: 0,
            throttled: 0,
        }
    }
}
