//! What nodes tell each other over Redis: one [`Event`] per pub/sub message, encoded with
//! postcard behind a format byte ([`FORMAT`]), so a node meeting a newer format skips the
//! message (and back-fills from the store as for any lost one) instead of misreading it.
//! Events carry the publishing node's random id (`origin`): a node hears its own messages
//! back and drops them, since it delivered them when it committed them.

use bytes::Bytes;
use quibble_protocol::ChatMessage;
use serde::{Deserialize, Serialize};

use super::control::Control;

/// The first byte of every encoded event.
pub const FORMAT: u8 = 1;

/// One pub/sub message between nodes.
#[derive(Debug, PartialEq, Eq, Deserialize)]
pub enum Event {
    /// One commit's messages of one partition, in commit order; each deletion as the message's
    /// tombstone.
    Committed {
        origin: u64,
        messages: Vec<ChatMessage>,
    },
    /// A fleet-wide action ([`crate::fleet::control`]), on the control channel.
    Control { origin: u64, control: Control },
}

/// [`Event`] as it is written, borrowing the commit's messages (encodes the same bytes).
#[derive(Serialize)]
pub enum EventRef<'a> {
    Committed {
        origin: u64,
        messages: &'a [&'a ChatMessage],
    },
    Control {
        origin: u64,
        control: &'a Control,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("an event of format {0}; this node reads format {FORMAT}")]
    Format(u8),
    #[error("an empty event")]
    Empty,
    #[error("a malformed event: {0}")]
    Malformed(#[from] postcard::Error),
}

/// `event` as the bytes to publish.
pub fn encode(event: &EventRef<'_>) -> Result<Bytes, EventError> {
    Ok(Bytes::from(postcard::to_extend(event, vec![FORMAT])?))
}

/// The event in `bytes` as published by [`encode`].
pub fn decode(bytes: &[u8]) -> Result<Event, EventError> {
    match bytes.split_first() {
        None => Err(EventError::Empty),
        Some((&FORMAT, rest)) => Ok(postcard::from_bytes(rest)?),
        Some((&other, _)) => Err(EventError::Format(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quibble_protocol::{ConversationId, UserId};

    fn message(seq: u64, body: &str) -> ChatMessage {
        ChatMessage {
            conversation: ConversationId(7),
            seq,
            author: UserId(3),
            author_name: "ann".into(),
            client_id: u64::MAX - seq,
            sent_at_ms: 1_700_000_000_000 + seq,
            body: body.into(),
        }
    }

    #[test]
    fn a_commit_reads_back_as_written() {
        let messages = [message(1, "hello"), message(2, "")];
        let refs: Vec<&ChatMessage> = messages.iter().collect();
        let bytes = encode(&EventRef::Committed {
            origin: 42,
            messages: &refs,
        })
        .unwrap();
        assert_eq!(bytes[0], FORMAT);
        assert_eq!(
            decode(&bytes).unwrap(),
            Event::Committed {
                origin: 42,
                messages: messages.to_vec()
            }
        );
    }

    #[test]
    fn a_control_event_reads_back_as_written() {
        let control = Control::CloseUser {
            user: UserId(5),
            except: Some([7; 32]),
            code: quibble_protocol::ErrorCode::Banned,
            reason: "spam".into(),
        };
        let bytes = encode(&EventRef::Control {
            origin: 9,
            control: &control,
        })
        .unwrap();
        assert_eq!(
            decode(&bytes).unwrap(),
            Event::Control { origin: 9, control }
        );
    }

    #[test]
    fn other_formats_and_garbage_are_refused() {
        assert!(matches!(decode(&[]), Err(EventError::Empty)));
        assert!(matches!(decode(&[2, 0, 0]), Err(EventError::Format(2))));
        assert!(matches!(
            decode(&[FORMAT, 0, 0xff, 0xff, 0xff]),
            Err(EventError::Malformed(_))
        ));
        // A length far beyond the bytes present fails without allocating it.
        assert!(matches!(
            decode(&[FORMAT, 0, 1, 0xff, 0xff, 0xff, 0xff, 0x0f]),
            Err(EventError::Malformed(_))
        ));
    }
}
