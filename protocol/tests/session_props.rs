//! Property test: arbitrary sequences of server frames, timeouts, transport events and
//! application commands never panic the session, never deliver a conversation's messages out
//! of order or twice, never lose an unacknowledged send, and never report read past delivered
//! (the social frames, receipts, typing and `join_from` are in the mix).

use std::collections::HashMap;

use proptest::prelude::*;
use quibble_protocol::session::{Action, Event, Session, SessionConfig, StreamKey, StreamOrder};
use quibble_protocol::{
    ChatMessage, ClientFrame, ConversationId, ConversationKind, ConversationSummary, ErrorCode,
    LastMessage, ServerFrame, UserId,
};

const SEED: u64 = 5_000;

#[derive(Debug, Clone)]
enum Op {
    /// Any frame at all, on any stream.
    Frame(StreamKey, ServerFrame),
    Welcome(u64),
    /// The server makes messages `head + 1 ..= head + jump` durable but only the last one
    /// reaches us live (`jump` 0 repeats the head: a duplicate).
    Live(ConversationId, u64),
    /// Answer the latest `History` request of a conversation like a server holding every seq
    /// up to its head except multiples of `hole` (deleted).
    AnswerHistory(ConversationId, u64),
    /// Answer the latest `Join` of a conversation (`Joined` in `epoch`, then the replay).
    AnswerJoin(ConversationId, u64),
    /// Acknowledge (or reject) the pending send at this index, if any.
    Ack(usize, bool),
    Advance(u64),
    Connected,
    Disconnected(u64),
    StreamClosed(StreamKey),
    Join(ConversationId),
    Leave(ConversationId),
    Send(ConversationId),
    LoadOlder(ConversationId, u16),
    JoinFrom(ConversationId, u64),
    MarkRead(ConversationId),
    Viewing(Option<ConversationId>),
    Typing(ConversationId),
}

fn conversation() -> impl Strategy<Value = ConversationId> {
    (1u64..=2).prop_map(ConversationId)
}

fn stream() -> impl Strategy<Value = StreamKey> {
    prop_oneof![
        1 => Just(StreamKey::Control),
        3 => conversation().prop_map(StreamKey::Conversation),
    ]
}

fn message() -> impl Strategy<Value = ChatMessage> {
    (conversation(), 0u64..40, 0u64..30).prop_map(|(conversation, seq, client_id)| ChatMessage {
        conversation,
        seq,
        author: UserId(client_id % 3),
        author_name: "x".into(),
        client_id: SEED + client_id,
        sent_at_ms: seq,
        body: String::new(),
    })
}

fn error_code() -> impl Strategy<Value = ErrorCode> {
    proptest::sample::select(ErrorCode::ALL.to_vec())
}

