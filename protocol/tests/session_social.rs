//! Scripted scenarios for the session's side of the social features: the conversation list
//! and its live changes, the user's receipts (automatic delivered, read on screen, debounced),
//! typing (rate-limited), relayed friend/presence/typing/receipt events, and starting a fresh
//! client's join from the list's read cursor.

use quibble_protocol::session::{
    Action, Event, RECEIPT_DELAY_MS, Session, SessionConfig, StreamKey, StreamOrder,
    TYPING_REFRESH_MS,
};
use quibble_protocol::{
    ChatMessage, ClientFrame, ConversationId, ConversationKind, ConversationSummary, Cursor,
    FriendStatus, LastMessage, PROTOCOL_VERSION, ServerFrame, UserId,
};

const C: ConversationId = ConversationId(7);
const D: ConversationId = ConversationId(8);
const ME: UserId = UserId(1);
const BOB: UserId = UserId(2);

fn session() -> Session {
    Session::new(SessionConfig {
        // Long enough that no ping falls inside a scenario.
        heartbeat_ms: 60_000,
        ..SessionConfig::new("tok", 1_000)
    })
}

fn welcome() -> ServerFrame {
    ServerFrame::Welcome {
        version: PROTOCOL_VERSION,
        user: ME,
        username: "me".into(),
        epoch: 1,
        heartbeat_ms: 60_000,
    }
}

fn summary(c: ConversationId, head: u64, read: u64, unread: u64) -> ConversationSummary {
    ConversationSummary {
        conversation: c,
        kind: ConversationKind::Room,
        title: format!("room{}", c.0),
        head_seq: head,
        delivered_seq: read,
        read_seq: read,
        peer_delivered_seq: None,
        peer_read_seq: None,
        unread,
        last: None,
        activity_ms: head,
    }
}

fn last(seq: u64, author: UserId) -> LastMessage {
    LastMessage {
        seq,
        author,
        author_name: "x".into(),
        preview: format!("m{seq}"),
        sent_at_ms: seq * 10,
    }
}

fn msg(c: ConversationId, seq: u64) -> ChatMessage {
    ChatMessage {
        conversation: c,
        seq,
        author: BOB,
        author_name: "bob".into(),
        client_id: seq,
        sent_at_ms: seq * 10,
        body: format!("m{seq}"),
    }
}

fn transmits(s: &mut Session) -> Vec<(StreamKey, ClientFrame)> {
    std::iter::from_fn(|| s.poll_transmit())
        .map(|t| (t.stream, t.frame))
        .collect()
}

fn events(s: &mut Session) -> Vec<Event> {
    std::iter::from_fn(|| s.poll_event()).collect()
}

/// A session through connect and `Welcome` at `now`, with queues drained.
fn ready(now: u64) -> Session {
    let mut s = session();
    assert_eq!(s.poll_action(), Some(Action::Connect));
    s.on_connected(now, StreamOrder::Shared);
    s.on_frame(StreamKey::Control, welcome(), now);
    transmits(&mut s);
    events(&mut s);
    s
}

/// A ready session joined to `c` from the recent page ending at `from_seq`.
fn joined_session(c: ConversationId, from_seq: u64) -> Session {
    let mut s = ready(0);
    s.join(c);
    transmits(&mut s);
    let joined = ServerFrame::Joined {
        conversation: c,
        epoch: 1,
        head_seq: from_seq,
        from_seq,
    };
    s.on_frame(StreamKey::Conversation(c), joined, 0);
    events(&mut s);
    s
}

fn receipt(c: ConversationId, delivered: u64, read: u64) -> (StreamKey, ClientFrame) {
    (
        StreamKey::Control,
        ClientFrame::Receipt {
            conversation: c,
            delivered,
            read,
        },
    )
}

