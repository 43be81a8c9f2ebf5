//! Fan-out: one broadcast channel per conversation that has live subscribers. The store's
//! commit hook publishes each durable message here once, encoded once; every subscribed
//! stream forwards the same bytes. A subscriber that falls a full buffer behind is told it
//! lagged and resumes from the store.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use quibble_protocol::{ChatMessage, ConversationId, ServerFrame};
use tokio::sync::broadcast;

use crate::chat::stream::encode_frame;

/// Messages a conversation buffers for its slowest subscriber before that one lags.
const BUFFER: usize = 1024;

/// A committed message ready to forward: its seq and its encoded `Message` frame.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub seq: u64,
    pub frame: Bytes,
}

#[derive(Clone, Default)]
pub struct Hub {
    channels: Arc<Mutex<HashMap<ConversationId, broadcast::Sender<Delivery>>>>,
}

impl Hub {
    pub fn subscribe(&self, conversation: ConversationId) -> broadcast::Receiver<Delivery> {
        self.lock()
            .entry(conversation)
            .or_insert_with(|| broadcast::channel(BUFFER).0)
            .subscribe()
    }

    /// Publish a committed message to the conversation's subscribers, if it has any. The
    /// frame is encoded once, outside the lock, and shared by every subscriber.
    pub fn publish(&self, message: &ChatMessage) {
        let sender = {
            let mut channels = self.lock();
            match channels.get(&message.conversation) {
                Some(sender) if sender.receiver_count() > 0 => sender.clone(),
                Some(_) => {
                    channels.remove(&message.conversation);
                    return;
                }
                None => return,
            }
        };
        let delivery = Delivery {
            seq: message.seq,
            frame: encode_frame(&ServerFrame::Message(message.clone())),
        };
        // An error only means every receiver went away since the check.
        let _ = sender.send(delivery);
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<ConversationId, broadcast::Sender<Delivery>>> {
        self.channels.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quibble_protocol::UserId;

    fn message(seq: u64) -> ChatMessage {
        ChatMessage {
            conversation: ConversationId(1),
            seq,
            author: UserId(1),
            author_name: "a".into(),
            client_id: seq,
            sent_at_ms: 0,
            body: "hi".into(),
        }
    }

    #[tokio::test]
    async fn subscribers_share_one_encoding() {
        let hub = Hub::default();
        let mut a = hub.subscribe(ConversationId(1));
        let mut b = hub.subscribe(ConversationId(1));
        hub.publish(&message(1));
        let (da, db) = (a.recv().await.unwrap(), b.recv().await.unwrap());
        assert_eq!(da.seq, 1);
        assert_eq!(
            da.frame.as_ptr(),
            db.frame.as_ptr(),
            "bytes are shared, not re-encoded"
        );
    }

    #[tokio::test]
    async fn slow_subscriber_lags_instead_of_growing() {
        let hub = Hub::default();
        let mut slow = hub.subscribe(ConversationId(1));
        for seq in 1..=(BUFFER as u64 + 10) {
            hub.publish(&message(seq));
        }
        assert!(matches!(
            slow.recv().await,
            Err(broadcast::error::RecvError::Lagged(_))
        ));
    }

    #[test]
    fn channels_without_subscribers_are_dropped() {
        let hub = Hub::default();
        drop(hub.subscribe(ConversationId(1)));
        hub.publish(&message(1));
        assert!(hub.lock().is_empty());
    }
}