fn server_frame() -> impl Strategy<Value = ServerFrame> {
    prop_oneof![
        2 => (1u64..=2, 0u32..1500).prop_map(|(epoch, heartbeat_ms)| ServerFrame::Welcome {
            version: 1,
            user: UserId(1),
            username: "me".into(),
            epoch,
            heartbeat_ms,
        }),
        1 => any::<u64>().prop_map(|nonce| ServerFrame::Pong { nonce }),
        3 => (conversation(), 1u64..=2, 0u64..40, 0u64..40).prop_map(
            |(conversation, epoch, head_seq, from_seq)| ServerFrame::Joined {
                conversation,
                epoch,
                head_seq,
                from_seq,
            }
        ),
        10 => message().prop_map(ServerFrame::Message),
        3 => (0u64..45, prop::collection::vec(message(), 0..8), any::<bool>()).prop_map(
            |(before_seq, messages, has_more)| ServerFrame::HistoryPage {
                before_seq,
                messages,
                has_more,
            }
        ),
        4 => (0u64..30, 0u64..40).prop_map(|(id, seq)| ServerFrame::Sent {
            client_id: SEED + id,
            seq,
            sent_at_ms: 0,
        }),
        1 => (0u64..30, error_code()).prop_map(|(id, code)| ServerFrame::Rejected {
            client_id: SEED + id,
            code,
            reason: String::new(),
        }),
        1 => error_code().prop_map(|code| ServerFrame::Error {
            code,
            reason: String::new(),
        }),
        1 => (0u32..3000).prop_map(|reconnect_after_ms| ServerFrame::GoAway {
            reconnect_after_ms,
            reason: String::new(),
        }),
        1 => any::<u64>().prop_map(|resume_from| ServerFrame::Lagged { resume_from }),
        1 => (prop::collection::vec(summary(), 0..3), any::<bool>()).prop_map(
            |(conversations, done)| ServerFrame::Conversations { conversations, done }
        ),
        1 => summary().prop_map(ServerFrame::ConversationUpdated),
        1 => conversation().prop_map(|conversation| ServerFrame::ConversationRemoved { conversation }),
        1 => (conversation(), 0u64..40, 0u64..3).prop_map(|(conversation, seq, author)| {
            ServerFrame::ConversationActivity {
                conversation,
                last: LastMessage {
                    seq,
                    author: UserId(author),
                    author_name: String::new(),
                    preview: String::new(),
                    sent_at_ms: seq,
                },
            }
        }),
        1 => (conversation(), 0u64..40, 0u64..40).prop_map(|(conversation, delivered, read)| {
            ServerFrame::Receipt { conversation, user: UserId(2), delivered, read }
        }),
        1 => (conversation(), any::<bool>()).prop_map(|(conversation, typing)| ServerFrame::Typing {
            conversation,
            user: UserId(2),
            username: String::new(),
            typing,
        }),
    ]
}

fn summary() -> impl Strategy<Value = ConversationSummary> {
    (conversation(), 0u64..40, 0u64..40, any::<bool>()).prop_map(
        |(conversation, head, read, dm)| ConversationSummary {
            conversation,
            kind: if dm {
                ConversationKind::Dm { peer: UserId(2) }
            } else {
                ConversationKind::Room
            },
            title: String::new(),
            head_seq: head,
            delivered_seq: read,
            read_seq: read,
            peer_delivered_seq: None,
            peer_read_seq: None,
            unread: head.saturating_sub(read),
            last: None,
            activity_ms: head,
        },
    )
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (stream(), server_frame()).prop_map(|(s, f)| Op::Frame(s, f)),
        3 => (1u64..=2).prop_map(Op::Welcome),
        12 => (conversation(), prop_oneof![4 => Just(1u64), 1 => 0u64..8]).prop_map(|(c, j)| Op::Live(c, j)),
        5 => (conversation(), 2u64..10).prop_map(|(c, hole)| Op::AnswerHistory(c, hole)),
        4 => (conversation(), prop_oneof![4 => Just(1u64), 1 => Just(2u64)]).prop_map(|(c, e)| Op::AnswerJoin(c, e)),
        4 => (any::<usize>(), prop::bool::weighted(0.2)).prop_map(|(i, r)| Op::Ack(i, r)),
        4 => prop_oneof![4 => 0u64..1200, 1 => 0u64..5000].prop_map(Op::Advance),
        2 => Just(Op::Connected),
        1 => any::<u64>().prop_map(Op::Disconnected),
        1 => stream().prop_map(Op::StreamClosed),
        3 => conversation().prop_map(Op::Join),
        1 => conversation().prop_map(Op::Leave),
        3 => conversation().prop_map(Op::Send),
        3 => (conversation(), 0u16..80).prop_map(|(c, l)| Op::LoadOlder(c, l)),
        1 => (conversation(), 0u64..40).prop_map(|(c, seq)| Op::JoinFrom(c, seq)),
        2 => conversation().prop_map(Op::MarkRead),
        1 => proptest::option::of(conversation()).prop_map(Op::Viewing),
        2 => conversation().prop_map(Op::Typing),
    ]
}