#[test]
fn the_list_arrives_in_chunks_and_is_kept_current() {
    let mut s = ready(0);
    let first = vec![summary(C, 5, 2, 3)];
    s.on_frame(
        StreamKey::Control,
        ServerFrame::Conversations {
            conversations: first,
            done: false,
        },
        0,
    );
    assert_eq!(events(&mut s), [], "nothing before the last chunk");
    let second = vec![summary(D, 1, 1, 0)];
    s.on_frame(
        StreamKey::Control,
        ServerFrame::Conversations {
            conversations: second,
            done: true,
        },
        0,
    );
    assert_eq!(
        events(&mut s),
        [Event::ConversationList(vec![
            summary(C, 5, 2, 3),
            summary(D, 1, 1, 0)
        ])]
    );

    // Someone else's message: head, last and unread move.
    let activity = ServerFrame::ConversationActivity {
        conversation: C,
        last: last(6, BOB),
    };
    s.on_frame(StreamKey::Control, activity.clone(), 0);
    let mut expected = summary(C, 6, 2, 4);
    expected.last = Some(last(6, BOB));
    expected.activity_ms = 60;
    assert_eq!(
        events(&mut s),
        [Event::ConversationUpdated(expected.clone())]
    );
    // The same activity again (or an older one) changes nothing.
    s.on_frame(StreamKey::Control, activity, 0);
    assert_eq!(events(&mut s), []);

    // My own message while caught up (D: read 1, head 1) moves my cursors, not unread.
    s.on_frame(
        StreamKey::Control,
        ServerFrame::ConversationActivity {
            conversation: D,
            last: last(2, ME),
        },
        0,
    );
    let mut mine = summary(D, 2, 2, 0);
    mine.last = Some(last(2, ME));
    mine.activity_ms = 20;
    assert_eq!(events(&mut s), [Event::ConversationUpdated(mine)]);

    // A whole entry replaces ours; removal drops it.
    s.on_frame(
        StreamKey::Control,
        ServerFrame::ConversationUpdated(summary(C, 6, 6, 0)),
        0,
    );
    assert_eq!(
        events(&mut s),
        [Event::ConversationUpdated(summary(C, 6, 6, 0))]
    );
    assert_eq!(s.conversation(C), Some(&summary(C, 6, 6, 0)));
    s.on_frame(
        StreamKey::Control,
        ServerFrame::ConversationRemoved { conversation: C },
        0,
    );
    assert_eq!(
        events(&mut s),
        [Event::ConversationRemoved { conversation: C }]
    );
    assert_eq!(s.conversations().count(), 1);
}

#[test]
fn a_reconnect_replaces_the_list_with_the_new_snapshot() {
    let mut s = ready(0);
    let list = |conversations| ServerFrame::Conversations {
        conversations,
        done: true,
    };
    s.on_frame(StreamKey::Control, list(vec![summary(C, 5, 5, 0)]), 0);
    s.on_disconnected(10, 0);
    assert_eq!(s.poll_action(), None);
    s.handle_timeout(100_000);
    assert_eq!(s.poll_action(), Some(Action::Connect));
    s.on_connected(100_000, StreamOrder::Shared);
    s.on_frame(StreamKey::Control, welcome(), 100_000);
    s.on_frame(StreamKey::Control, list(vec![summary(D, 3, 0, 3)]), 100_000);
    assert!(events(&mut s).contains(&Event::ConversationList(vec![summary(D, 3, 0, 3)])));
    assert_eq!(s.conversation(C), None);
    assert_eq!(s.conversation(D), Some(&summary(D, 3, 0, 3)));
}

#[test]
fn delivered_is_reported_once_per_debounce_and_read_only_on_screen() {
    let mut s = joined_session(C, 0);
    for seq in 1..=3 {
        s.on_frame(
            StreamKey::Conversation(C),
            ServerFrame::Message(msg(C, seq)),
            10,
        );
    }
    transmits(&mut s);
    assert_eq!(s.poll_timeout(), Some(10 + RECEIPT_DELAY_MS));
    s.handle_timeout(10 + RECEIPT_DELAY_MS - 1);
    assert_eq!(transmits(&mut s), [], "not before the delay");
    s.handle_timeout(10 + RECEIPT_DELAY_MS);
    assert_eq!(
        transmits(&mut s),
        [receipt(C, 3, 0)],
        "one receipt for the burst"
    );
    s.handle_timeout(10_000);
    assert_eq!(transmits(&mut s), [], "nothing new, nothing sent");

    // On screen: read now, and whatever arrives while it stays there.
    s.set_viewing(Some(C), 20_000);
    s.on_frame(
        StreamKey::Conversation(C),
        ServerFrame::Message(msg(C, 4)),
        20_100,
    );
    s.handle_timeout(20_000 + RECEIPT_DELAY_MS);
    assert_eq!(transmits(&mut s), [receipt(C, 4, 4)]);
    // Off screen: delivered only.
    s.set_viewing(None, 30_000);
    s.on_frame(
        StreamKey::Conversation(C),
        ServerFrame::Message(msg(C, 5)),
        30_000,
    );
    s.handle_timeout(30_000 + RECEIPT_DELAY_MS);
    assert_eq!(transmits(&mut s), [receipt(C, 5, 4)]);
    assert!(s.mark_read(C, 40_000));
    s.handle_timeout(40_000 + RECEIPT_DELAY_MS);
    assert_eq!(transmits(&mut s), [receipt(C, 5, 5)]);
    assert!(!s.mark_read(D, 40_000), "D is not joined");
}

