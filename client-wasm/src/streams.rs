//! Which transport stream carries which logical stream of the session, for one connection.
//!
//! Both transports number their streams the same way: id 0 is the control stream (opened with
//! the connection), and every conversation stream gets a fresh id from 1 up — a new
//! bidirectional stream over WebTransport, a new multiplexed stream id over WebSocket. Ids are
//! never reused. A `Join` always opens a new stream.
//!
//! A stream is over once either side has finished it, and the table forgets it then: when a
//! rejoin replaces it (the driver finishes our side) or when the server ends it (the driver
//! finishes our side too). Late frames on a forgotten id are dropped, so the session only
//! ever hears from the current stream of each conversation, and the table holds only open
//! streams.
//!
//! Pure bookkeeping, no I/O: the drivers in `wt` and `ws` act on what it returns.

use std::collections::HashMap;

use quibble_protocol::ClientFrame;
use quibble_protocol::mux::CONTROL_STREAM;
use quibble_protocol::session::{StreamKey, Transmit};

/// Where a [`Transmit`] goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// On the already open stream `id`.
    Existing(u64),
    /// On a new stream `id`, to be opened first. `replaces` is the conversation's previous
    /// stream, if it was still open: the driver finishes it (it is forgotten already).
    Open { id: u64, replaces: Option<u64> },
}

/// The open streams of one connection.
#[derive(Debug)]
pub struct StreamTable {
    next_id: u64,
    /// Open stream id → its logical stream.
    by_id: HashMap<u64, StreamKey>,
    /// Logical stream → its open stream id.
    current: HashMap<StreamKey, u64>,
}

impl Default for StreamTable {
    fn default() -> Self {
        Self::new()
    }
}

impl StreamTable {
    /// A table holding only the control stream.
    pub fn new() -> Self {
        StreamTable {
            next_id: CONTROL_STREAM + 1,
            by_id: HashMap::from([(CONTROL_STREAM, StreamKey::Control)]),
            current: HashMap::from([(StreamKey::Control, CONTROL_STREAM)]),
        }
    }

    /// The stream for `transmit`: a `Join`, or a frame for a conversation without an open
    /// stream, opens a new one.
    pub fn route(&mut self, transmit: &Transmit) -> Route {
        let current = self.current.get(&transmit.stream).copied();
        let opens = matches!(transmit.stream, StreamKey::Conversation(_))
            && (current.is_none() || matches!(transmit.frame, ClientFrame::Join { .. }));
        match current {
            Some(id) if !opens => Route::Existing(id),
            _ => {
                let id = self.next_id;
                self.next_id += 1;
                if let Some(old) = current {
                    self.by_id.remove(&old);
                }
                self.by_id.insert(id, transmit.stream);
                self.current.insert(transmit.stream, id);
                Route::Open {
                    id,
                    replaces: current,
                }
            }
        }
    }

    /// The logical stream whose frames arrive on `id`, if `id` is open.
    pub fn live(&self, id: u64) -> Option<StreamKey> {
        self.by_id.get(&id).copied()
    }

    /// Stream `id` is over — the server ended it, or we give it up because a frame on it could
    /// not be decoded: forget it. Returns its logical stream if it was open (the session must
    /// hear of it, and our side is to be finished); `None` for a stream already forgotten.
    pub fn end(&mut self, id: u64) -> Option<StreamKey> {
        let key = self.by_id.remove(&id)?;
        self.current.remove(&key);
        Some(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quibble_protocol::ConversationId;

    fn transmit(stream: StreamKey, frame: ClientFrame) -> Transmit {
        Transmit { stream, frame }
    }

    fn join(c: u64) -> Transmit {
        transmit(
            StreamKey::Conversation(ConversationId(c)),
            ClientFrame::Join {
                conversation: ConversationId(c),
                resume: None,
            },
        )
    }

    fn send(c: u64) -> Transmit {
        transmit(
            StreamKey::Conversation(ConversationId(c)),
            ClientFrame::Send {
                client_id: 1,
                body: "hi".into(),
            },
        )
    }

    const ROOM: StreamKey = StreamKey::Conversation(ConversationId(7));

    #[test]
    fn control_is_stream_zero_and_joins_get_fresh_ids() {
        let mut t = StreamTable::new();
        let hello = transmit(
            StreamKey::Control,
            ClientFrame::Hello {
                version: 1,
                token: "t".into(),
            },
        );
        assert_eq!(t.route(&hello), Route::Existing(CONTROL_STREAM));
        assert_eq!(
            t.route(&join(7)),
            Route::Open {
                id: 1,
                replaces: None
            }
        );
        assert_eq!(t.route(&send(7)), Route::Existing(1));
        assert_eq!(
            t.route(&join(8)),
            Route::Open {
                id: 2,
                replaces: None
            }
        );
        assert_eq!(t.live(0), Some(StreamKey::Control));
        assert_eq!(t.live(1), Some(ROOM));
        assert_eq!(t.live(3), None);
    }

    #[test]
    fn a_rejoin_replaces_the_old_stream_whose_end_then_goes_unreported() {
        let mut t = StreamTable::new();
        t.route(&join(7));
        assert_eq!(
            t.route(&join(7)),
            Route::Open {
                id: 2,
                replaces: Some(1)
            }
        );
        assert_eq!(t.live(1), None, "frames on the old stream are dropped");
        assert_eq!(t.live(2), Some(ROOM));
        assert_eq!(t.end(1), None, "the replaced stream was forgotten already");
        assert_eq!(t.live(2), Some(ROOM));
        assert_eq!(t.by_id.len(), 2, "only open streams are kept");
    }

    #[test]
    fn the_server_ending_the_current_stream_is_reported_once() {
        let mut t = StreamTable::new();
        t.route(&join(7));
        assert_eq!(t.end(1), Some(ROOM));
        assert_eq!(t.end(1), None);
        // A later frame for the conversation opens a new stream.
        assert_eq!(
            t.route(&send(7)),
            Route::Open {
                id: 2,
                replaces: None
            }
        );
    }

    #[test]
    fn the_control_stream_can_end_too() {
        let mut t = StreamTable::new();
        assert_eq!(t.end(CONTROL_STREAM), Some(StreamKey::Control));
        assert_eq!(t.live(CONTROL_STREAM), None);
    }

    #[test]
    fn ids_strictly_increase_and_ended_streams_are_forgotten() {
        let mut t = StreamTable::new();
        let mut last = CONTROL_STREAM;
        for i in 0..1_000u64 {
            let room = 7 + i % 2;
            let Route::Open { id, replaces: None } = t.route(&join(room)) else {
                panic!("a join after the end opens a fresh stream")
            };
            assert!(id > last, "id {id} after {last}");
            last = id;
            assert!(t.end(id).is_some());
        }
        assert_eq!(t.by_id.len(), 1, "only the control stream is left");
        assert_eq!(t.current.len(), 1);
    }
}
