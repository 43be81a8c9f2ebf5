//! Which physical stream carries which logical stream on one connection, and the translation of
//! what the transport's reader tasks report (by physical stream id) into [`TransportEvent`]s
//! (by [`StreamKey`]). Reports from streams that were replaced or forgotten are dropped.
//!
//! Stream ids are never reused: conversation streams get strictly increasing ids (1, 2, 3, …;
//! 0 is control). A stream is over once either side has finished it, and the table forgets it
//! then (the server ended it, or a rejoin replaced it), dropping its `W`: each transport's `W`
//! finishes our side of the stream when dropped.

use std::collections::HashMap;

use quibble_protocol::ServerFrame;
use quibble_protocol::session::StreamKey;

use super::{CloseInfo, TransportEvent};

/// The physical id of the control stream (also its WebSocket stream id).
pub(crate) const CONTROL_ID: u64 = 0;

/// Reports a transport's readers queue before they wait for the driver (flow control then
/// holds the server back instead of memory growing).
pub(crate) const INBOUND_QUEUE: usize = 256;

/// What a transport's reader tasks report, by physical stream id.
#[derive(Debug)]
pub(crate) enum Inbound {
    /// A frame arrived on a stream.
    Frame(u64, ServerFrame),
    /// The server ended a stream (or it broke).
    Ended(u64),
    /// The connection is gone.
    Lost(CloseInfo),
}

/// Logical ↔ physical streams of one connection; `W` is what a physical stream is written
/// through (a queue for WebTransport, nothing for WebSocket).
#[derive(Debug)]
pub(crate) struct StreamTable<W> {
    by_key: HashMap<StreamKey, (u64, W)>,
    by_id: HashMap<u64, StreamKey>,
    next_id: u64,
}

impl<W> StreamTable<W> {
    /// A table holding the control stream.
    pub(crate) fn new(control: W) -> Self {
        let mut table = StreamTable {
            by_key: HashMap::new(),
            by_id: HashMap::new(),
            next_id: CONTROL_ID + 1,
        };
        table
            .by_key
            .insert(StreamKey::Control, (CONTROL_ID, control));
        table.by_id.insert(CONTROL_ID, StreamKey::Control);
        table
    }

    /// The current physical stream of `key`.
    pub(crate) fn get(&self, key: StreamKey) -> Option<(u64, &W)> {
        self.by_key.get(&key).map(|(id, w)| (*id, w))
    }

    /// Give `key` a new physical stream with a fresh id; returns the id and the stream it
    /// replaces, if any (whose later reports are then ignored).
    pub(crate) fn open(&mut self, key: StreamKey, make: impl FnOnce(u64) -> W) -> (u64, Option<W>) {
        let id = self.next_id;
        self.next_id += 1;
        let old = self.by_key.insert(key, (id, make(id))).map(|(old_id, w)| {
            self.by_id.remove(&old_id);
            w
        });
        self.by_id.insert(id, key);
        (id, old)
    }

    /// Translate a reader report; `None` for reports about streams no longer in the table.
    pub(crate) fn translate(&mut self, inbound: Inbound) -> Option<TransportEvent> {
        match inbound {
            Inbound::Frame(id, frame) => {
                let key = *self.by_id.get(&id)?;
                Some(TransportEvent::Frame(key, frame))
            }
            Inbound::Ended(id) => {
                let key = self.by_id.remove(&id)?;
                self.by_key.remove(&key);
                Some(match key {
                    StreamKey::Control => TransportEvent::Closed(CloseInfo {
                        code: None,
                        reason: "the server ended the control stream".into(),
                    }),
                    StreamKey::Conversation(_) => TransportEvent::StreamClosed(key),
                })
            }
            Inbound::Lost(info) => Some(TransportEvent::Closed(info)),
        }
    }
}

#[cfg(test)]
mod tests {
    use quibble_protocol::ConversationId;

    use super::*;

    fn pong(nonce: u64) -> ServerFrame {
        ServerFrame::Pong { nonce }
    }

    #[test]
    fn routes_by_id_and_ignores_replaced_streams() {
        let room = StreamKey::Conversation(ConversationId(9));
        let mut table = StreamTable::new("control");
        assert_eq!(
            table.get(StreamKey::Control),
            Some((CONTROL_ID, &"control"))
        );
        assert_eq!(table.get(room), None);

        let (first, old) = table.open(room, |_| "a");
        assert_eq!(old, None);
        assert!(matches!(
            table.translate(Inbound::Frame(first, pong(1))),
            Some(TransportEvent::Frame(k, _)) if k == room
        ));

        let (second, old) = table.open(room, |_| "b");
        assert_ne!(first, second);
        assert_eq!(old, Some("a"));
        assert!(table.translate(Inbound::Frame(first, pong(2))).is_none());
        assert!(table.translate(Inbound::Ended(first)).is_none());
        assert_eq!(table.get(room), Some((second, &"b")));

        assert!(matches!(
            table.translate(Inbound::Ended(second)),
            Some(TransportEvent::StreamClosed(k)) if k == room
        ));
        assert_eq!(table.get(room), None);
        assert!(table.translate(Inbound::Frame(second, pong(3))).is_none());
    }

    #[test]
    fn the_end_of_the_control_stream_is_the_end_of_the_connection() {
        let mut table = StreamTable::new(());
        assert!(matches!(
            table.translate(Inbound::Ended(CONTROL_ID)),
            Some(TransportEvent::Closed(_))
        ));
        let info = CloseInfo {
            code: None,
            reason: "gone".into(),
        };
        assert!(matches!(
            table.translate(Inbound::Lost(info)),
            Some(TransportEvent::Closed(CloseInfo { reason, .. })) if reason == "gone"
        ));
    }

    #[test]
    fn ids_strictly_increase_and_ended_streams_are_forgotten() {
        let mut table = StreamTable::new(());
        let mut last = CONTROL_ID;
        for i in 0..1_000u64 {
            let room = StreamKey::Conversation(ConversationId(i % 2));
            let (id, replaced) = table.open(room, |_| ());
            assert!(replaced.is_none());
            assert!(id > last, "id {id} after {last}");
            last = id;
            assert!(table.translate(Inbound::Ended(id)).is_some());
        }
        assert_eq!((table.by_id.len(), table.by_key.len()), (1, 1));
    }
}