#[test]
fn receipts_the_server_already_has_are_not_sent_and_lost_ones_are_resent_after_reconnect() {
    let mut s = joined_session(C, 0);
    s.on_frame(
        StreamKey::Conversation(C),
        ServerFrame::Message(msg(C, 1)),
        0,
    );
    // Another device of mine already reported it (the list says so). A DM: delivered
    // counts on its own.
    let mut entry = summary(C, 1, 1, 0);
    entry.kind = ConversationKind::Dm { peer: BOB };
    s.on_frame(
        StreamKey::Control,
        ServerFrame::ConversationUpdated(entry),
        0,
    );
    s.handle_timeout(RECEIPT_DELAY_MS);
    assert_eq!(transmits(&mut s), []);

    s.on_frame(
        StreamKey::Conversation(C),
        ServerFrame::Message(msg(C, 2)),
        1_000,
    );
    s.on_disconnected(1_100, 0);
    s.handle_timeout(100_000);
    s.on_connected(100_000, StreamOrder::Shared);
    s.on_frame(StreamKey::Control, welcome(), 100_000);
    transmits(&mut s);
    assert!(
        s.poll_timeout()
            .is_some_and(|t| t <= 100_000 + RECEIPT_DELAY_MS)
    );
    s.handle_timeout(100_000 + RECEIPT_DELAY_MS);
    let sent = transmits(&mut s);
    assert!(sent.contains(&receipt(C, 2, 0)), "{sent:?}");
}

#[test]
fn typing_goes_out_at_most_every_refresh_interval() {
    let mut s = ready(0);
    assert!(
        !s.typing(C, 500),
        "not for a conversation the session does not know"
    );
    s.on_frame(
        StreamKey::Control,
        ServerFrame::Conversations {
            conversations: vec![summary(C, 0, 0, 0), summary(D, 0, 0, 0)],
            done: true,
        },
        0,
    );
    let typing = (StreamKey::Control, ClientFrame::Typing { conversation: C });
    assert!(s.typing(C, 1_000));
    assert!(!s.typing(C, 1_500));
    assert!(!s.typing(C, 1_000 + TYPING_REFRESH_MS - 1));
    assert!(s.typing(D, 1_600), "another conversation has its own pace");
    assert!(s.typing(C, 1_000 + TYPING_REFRESH_MS));
    assert_eq!(
        transmits(&mut s),
        [
            typing.clone(),
            (StreamKey::Control, ClientFrame::Typing { conversation: D }),
            typing.clone()
        ]
    );
    // Sending a message stops the indicator server-side: the next keystroke goes out at once.
    s.send(C, "hi".into());
    assert!(s.typing(C, 4_100));
    // Not connected: nothing.
    s.on_disconnected(5_000, 0);
    assert!(!s.typing(C, 20_000));
}

#[test]
fn friend_presence_typing_and_receipt_frames_become_events() {
    let mut s = ready(0);
    let frames = [
        ServerFrame::Friend {
            user: BOB,
            username: "bob".into(),
            status: FriendStatus::Friends,
            dm: Some(D),
        },
        ServerFrame::Presence {
            user: BOB,
            username: "bob".into(),
            online: false,
            last_seen_ms: 42,
        },
        ServerFrame::Typing {
            conversation: D,
            user: BOB,
            username: "bob".into(),
            typing: true,
        },
        ServerFrame::Receipt {
            conversation: D,
            user: BOB,
            delivered: 3,
            read: 2,
        },
    ];
    for f in frames {
        s.on_frame(StreamKey::Control, f, 0);
    }
    assert_eq!(
        events(&mut s),
        [
            Event::Friend {
                user: BOB,
                username: "bob".into(),
                status: FriendStatus::Friends,
                dm: Some(D)
            },
            Event::Presence {
                user: BOB,
                username: "bob".into(),
                online: false,
                last_seen_ms: 42
            },
            Event::Typing {
                conversation: D,
                user: BOB,
                username: "bob".into(),
                typing: true
            },
            Event::Receipt {
                conversation: D,
                user: BOB,
                delivered: 3,
                read: 2
            },
        ]
    );
}

#[test]
fn join_from_resumes_after_the_given_seq_before_and_after_welcome() {
    // Before the first Welcome: the start point waits for the epoch.
    let mut s = session();
    s.poll_action();
    s.join_from(C, 4);
    s.on_connected(0, StreamOrder::Shared);
    s.on_frame(StreamKey::Control, welcome(), 0);
    let join = |c, seq| {
        (
            StreamKey::Conversation(c),
            ClientFrame::Join {
                conversation: c,
                resume: Some(Cursor { epoch: 1, seq }),
            },
        )
    };
    assert!(transmits(&mut s).contains(&join(C, 4)));
    // After it: at once.
    s.join_from(D, 9);
    assert_eq!(transmits(&mut s), [join(D, 9)]);
    // A conversation already joined keeps its own cursor.
    s.join_from(D, 1);
    assert_eq!(transmits(&mut s), []);
}