/// What the test remembers of the session's output.
#[derive(Default)]
struct Observer {
    /// Client ids sent and neither acknowledged, rejected nor discarded by `leave`, in order.
    unacked: Vec<(ConversationId, u64)>,
    /// Last delivered seq per conversation since its last reset or leave.
    last_seq: HashMap<ConversationId, u64>,
    last_history: HashMap<ConversationId, (u64, u16)>,
    last_join: HashMap<ConversationId, u64>,
}

impl Observer {
    fn drain(&mut self, s: &mut Session) {
        while let Some(t) = s.poll_transmit() {
            if let ClientFrame::Receipt {
                delivered, read, ..
            } = t.frame
            {
                assert!(read <= delivered, "read {read} past delivered {delivered}");
            }
            if let StreamKey::Conversation(c) = t.stream {
                match t.frame {
                    ClientFrame::History { before_seq, limit } => {
                        self.last_history.insert(c, (before_seq, limit));
                    }
                    ClientFrame::Join { resume, .. } => {
                        self.last_join.insert(c, resume.map_or(0, |r| r.seq));
                    }
                    ClientFrame::Send { client_id, .. } => {
                        assert!(
                            self.unacked.contains(&(c, client_id)),
                            "sent {client_id} which is not pending"
                        );
                    }
                    _ => {}
                }
            }
        }
        while let Some(e) = s.poll_event() {
            match e {
                Event::Message(m) => {
                    if let Some(&last) = self.last_seq.get(&m.conversation) {
                        assert!(m.seq > last, "seq {} after {last}", m.seq);
                    }
                    self.last_seq.insert(m.conversation, m.seq);
                }
                Event::Reset { conversation }
                | Event::Error {
                    stream: StreamKey::Conversation(conversation),
                    code: ErrorCode::Forbidden | ErrorCode::UnknownConversation,
                    ..
                } => {
                    // The cursor is gone (a new epoch, or the conversation was refused and
                    // dropped like a leave): a later join starts over.
                    self.last_seq.remove(&conversation);
                }
                Event::Sent {
                    conversation,
                    client_id,
                    ..
                }
                | Event::Rejected {
                    conversation,
                    client_id,
                    ..
                } => {
                    let index = self
                        .unacked
                        .iter()
                        .position(|&p| p == (conversation, client_id));
                    let Some(index) = index else {
                        panic!("ack for {client_id}, which is not pending");
                    };
                    self.unacked.remove(index);
                }
                _ => {}
            }
        }
        while let Some(a) = s.poll_action() {
            if let Action::Disconnect { .. } = a {
                // The driver closes; it reports the drop in a later op (or not at all).
            }
        }
        let pending: Vec<(ConversationId, u64)> =
            s.pending().map(|p| (p.conversation, p.client_id)).collect();
        assert_eq!(pending, self.unacked, "the outbox lost or invented a send");
    }
}

fn server_message(c: ConversationId, seq: u64) -> ChatMessage {
    ChatMessage {
        conversation: c,
        seq,
        author: UserId(2),
        author_name: "y".into(),
        client_id: seq,
        sent_at_ms: seq,
        body: String::new(),
    }
}

fn welcome(epoch: u64) -> ServerFrame {
    ServerFrame::Welcome {
        version: 1,
        user: UserId(1),
        username: "me".into(),
        epoch,
        heartbeat_ms: 1000,
    }
}

