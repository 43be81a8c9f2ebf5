//! Which transport stream carries which logical stream of the session, for one connection.
//!
//! Both transports number their streams the same way: id 0 is the control stream (opened with
//! the connection), and every conversation stream gets a fresh id from 1 up — a new
//! bidirectional stream over WebTransport, a new multiplexed stream id over WebSocket. A `Join`
//! always opens a new stream; a conversation's older stream, if the server has not ended it
//! yet, is finished from our side and its late frames are dropped, so the session only ever
//! hears from the current stream of each conversation.
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
    /// stream, if still open on our side: the driver finishes it.
    Open { id: u64, replaces: Option<u64> },
}

/// What the end of a stream means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ended {
    /// Our side of the stream is still open: finish it too.
    pub finish_local: bool,
    /// The logical stream that ended, if the stream was its current one (the session must
    /// hear of it); `None` for a stream already replaced or unknown.
    pub closed: Option<StreamKey>,
}

#[derive(Debug)]
struct Entry {
    key: StreamKey,
    /// Our sending side is open (we have not finished it).
    local_open: bool,
}

/// The streams of one connection.
#[derive(Debug)]
pub struct StreamTable {
    next_id: u64,
    entries: HashMap<u64, Entry>,
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
            entries: HashMap::from([(
                CONTROL_STREAM,
                Entry {
                    key: StreamKey::Control,
                    local_open: true,
                },
            )]),
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
                let replaces = current.filter(|old| self.finish_local(*old));
                self.entries.insert(
                    id,
                    Entry {
                        key: transmit.stream,
                        local_open: true,
                    },
                );
                self.current.insert(transmit.stream, id);
                Route::Open { id, replaces }
            }
        }
    }

    /// The logical stream whose frames arrive on `id`, if `id` is its current stream.
    pub fn live(&self, id: u64) -> Option<StreamKey> {
        let entry = self.entries.get(&id)?;
        (self.current.get(&entry.key) == Some(&id)).then_some(entry.key)
    }

    /// Stream `id` is over — the server ended it, or we give it up because a frame on it could
    /// not be decoded: forget it.
    pub fn end(&mut self, id: u64) -> Ended {
        let closed = self.live(id);
        if let Some(key) = closed {
            self.current.remove(&key);
        }
        let finish_local = self.entries.remove(&id).is_some_and(|e| e.local_open);
        Ended {
            finish_local,
            closed,
        }
    }

    /// Mark our side of `id` finished; true if it was open.
    fn finish_local(&mut self, id: u64) -> bool {
        self.entries
            .get_mut(&id)
            .is_some_and(|e| std::mem::replace(&mut e.local_open, false))
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
        assert_eq!(
            t.end(1),
            Ended {
                finish_local: false,
                closed: None
            }
        );
        assert_eq!(t.live(2), Some(ROOM));
    }

    #[test]
    fn the_server_ending_the_current_stream_is_reported_once() {
        let mut t = StreamTable::new();
        t.route(&join(7));
        assert_eq!(
            t.end(1),
            Ended {
                finish_local: true,
                closed: Some(ROOM)
            }
        );
        assert_eq!(
            t.end(1),
            Ended {
                finish_local: false,
                closed: None
            }
        );
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
        assert_eq!(
            t.end(CONTROL_STREAM),
            Ended {
                finish_local: true,
                closed: Some(StreamKey::Control)
            }
        );
        assert_eq!(t.live(CONTROL_STREAM), None);
    }
}