#[test]
fn leaving_reports_what_was_read_at_once() {
    let mut s = joined_session(C, 0);
    s.on_frame(
        StreamKey::Conversation(C),
        ServerFrame::Message(msg(C, 1)),
        0,
    );
    assert!(s.mark_read(C, 10));
    s.leave(C);
    let sent = transmits(&mut s);
    assert_eq!(
        sent,
        [
            receipt(C, 1, 1),
            (StreamKey::Conversation(C), ClientFrame::Leave)
        ]
    );
    s.handle_timeout(10_000);
    assert_eq!(transmits(&mut s), [], "and nothing more about it");
}

#[test]
fn in_rooms_delivered_waits_for_the_next_read_while_dms_report_it_alone() {
    let mut s = joined_session(C, 0);
    s.join(D);
    let joined_d = ServerFrame::Joined {
        conversation: D,
        epoch: 1,
        head_seq: 0,
        from_seq: 0,
    };
    s.on_frame(StreamKey::Conversation(D), joined_d, 0);
    let mut dm = summary(D, 0, 0, 0);
    dm.kind = ConversationKind::Dm { peer: BOB };
    s.on_frame(
        StreamKey::Control,
        ServerFrame::Conversations {
            conversations: vec![summary(C, 0, 0, 0), dm],
            done: true,
        },
        0,
    );
    transmits(&mut s);
    s.on_frame(
        StreamKey::Conversation(C),
        ServerFrame::Message(msg(C, 1)),
        100,
    );
    s.on_frame(
        StreamKey::Conversation(D),
        ServerFrame::Message(msg(D, 1)),
        100,
    );
    s.handle_timeout(100 + RECEIPT_DELAY_MS);
    assert_eq!(transmits(&mut s), [receipt(D, 1, 0)], "the room's waits");
    s.on_frame(
        StreamKey::Conversation(C),
        ServerFrame::Message(msg(C, 2)),
        5_000,
    );
    assert_eq!(s.poll_timeout().filter(|&t| t < 60_000), None);
    assert!(s.mark_read(C, 6_000));
    s.handle_timeout(6_000 + RECEIPT_DELAY_MS);
    assert_eq!(transmits(&mut s), [receipt(C, 2, 2)]);
}

/// The list entries among `events`.
fn updates(events: Vec<Event>) -> Vec<ConversationSummary> {
    events
        .into_iter()
        .filter_map(|e| match e {
            Event::ConversationUpdated(s) => Some(s),
            Event::ConversationList(mut all) => all.pop(),
            _ => None,
        })
        .collect()
}

#[test]
fn messages_a_stream_receives_are_its_conversations_activity() {
    // Joined before the snapshot is in: a message then is applied on top of the snapshot,
    // which was read before it.
    let mut s = joined_session(C, 5);
    s.on_frame(
        StreamKey::Conversation(C),
        ServerFrame::Message(msg(C, 6)),
        0,
    );
    assert_eq!(updates(events(&mut s)), []);
    s.on_frame(
        StreamKey::Control,
        ServerFrame::Conversations {
            conversations: vec![summary(C, 5, 5, 0)],
            done: true,
        },
        0,
    );
    let mut expected = summary(C, 6, 5, 1);
    expected.last = Some(msg(C, 6).last_message());
    expected.activity_ms = 60;
    assert_eq!(updates(events(&mut s)), [expected.clone()]);

    // Live: each message moves head, last and unread, like `ConversationActivity`.
    s.on_frame(
        StreamKey::Conversation(C),
        ServerFrame::Message(msg(C, 7)),
        0,
    );
    expected.head_seq = 7;
    expected.unread = 2;
    expected.last = Some(msg(C, 7).last_message());
    expected.activity_ms = 70;
    assert_eq!(updates(events(&mut s)), [expected.clone()]);
    // The activity of the same message (an older server sends both) changes nothing.
    s.on_frame(
        StreamKey::Control,
        ServerFrame::ConversationActivity {
            conversation: C,
            last: msg(C, 7).last_message(),
        },
        0,
    );
    assert_eq!(updates(events(&mut s)), []);
    // A blocked author's message (the hidden marker) is no activity.
    s.on_frame(
        StreamKey::Conversation(C),
        ServerFrame::Message(msg(C, 8).hidden()),
        0,
    );
    assert_eq!(updates(events(&mut s)), []);
    assert_eq!(s.conversation(C), Some(&expected));
}
