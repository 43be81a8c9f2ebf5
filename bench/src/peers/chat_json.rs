//! The chat messages both peer servers speak, as JSON (`bench/peers/*.mjs`): a bot sends
//! `{"c": client_id, "b": body}`, its ack carries the client id and the room's sequence number
//! (`{"c", "s"}`), and every member of the room gets the message with its room, author, client
//! id, sequence number and body (`{"r", "a", "c", "s", "b"}`). Users and rooms are named by
//! the bots' numbers, so an arrival maps back onto the same record keys as Quibble's.

use std::borrow::Cow;
use std::time::Instant;

use quibble_client::{ConversationId, UserId};
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};

use crate::bot::Observed;
use crate::record::Arrival;

/// A message a bot sends.
#[derive(Debug, Serialize)]
pub struct Outgoing<'a> {
    pub c: u64,
    pub b: &'a str,
}

/// The answer to a message, to its author. The sequence number must be there, but the bench
/// does not use it (nor Quibble's).
#[derive(Debug, Deserialize)]
pub struct Ack {
    pub c: u64,
    #[serde(rename = "s")]
    _seq: IgnoredAny,
}

/// A message as every member of its room gets it; the sequence number and body must be there.
/// Room and author borrow from the frame (they are numbers, never escaped): reading a
/// delivery allocates nothing.
#[derive(Debug, Deserialize)]
pub struct Broadcast<'a> {
    #[serde(borrow)]
    pub r: Cow<'a, str>,
    #[serde(borrow)]
    pub a: Cow<'a, str>,
    pub c: u64,
    #[serde(rename = "s")]
    _seq: IgnoredAny,
    #[serde(rename = "b")]
    _body: IgnoredAny,
}

impl Broadcast<'_> {
    /// The arrival the record keeps (room and author are the bots' numbers), or what is wrong.
    pub fn observed(self, at: Instant) -> Observed {
        arrival(&self.r, &self.a, self.c, at)
    }
}

/// The arrival of message `client_id` by `author` in `room` (the bots' numbers), at `at`; or
/// what is wrong with them.
pub fn arrival(room: &str, author: &str, client_id: u64, at: Instant) -> Observed {
    match (room.parse(), author.parse()) {
        (Ok(room), Ok(author)) => Observed::Arrival(Arrival {
            conversation: ConversationId(room),
            key: (UserId(author), client_id),
            at,
        }),
        _ => Observed::Error("a message from an unknown room or author".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcasts_map_onto_record_keys() {
        let at = Instant::now();
        let json = r#"{"r":"3","a":"17","c":5,"s":9,"b":"hello"}"#;
        let broadcast: Broadcast = serde_json::from_str(json).unwrap();
        match broadcast.observed(at) {
            Observed::Arrival(arrival) => {
                assert_eq!(arrival.conversation, ConversationId(3));
                assert_eq!(arrival.key, (UserId(17), 5));
                assert_eq!(arrival.at, at);
            }
            other => panic!("{other:?}"),
        }
        let stranger: Broadcast =
            serde_json::from_str(r#"{"r":"3","a":"eve","c":5,"s":9,"b":""}"#).unwrap();
        assert!(matches!(stranger.observed(at), Observed::Error(_)));
        assert!(serde_json::from_str::<Broadcast>(r#"{"r":"3","a":"17","c":5,"s":9}"#).is_err());
        let ack: Ack = serde_json::from_str(r#"{"c":5,"s":9}"#).unwrap();
        assert_eq!(ack.c, 5);
        assert!(serde_json::from_str::<Ack>(r#"{"c":5}"#).is_err());
        let out = serde_json::to_string(&Outgoing {
            c: 7,
            b: "hi \"x\"",
        })
        .unwrap();
        assert_eq!(out, r#"{"c":7,"b":"hi \"x\""}"#);
    }
}
