//! What chat members saw, for the chaos and crash tests. A [`Member`] is a native client whose
//! events a task files into a [`Record`]: what it sent, the seq and time each send was
//! acknowledged, the room's messages in the order the session delivered them, disconnects,
//! and anything that must not happen (rejections, resets, stream errors). [`acknowledged`]
//! gathers every acknowledgement, and [`assert_exactly_acknowledged`] checks that a list of
//! messages holds each acknowledged message exactly once, in seq order, and nothing else.

#![allow(dead_code)] // each test binary uses a different part of this module

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use quibble_client::{
    ChatMessage, Client, ClientEvent, ClientOptions, ConversationId, Event, TransportChoice,
};
use tokio::time::{Instant, sleep};

/// One acknowledgement.
#[derive(Debug, Clone, Copy)]
pub struct Ack {
    pub seq: u64,
    pub at: Instant,
}

/// One send.
#[derive(Debug, Clone)]
pub struct Sent {
    pub body: String,
    pub at: Instant,
}

#[derive(Default)]
pub struct Record {
    /// client id → what was sent.
    pub sent: HashMap<u64, Sent>,
    /// client id → its acknowledgement.
    pub acked: HashMap<u64, Ack>,
    pub messages: Vec<ChatMessage>,
    /// Older pages asked for with `load_older`, in the order they came.
    pub older: Vec<ChatMessage>,
    pub pages: usize,
    pub has_more: bool,
    pub joined: bool,
    pub disconnects: u32,
    /// When each `Welcome` came (the first connection and every reconnection).
    pub reconnected_at: Vec<Instant>,
    pub trouble: Vec<String>,
}

pub struct Member {
    pub name: String,
    pub client: Arc<Client>,
    pub room: ConversationId,
    record: Arc<Mutex<Record>>,
}

impl Member {
    /// Connect to `server` as `name`, record its events, and join `room`.
    pub async fn join(
        server: &str,
        name: &str,
        token: &str,
        transport: TransportChoice,
        room: ConversationId,
    ) -> Member {
        let options = ClientOptions::new(server, token).transport(transport);
        let client = Arc::new(Client::connect(options).await.expect("connect"));
        let record = Arc::new(Mutex::new(Record::default()));
        tokio::spawn(collect(client.clone(), record.clone(), room));
        client.join(room);
        Member {
            name: name.to_owned(),
            client,
            room,
            record,
        }
    }

    /// Send a message to the room, recorded before its ack can arrive.
    pub fn send(&self, body: String) -> u64 {
        let mut record = self.record();
        let id = self.client.send(self.room, body.clone());
        record.sent.insert(
            id,
            Sent {
                body,
                at: Instant::now(),
            },
        );
        id
    }

    pub fn record(&self) -> MutexGuard<'_, Record> {
        self.record.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The room's whole history: the messages from joining, after every older page
    /// (`load_older` until nothing older exists).
    pub async fn whole_history(&self, limit: Duration) -> Vec<ChatMessage> {
        loop {
            let pages = self.record().pages;
            let asked = self
                .client
                .load_older(self.room, 50)
                .await
                .expect("client running");
            if !asked {
                break;
            }
            wait_until(limit, "an older page", || self.record().pages > pages).await;
            if !self.record().has_more {
                break;
            }
        }
        let r = self.record();
        r.older.iter().chain(&r.messages).cloned().collect()
    }

    pub fn all_acked(&self) -> bool {
        let r = self.record();
        r.acked.len() == r.sent.len()
    }
}

/// File a member's events into its record until the client closes.
async fn collect(client: Arc<Client>, record: Arc<Mutex<Record>>, room: ConversationId) {
    while let Some(event) = client.next_event().await {
        let mut r = record.lock().unwrap_or_else(|e| e.into_inner());
        match event {
            ClientEvent::Session(Event::Message(m)) if m.conversation == room => r.messages.push(m),
            ClientEvent::Session(Event::Joined { conversation, .. }) if conversation == room => {
                r.joined = true
            }
            ClientEvent::Session(Event::History {
                conversation,
                messages,
                has_more,
            }) if conversation == room => {
                r.older.splice(0..0, messages);
                r.pages += 1;
                r.has_more = has_more;
            }
            ClientEvent::Session(Event::Sent { client_id, seq, .. }) => {
                let ack = Ack {
                    seq,
                    at: Instant::now(),
                };
                if r.acked.insert(client_id, ack).is_some() {
                    r.trouble.push(format!("client id {client_id} acked twice"));
                }
            }
            ClientEvent::Session(Event::Disconnected) => r.disconnects += 1,
            ClientEvent::Session(Event::Connected { .. }) => r.reconnected_at.push(Instant::now()),
            ClientEvent::Session(
                e @ (Event::Rejected { .. } | Event::Reset { .. } | Event::Error { .. }),
            ) => r.trouble.push(format!("{e:?}")),
            _ => {}
        }
    }
}

/// An acknowledged message: its author, client id and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acknowledged {
    pub author: String,
    pub client_id: u64,
    pub body: String,
}

/// Every acknowledgement the members received, by seq. Panics if a member saw trouble or two
/// sends were acknowledged with the same seq.
pub fn acknowledged(members: &[Member]) -> BTreeMap<u64, Acknowledged> {
    let mut by_seq = BTreeMap::new();
    for m in members {
        let r = m.record();
        assert!(r.trouble.is_empty(), "{}: {:?}", m.name, r.trouble);
        for (&client_id, ack) in &r.acked {
            let message = Acknowledged {
                author: m.name.clone(),
                client_id,
                body: r.sent[&client_id].body.clone(),
            };
            if let Some(earlier) = by_seq.insert(ack.seq, message) {
                panic!("seq {} acknowledged twice (also for {earlier:?})", ack.seq);
            }
        }
    }
    by_seq
}

/// `messages` are the acknowledged messages `1..=n`, each once and in seq order, exactly as
/// acknowledged, and nothing else.
pub fn assert_exactly_acknowledged(
    who: &str,
    messages: &[ChatMessage],
    acked: &BTreeMap<u64, Acknowledged>,
) {
    let total = acked.len() as u64;
    assert_eq!(
        acked.keys().copied().collect::<Vec<_>>(),
        (1..=total).collect::<Vec<_>>(),
        "the acknowledged seqs are contiguous from 1"
    );
    let seqs: Vec<u64> = messages.iter().map(|m| m.seq).collect();
    assert_eq!(
        seqs,
        (1..=total).collect::<Vec<_>>(),
        "{who}: every seq once, in order"
    );
    for m in messages {
        let got = Acknowledged {
            author: m.author_name.clone(),
            client_id: m.client_id,
            body: m.body.clone(),
        };
        assert_eq!(Some(&got), acked.get(&m.seq), "{who}: message #{}", m.seq);
    }
}

/// Wait until `done`, failing the test with `what` after `limit`.
pub async fn wait_until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "not within {limit:?}: {what}");
        sleep(Duration::from_millis(50)).await;
    }
}