/// The page a server holding seqs `1..=head` minus multiples of `hole` sends for a request.
fn history_answer(
    c: ConversationId,
    before_seq: u64,
    limit: u16,
    head: u64,
    hole: u64,
) -> ServerFrame {
    let top = before_seq.min(head + 1);
    let mut seqs: Vec<u64> = (1..top)
        .rev()
        .filter(|seq| seq % hole != 0)
        .take(usize::from(limit))
        .collect();
    seqs.reverse();
    let has_more = seqs
        .first()
        .is_some_and(|&first| (1..first).any(|seq| seq % hole != 0));
    ServerFrame::HistoryPage {
        before_seq,
        messages: seqs.into_iter().map(|seq| server_message(c, seq)).collect(),
        has_more,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn the_session_survives_any_script(ops in prop::collection::vec(op(), 0..200)) {
        let mut config = SessionConfig::new("t", SEED);
        config.max_gap_buffer = 4;
        config.heartbeat_ms = 1000;
        let mut s = Session::new(config);
        let mut obs = Observer::default();
        let mut now = 0u64;
        let mut heads: HashMap<ConversationId, u64> = HashMap::new();
        // Most scripts should get somewhere: start connected, welcomed and joining both.
        s.on_connected(now, StreamOrder::Shared);
        s.on_frame(StreamKey::Control, welcome(1), now);
        s.join(ConversationId(1));
        s.join(ConversationId(2));
        obs.drain(&mut s);
        for op in ops {
            match op {
                Op::Frame(stream, frame) => s.on_frame(stream, frame, now),
                Op::Welcome(epoch) => s.on_frame(StreamKey::Control, welcome(epoch), now),
                Op::Live(c, jump) => {
                    let head = heads.entry(c).or_insert(0);
                    *head += jump;
                    let frame = ServerFrame::Message(server_message(c, (*head).max(1)));
                    s.on_frame(StreamKey::Conversation(c), frame, now);
                }
                Op::AnswerHistory(c, hole) => {
                    if let Some(&(before_seq, limit)) = obs.last_history.get(&c) {
                        let head = heads.get(&c).copied().unwrap_or(0);
                        let page = history_answer(c, before_seq, limit, head, hole);
                        s.on_frame(StreamKey::Conversation(c), page, now);
                    }
                }
                Op::AnswerJoin(c, epoch) => {
                    if let Some(&resume) = obs.last_join.get(&c) {
                        let head = heads.get(&c).copied().unwrap_or(0);
                        let from_seq = resume.min(head);
                        let frame = ServerFrame::Joined {
                            conversation: c,
                            epoch,
                            head_seq: head,
                            from_seq,
                        };
                        s.on_frame(StreamKey::Conversation(c), frame, now);
                        for seq in from_seq + 1..=head {
                            let frame = ServerFrame::Message(server_message(c, seq));
                            s.on_frame(StreamKey::Conversation(c), frame, now);
                        }
                    }
                }
                Op::Ack(index, reject) => {
                    if !obs.unacked.is_empty() {
                        let (c, client_id) = obs.unacked[index % obs.unacked.len()];
                        let frame = if reject {
                            ServerFrame::Rejected {
                                client_id,
                                code: ErrorCode::InvalidInput,
                                reason: String::new(),
                            }
                        } else {
                            ServerFrame::Sent {
                                client_id,
                                seq: 1,
                                sent_at_ms: 0,
                            }
                        };
                        s.on_frame(StreamKey::Conversation(c), frame, now);
                    }
                }
                Op::Advance(ms) => {
                    now += ms;
                    s.handle_timeout(now);
                    if let Some(t) = s.poll_timeout() {
                        prop_assert!(t > now, "timeout {t} already due at {now}");
                    }
                }
                Op::Connected => s.on_connected(now, StreamOrder::Shared),
                Op::Disconnected(random) => s.on_disconnected(now, random),
                Op::StreamClosed(stream) => s.on_stream_closed(stream, now),
                Op::Join(c) => s.join(c),
                Op::Leave(c) => {
                    s.leave(c);
                    obs.unacked.retain(|&(pc, _)| pc != c);
                    obs.last_seq.remove(&c);
                }
                Op::Send(c) => {
                    let id = s.send(c, "b".into());
                    prop_assert!(id >= SEED);
                    obs.unacked.push((c, id));
                }
                Op::LoadOlder(c, limit) => {
                    s.load_older(c, limit);
                }
                Op::JoinFrom(c, seq) => s.join_from(c, seq),
                Op::MarkRead(c) => {
                    s.mark_read(c, now);
                }
                Op::Viewing(c) => s.set_viewing(c, now),
                Op::Typing(c) => {
                    s.typing(c, now);
                }
            }
            obs.drain(&mut s);
        }
    }
}
