//! Scripted scenarios for the client session state machine: frames, times and random numbers
//! go in, transmits, events and actions come out.

use quibble_protocol::session::{
    Action, Event, Session, SessionConfig, State, StreamKey, StreamOrder,
};
use quibble_protocol::{
    ChatMessage, ClientFrame, ConversationId, Cursor, ErrorCode, PROTOCOL_VERSION, ServerFrame,
    UserId,
};

const C: ConversationId = ConversationId(7);
const D: ConversationId = ConversationId(8);
const ME: UserId = UserId(1);

fn config() -> SessionConfig {
    SessionConfig {
        heartbeat_ms: 1_000,
        backoff_base_ms: 100,
        backoff_cap_ms: 5_000,
        ..SessionConfig::new("tok", 1_000)
    }
}

fn msg(c: ConversationId, seq: u64) -> ChatMessage {
    ChatMessage {
        conversation: c,
        seq,
        author: UserId(2),
        author_name: "bob".into(),
        client_id: seq,
        sent_at_ms: seq * 10,
        body: format!("m{seq}"),
    }
}

fn conv(c: ConversationId) -> StreamKey {
    StreamKey::Conversation(c)
}

fn transmits(s: &mut Session) -> Vec<(StreamKey, ClientFrame)> {
    std::iter::from_fn(|| s.poll_transmit())
        .map(|t| (t.stream, t.frame))
        .collect()
}

/// Transmits other than control-stream pings.
fn conversation_transmits(s: &mut Session) -> Vec<(StreamKey, ClientFrame)> {
    transmits(s)
        .into_iter()
        .filter(|(stream, _)| *stream != StreamKey::Control)
        .collect()
}

fn events(s: &mut Session) -> Vec<Event> {
    std::iter::from_fn(|| s.poll_event()).collect()
}

fn actions(s: &mut Session) -> Vec<Action> {
    std::iter::from_fn(|| s.poll_action()).collect()
}

fn seqs(events: &[Event]) -> Vec<u64> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Message(m) => Some(m.seq),
            _ => None,
        })
        .collect()
}

fn welcome(epoch: u64, heartbeat_ms: u32) -> ServerFrame {
    ServerFrame::Welcome {
        version: PROTOCOL_VERSION,
        user: ME,
        username: "me".into(),
        epoch,
        heartbeat_ms,
    }
}

fn joined(c: ConversationId, epoch: u64, head_seq: u64, from_seq: u64) -> ServerFrame {
    ServerFrame::Joined {
        conversation: c,
        epoch,
        head_seq,
        from_seq,
    }
}

fn join_frame(c: ConversationId, resume: Option<Cursor>) -> (StreamKey, ClientFrame) {
    (
        conv(c),
        ClientFrame::Join {
            conversation: c,
            resume,
        },
    )
}

fn history(c: ConversationId, before_seq: u64, limit: u16) -> (StreamKey, ClientFrame) {
    (conv(c), ClientFrame::History { before_seq, limit })
}

/// A session through connect and `Welcome` (epoch 1) at `now`, with queues drained.
fn ready(now: u64) -> Session {
    let mut s = Session::new(config());
    assert_eq!(actions(&mut s), [Action::Connect]);
    s.on_connected(now, StreamOrder::Shared);
    s.on_frame(StreamKey::Control, welcome(1, 1_000), now);
    transmits(&mut s);
    events(&mut s);
    s
}

/// A ready session joined to `c`, replayed up to `from_seq`.
fn joined_session(c: ConversationId, from_seq: u64) -> Session {
    let mut s = ready(0);
    s.join(c);
    transmits(&mut s);
    s.on_frame(conv(c), joined(c, 1, from_seq, from_seq), 0);
    events(&mut s);
    s
}

#[test]
fn handshake_sends_hello_and_welcome_makes_ready() {
    let mut s = Session::new(config());
    assert_eq!(s.state(), State::Connecting);
    assert_eq!(actions(&mut s), [Action::Connect]);
    assert_eq!(s.poll_action(), None);
    s.join(C);
    assert!(transmits(&mut s).is_empty(), "nothing before connecting");

    s.on_connected(5, StreamOrder::Shared);
    assert_eq!(s.state(), State::Handshaking);
    // The wanted conversation's Join goes out right behind Hello (pipelined).
    assert_eq!(
        transmits(&mut s),
        [
            (
                StreamKey::Control,
                ClientFrame::Hello {
                    version: PROTOCOL_VERSION,
                    token: "tok".into()
                }
            ),
            join_frame(C, None)
        ]
    );
    // Frames other than Welcome/Error/GoAway before Welcome change nothing (a message before
    // Joined is not delivered).
    s.on_frame(conv(C), ServerFrame::Message(msg(C, 1)), 6);
    s.on_frame(StreamKey::Control, welcome(1, 2_000), 10);
    assert_eq!(s.state(), State::Ready);
    assert_eq!(
        events(&mut s),
        [Event::Connected {
            user: ME,
            username: "me".into()
        }]
    );
    assert!(transmits(&mut s).is_empty(), "joined once, behind Hello");
    // A second Welcome is ignored.
    s.on_frame(StreamKey::Control, welcome(2, 2_000), 11);
    assert!(events(&mut s).is_empty());
    assert!(transmits(&mut s).is_empty());
}

#[test]
fn join_replays_then_goes_live_and_drops_duplicates() {
    let mut s = ready(0);
    s.join(C);
    s.join(C);
    assert_eq!(transmits(&mut s), [join_frame(C, None)]);
    s.on_frame(conv(C), joined(C, 1, 3, 0), 1);
    for seq in [1, 2, 2, 3, 1, 4] {
        s.on_frame(conv(C), ServerFrame::Message(msg(C, seq)), 2);
    }
    let ev = events(&mut s);
    assert_eq!(
        ev[0],
        Event::Joined {
            conversation: C,
            head_seq: 3
        }
    );
    assert_eq!(seqs(&ev), [1, 2, 3, 4]);
    assert_eq!(s.cursor(C), Some(Cursor { epoch: 1, seq: 4 }));
    assert!(transmits(&mut s).is_empty());
    // Messages for another conversation, on the wrong stream, or unwanted are ignored.
    s.on_frame(conv(C), ServerFrame::Message(msg(D, 5)), 3);
    s.on_frame(conv(D), ServerFrame::Message(msg(D, 1)), 3);
    assert!(events(&mut s).is_empty());
}

#[test]
fn gap_is_filled_from_history_and_delivered_in_order() {
    let mut s = joined_session(C, 10);
    s.on_frame(conv(C), ServerFrame::Message(msg(C, 11)), 1);
    s.on_frame(conv(C), ServerFrame::Message(msg(C, 14)), 1);
    s.on_frame(conv(C), ServerFrame::Message(msg(C, 15)), 1);
    assert_eq!(seqs(&events(&mut s)), [11]);
    // One request for the missing 12..=13, not one per buffered message.
    assert_eq!(transmits(&mut s), [history(C, 14, 2)]);
    // A live message during the fill is held too.
    s.on_frame(conv(C), ServerFrame::Message(msg(C, 16)), 2);
    assert!(events(&mut s).is_empty());
    s.on_frame(
        conv(C),
        ServerFrame::HistoryPage {
            before_seq: 14,
            messages: vec![msg(C, 12), msg(C, 13)],
            has_more: true,
        },
        3,
    );
    assert_eq!(seqs(&events(&mut s)), [12, 13, 14, 15, 16]);
    assert_eq!(s.cursor(C), Some(Cursor { epoch: 1, seq: 16 }));
    assert!(transmits(&mut s).is_empty());
}

#[test]
fn a_wide_gap_is_filled_page_by_page_from_the_cursor_up() {
    let mut s = joined_session(C, 0);
    s.on_frame(conv(C), ServerFrame::Message(msg(C, 120)), 1);
    assert_eq!(transmits(&mut s), [history(C, 51, 50)]);
    s.on_frame(
        conv(C),
        ServerFrame::HistoryPage {
            before_seq: 51,
            messages: (1..=50).map(|q| msg(C, q)).collect(),
            has_more: false,
        },
        2,
    );
    assert_eq!(seqs(&events(&mut s)), (1..=50).collect::<Vec<_>>());
    assert_eq!(transmits(&mut s), [history(C, 101, 50)]);
    s.on_frame(
        conv(C),
        ServerFrame::HistoryPage {
            before_seq: 101,
            messages: (51..=100).map(|q| msg(C, q)).collect(),
            has_more: true,
        },
        3,
    );
    assert_eq!(seqs(&events(&mut s)), (51..=100).collect::<Vec<_>>());
    assert_eq!(transmits(&mut s), [history(C, 120, 19)]);
    s.on_frame(
        conv(C),
        ServerFrame::HistoryPage {
            before_seq: 120,
            messages: (101..=119).map(|q| msg(C, q)).collect(),
            has_more: true,
        },
        4,
    );
    assert_eq!(seqs(&events(&mut s)), (101..=120).collect::<Vec<_>>());
    assert!(transmits(&mut s).is_empty());
}

#[test]
fn holes_the_server_no_longer_has_are_skipped() {
    let mut s = joined_session(C, 5);
    s.on_frame(conv(C), ServerFrame::Message(msg(C, 9)), 1);
    assert_eq!(transmits(&mut s), [history(C, 9, 3)]);
    // 6 and 8 were deleted: the page reaches below the gap, so the range is complete.
    s.on_frame(
        conv(C),
        ServerFrame::HistoryPage {
            before_seq: 9,
            messages: vec![msg(C, 4), msg(C, 5), msg(C, 7)],
            has_more: true,
        },
        2,
    );
    assert_eq!(seqs(&events(&mut s)), [7, 9]);
    assert_eq!(s.cursor(C), Some(Cursor { epoch: 1, seq: 9 }));
    assert!(transmits(&mut s).is_empty());
}

#[test]
fn a_full_gap_buffer_evicts_and_refetches_without_losing_messages() {
    let mut s = Session::new(SessionConfig {
        max_gap_buffer: 2,
        ..config()
    });
    s.on_connected(0, StreamOrder::Shared);
    s.on_frame(StreamKey::Control, welcome(1, 1_000), 0);
    s.join(C);
    s.on_frame(conv(C), joined(C, 1, 0, 0), 0);
    transmits(&mut s);
    events(&mut s);
    for seq in [3, 4, 5, 6] {
        s.on_frame(conv(C), ServerFrame::Message(msg(C, seq)), 1);
    }
    assert_eq!(transmits(&mut s), [history(C, 3, 2)]);
    s.on_frame(
        conv(C),
        ServerFrame::HistoryPage {
            before_seq: 3,
            messages: vec![msg(C, 1), msg(C, 2)],
            has_more: false,
        },
        2,
    );
    assert_eq!(seqs(&events(&mut s)), [1, 2, 3, 4]);
    // 5 and 6 were evicted: fetched again.
    assert_eq!(transmits(&mut s), [history(C, 7, 2)]);
    s.on_frame(
        conv(C),
        ServerFrame::HistoryPage {
            before_seq: 7,
            messages: vec![msg(C, 5), msg(C, 6)],
            has_more: true,
        },
        3,
    );
    assert_eq!(seqs(&events(&mut s)), [5, 6]);
    assert!(transmits(&mut s).is_empty());
}

#[test]
fn sends_wait_for_joined_and_acks_empty_the_outbox() {
    let mut s = ready(0);
    let first = s.send(C, "early".into());
    assert_eq!(first, 1_000);
    s.join(C);
    assert_eq!(transmits(&mut s), [join_frame(C, None)]);
    let second = s.send(C, "still joining".into());
    assert_eq!(second, 1_001);
    assert!(transmits(&mut s).is_empty());
    s.on_frame(conv(C), joined(C, 1, 0, 0), 1);
    assert_eq!(
        transmits(&mut s),
        [
            (
                conv(C),
                ClientFrame::Send {
                    client_id: first,
                    body: "early".into()
                }
            ),
            (
                conv(C),
                ClientFrame::Send {
                    client_id: second,
                    body: "still joining".into()
                }
            ),
        ]
    );
    let third = s.send(C, "live".into());
    assert_eq!(
        transmits(&mut s),
        [(
            conv(C),
            ClientFrame::Send {
                client_id: third,
                body: "live".into()
            }
        )]
    );
    events(&mut s);
    // An own message echoed before its ack is delivered normally.
    let mut own = msg(C, 1);
    own.author = ME;
    own.client_id = second;
    s.on_frame(conv(C), ServerFrame::Message(own), 2);
    let ack = ServerFrame::Sent {
        client_id: second,
        seq: 1,
        sent_at_ms: 77,
    };
    s.on_frame(conv(C), ack.clone(), 2);
    s.on_frame(conv(C), ack, 2);
    s.on_frame(
        conv(C),
        ServerFrame::Rejected {
            client_id: first,
            code: ErrorCode::InvalidInput,
            reason: "too long".into(),
        },
        2,
    );
    let ev = events(&mut s);
    assert_eq!(seqs(&ev), [1]);
    assert_eq!(
        ev[1..],
        [
            Event::Sent {
                conversation: C,
                client_id: second,
                seq: 1,
                sent_at_ms: 77
            },
            Event::Rejected {
                conversation: C,
                client_id: first,
                code: ErrorCode::InvalidInput,
                reason: "too long".into()
            }
        ]
    );
    let pending: Vec<u64> = s.pending().map(|p| p.client_id).collect();
    assert_eq!(pending, [third]);
    // An ack on another conversation's stream does not match.
    s.join(D);
    s.on_frame(conv(D), joined(D, 1, 0, 0), 3);
    s.on_frame(
        conv(D),
        ServerFrame::Sent {
            client_id: third,
            seq: 9,
            sent_at_ms: 0,
        },
        3,
    );
    assert_eq!(s.pending().count(), 1);
}

#[test]
fn restored_sends_keep_their_client_ids_and_go_out_once() {
    let mut s = ready(0);
    // Restored before the join: sent on `Joined`, in order, under the ids given.
    assert!(s.restore(C, 42, "from the last run".into()));
    assert!(
        !s.restore(C, 42, "from the last run".into()),
        "already pending"
    );
    assert!(s.restore(D, 42, "same id, other conversation".into()));
    let fresh = s.send(C, "new".into());
    assert_eq!(
        fresh, 1_000,
        "restoring does not use up the session's own ids"
    );
    s.join(C);
    s.on_frame(conv(C), joined(C, 1, 0, 0), 1);
    let send = |client_id, body: &str| {
        (
            conv(C),
            ClientFrame::Send {
                client_id,
                body: body.into(),
            },
        )
    };
    assert_eq!(
        transmits(&mut s),
        [
            join_frame(C, None),
            send(42, "from the last run"),
            send(fresh, "new")
        ]
    );
    // Restored while joined: transmitted at once.
    assert!(s.restore(C, 43, "late".into()));
    assert_eq!(transmits(&mut s), [send(43, "late")]);
    events(&mut s);
    s.on_frame(
        conv(C),
        ServerFrame::Sent {
            client_id: 42,
            seq: 5,
            sent_at_ms: 50,
        },
        2,
    );
    assert_eq!(
        events(&mut s),
        [Event::Sent {
            conversation: C,
            client_id: 42,
            seq: 5,
            sent_at_ms: 50
        }]
    );
    let pending: Vec<(ConversationId, u64)> =
        s.pending().map(|p| (p.conversation, p.client_id)).collect();
    assert_eq!(pending, [(D, 42), (C, fresh), (C, 43)]);
}

#[test]
fn reconnect_resumes_from_the_cursor_and_resends_pending() {
    let mut s = joined_session(C, 0);
    for seq in 1..=3 {
        s.on_frame(conv(C), ServerFrame::Message(msg(C, seq)), 1);
    }
    let id = s.send(C, "hi".into());
    transmits(&mut s);
    events(&mut s);

    s.on_disconnected(100, 42);
    assert_eq!(events(&mut s), [Event::Disconnected]);
    let State::Reconnecting {
        retry_at_ms,
        attempt,
    } = s.state()
    else {
        panic!("expected Reconnecting, got {:?}", s.state());
    };
    assert_eq!(attempt, 1);
    // Full jitter: 42 % (min(cap, base * 2^0) + 1) = 42.
    assert_eq!(retry_at_ms, 142);
    assert_eq!(s.poll_timeout(), Some(retry_at_ms));
    // Sends while disconnected wait in the outbox.
    let id2 = s.send(C, "offline".into());
    assert!(transmits(&mut s).is_empty());
    // Frames while disconnected are ignored.
    s.on_frame(conv(C), ServerFrame::Message(msg(C, 4)), 101);
    assert!(events(&mut s).is_empty());

    s.handle_timeout(retry_at_ms - 1);
    assert!(actions(&mut s).is_empty());
    s.handle_timeout(retry_at_ms);
    assert_eq!(s.state(), State::Connecting);
    assert_eq!(actions(&mut s), [Action::Connect]);
    s.on_connected(200, StreamOrder::Shared);
    s.on_frame(StreamKey::Control, welcome(1, 1_000), 201);
    let tx = transmits(&mut s);
    assert_eq!(tx[1], join_frame(C, Some(Cursor { epoch: 1, seq: 3 })));
    s.on_frame(conv(C), joined(C, 1, 5, 3), 202);
    assert_eq!(
        transmits(&mut s),
        [
            (
                conv(C),
                ClientFrame::Send {
                    client_id: id,
                    body: "hi".into()
                }
            ),
            (
                conv(C),
                ClientFrame::Send {
                    client_id: id2,
                    body: "offline".into()
                }
            )
        ]
    );
    for seq in [3, 4, 5] {
        s.on_frame(conv(C), ServerFrame::Message(msg(C, seq)), 203);
    }
    assert_eq!(seqs(&events(&mut s)), [4, 5]);
    // The backoff attempt counter was reset by Welcome.
    s.on_disconnected(300, u64::MAX);
    assert!(matches!(
        s.state(),
        State::Reconnecting {
            retry_at_ms: 300..=400,
            attempt: 1
        }
    ));
}

#[test]
fn joined_behind_our_cursor_keeps_ours() {
    let mut s = joined_session(C, 10);
    s.on_disconnected(0, 0);
    s.handle_timeout(0);
    s.on_connected(1, StreamOrder::Shared);
    s.on_frame(StreamKey::Control, welcome(1, 1_000), 1);
    transmits(&mut s);
    s.on_frame(conv(C), joined(C, 1, 10, 4), 2);
    assert_eq!(s.cursor(C), Some(Cursor { epoch: 1, seq: 10 }));
    s.on_frame(conv(C), ServerFrame::Message(msg(C, 5)), 2);
    s.on_frame(conv(C), ServerFrame::Message(msg(C, 11)), 2);
    assert_eq!(seqs(&events(&mut s)), [11]);
}

#[test]
fn epoch_change_resets_and_joins_without_resume() {
    let mut s = joined_session(C, 10);
    s.join(D);
    transmits(&mut s);
    s.on_disconnected(0, 0);
    s.handle_timeout(0);
    s.on_connected(1, StreamOrder::Shared);
    // Joined behind Hello, before the new epoch is known: the server ignores a cursor of
    // another epoch and joins from the recent page.
    assert_eq!(
        transmits(&mut s)[1..],
        [
            join_frame(C, Some(Cursor { epoch: 1, seq: 10 })),
            join_frame(D, None)
        ]
    );
    events(&mut s);
    s.on_frame(StreamKey::Control, welcome(2, 1_000), 2);
    assert_eq!(
        events(&mut s),
        [
            Event::Connected {
                user: ME,
                username: "me".into()
            },
            Event::Reset { conversation: C },
        ]
    );
    assert_eq!(s.cursor(C), None);
    assert!(transmits(&mut s).is_empty());
    s.on_frame(conv(C), joined(C, 2, 3, 0), 3);
    assert_eq!(s.cursor(C), Some(Cursor { epoch: 2, seq: 0 }));
    s.on_frame(conv(C), ServerFrame::Message(msg(C, 1)), 3);
    assert_eq!(seqs(&events(&mut s)), [1]);
}

#[test]
fn joined_with_another_epoch_resets_first() {
    let mut s = joined_session(C, 10);
    s.on_frame(conv(C), ServerFrame::Lagged { resume_from: 10 }, 1);
    s.on_stream_closed(conv(C), 1);
    assert_eq!(
        transmits(&mut s),
        [join_frame(C, Some(Cursor { epoch: 1, seq: 10 }))]
    );
    s.on_frame(conv(C), joined(C, 9, 2, 0), 2);
    assert_eq!(
        events(&mut s),
        [
            Event::Reset { conversation: C },
            Event::Joined {
                conversation: C,
                head_seq: 2
            }
        ]
    );
    assert_eq!(s.cursor(C), Some(Cursor { epoch: 9, seq: 0 }));
}

#[test]
fn heartbeat_pings_on_schedule_and_silence_disconnects() {
    let mut s = Session::new(config());
    s.on_connected(0, StreamOrder::Shared);
    transmits(&mut s);
    // Before Welcome: ping each second, give up after three seconds without Welcome.
    assert_eq!(s.poll_timeout(), Some(1_000));
    s.handle_timeout(1_000);
    assert_eq!(
        transmits(&mut s),
        [(StreamKey::Control, ClientFrame::Ping { nonce: 0 })]
    );
    s.on_frame(StreamKey::Control, ServerFrame::Pong { nonce: 0 }, 1_500);
    s.handle_timeout(2_000);
    transmits(&mut s);
    assert_eq!(s.poll_timeout(), Some(3_000));
    s.handle_timeout(3_000);
    let [Action::Disconnect { reason }] = &actions(&mut s)[..] else {
        panic!("expected one Disconnect");
    };
    assert!(reason.contains("Welcome"), "{reason}");
    assert_eq!(s.poll_timeout(), None, "no timers while closing");

    // After Welcome: the server's interval, and any frame counts as liveness.
    s.on_disconnected(3_001, 0);
    s.handle_timeout(3_001);
    actions(&mut s);
    s.on_connected(10_000, StreamOrder::Shared);
    s.on_frame(StreamKey::Control, welcome(1, 500), 10_000);
    transmits(&mut s);
    assert_eq!(s.poll_timeout(), Some(10_500));
    s.handle_timeout(10_400);
    assert!(transmits(&mut s).is_empty());
    s.handle_timeout(10_500);
    assert_eq!(
        transmits(&mut s),
        [(StreamKey::Control, ClientFrame::Ping { nonce: 0 })]
    );
    s.on_frame(StreamKey::Control, ServerFrame::Pong { nonce: 0 }, 11_000);
    s.handle_timeout(12_499);
    assert!(actions(&mut s).is_empty());
    assert_eq!(
        transmits(&mut s),
        [(StreamKey::Control, ClientFrame::Ping { nonce: 1 }),]
    );
    assert_eq!(s.poll_timeout(), Some(12_500));
    s.handle_timeout(12_500);
    assert!(matches!(&actions(&mut s)[..], [Action::Disconnect { .. }]));
    // The dead connection counts as a failed attempt.
    s.on_disconnected(12_501, 7);
    assert_eq!(
        s.state(),
        State::Reconnecting {
            retry_at_ms: 12_508,
            attempt: 1
        }
    );
}

#[test]
fn backoff_grows_with_full_jitter_up_to_the_cap() {
    let mut s = Session::new(config());
    actions(&mut s);
    let mut now = 0;
    for attempt in 0..12u32 {
        let ceiling = (100u64 << attempt).min(5_000);
        // The largest random that maps to the ceiling, and one that maps to zero.
        let random = if attempt % 2 == 0 {
            ceiling
        } else {
            ceiling + 1
        };
        s.on_disconnected(now, random);
        let State::Reconnecting {
            retry_at_ms,
            attempt: shown,
        } = s.state()
        else {
            panic!("not reconnecting");
        };
        assert_eq!(shown, attempt + 1);
        let delay = retry_at_ms - now;
        assert!(delay <= ceiling);
        assert_eq!(delay, if attempt % 2 == 0 { ceiling } else { 0 });
        s.handle_timeout(retry_at_ms);
        assert_eq!(actions(&mut s), [Action::Connect]);
        now = retry_at_ms;
    }
    // No Disconnected event: none of these attempts connected.
    assert!(events(&mut s).is_empty());
}

#[test]
fn go_away_reconnects_after_the_hint_without_counting_a_failure() {
    let mut s = joined_session(C, 0);
    s.on_disconnected(0, 0);
    s.handle_timeout(0);
    s.on_connected(1, StreamOrder::Shared);
    s.on_frame(StreamKey::Control, welcome(1, 1_000), 1);
    s.on_disconnected(2, 0);
    s.handle_timeout(2);
    s.on_connected(3, StreamOrder::Shared);
    // Before Welcome the failure count is 1; GoAway must not raise it.
    events(&mut s);
    actions(&mut s);
    s.on_frame(
        StreamKey::Control,
        ServerFrame::GoAway {
            reconnect_after_ms: 4_321,
            reason: "restart".into(),
        },
        5,
    );
    assert_eq!(
        events(&mut s),
        [Event::GoAway {
            reconnect_after_ms: 4_321
        }]
    );
    assert!(matches!(&actions(&mut s)[..], [Action::Disconnect { .. }]));
    s.on_disconnected(10, u64::MAX);
    assert_eq!(events(&mut s), [Event::Disconnected]);
    assert_eq!(
        s.state(),
        State::Reconnecting {
            retry_at_ms: 4_331,
            attempt: 1
        }
    );
}

#[test]
fn unauthorized_fails_for_good() {
    let mut s = Session::new(config());
    actions(&mut s);
    s.join(C);
    s.on_connected(0, StreamOrder::Shared);
    s.on_frame(
        StreamKey::Control,
        ServerFrame::Error {
            code: ErrorCode::Unauthorized,
            reason: "bad token".into(),
        },
        1,
    );
    assert_eq!(s.state(), State::Failed(ErrorCode::Unauthorized));
    assert_eq!(
        events(&mut s),
        [Event::Error {
            stream: StreamKey::Control,
            code: ErrorCode::Unauthorized,
            reason: "bad token".into()
        }]
    );
    assert!(matches!(&actions(&mut s)[..], [Action::Disconnect { .. }]));
    s.on_disconnected(2, 5);
    assert_eq!(s.state(), State::Failed(ErrorCode::Unauthorized));
    assert!(events(&mut s).is_empty());
    assert_eq!(s.poll_timeout(), None);
    s.handle_timeout(u64::MAX);
    assert!(actions(&mut s).is_empty());
    s.on_connected(3, StreamOrder::Shared);
    assert!(transmits(&mut s).is_empty());
    s.on_frame(StreamKey::Control, welcome(1, 1_000), 4);
    assert_eq!(s.state(), State::Failed(ErrorCode::Unauthorized));
}

#[test]
fn a_retryable_control_error_reconnects_with_backoff() {
    let mut s = ready(0);
    s.on_frame(
        StreamKey::Control,
        ServerFrame::Error {
            code: ErrorCode::SlowConsumer,
            reason: "slow".into(),
        },
        1,
    );
    assert!(matches!(&actions(&mut s)[..], [Action::Disconnect { .. }]));
    // A later fatal reason on the same connection does not ask twice.
    s.on_stream_closed(StreamKey::Control, 2);
    assert!(actions(&mut s).is_empty());
    s.on_disconnected(3, 50);
    assert_eq!(
        s.state(),
        State::Reconnecting {
            retry_at_ms: 53,
            attempt: 1
        }
    );
}

#[test]
fn lagged_stream_is_rejoined_from_the_cursor_when_closed() {
    let mut s = joined_session(C, 0);
    for seq in 1..=4 {
        s.on_frame(conv(C), ServerFrame::Message(msg(C, seq)), 1);
    }
    events(&mut s);
    s.on_frame(conv(C), ServerFrame::Lagged { resume_from: 2 }, 2);
    // Messages after Lagged on the dying stream are not used.
    s.on_frame(conv(C), ServerFrame::Message(msg(C, 5)), 2);
    assert!(events(&mut s).is_empty());
    assert!(transmits(&mut s).is_empty());
    s.on_stream_closed(conv(C), 3);
    assert_eq!(
        transmits(&mut s),
        [join_frame(C, Some(Cursor { epoch: 1, seq: 4 }))]
    );
    s.on_frame(conv(C), joined(C, 1, 5, 4), 4);
    s.on_frame(conv(C), ServerFrame::Message(msg(C, 5)), 4);
    assert_eq!(seqs(&events(&mut s)), [5]);
}

#[test]
fn a_stream_error_rejoins_after_a_growing_delay() {
    let mut s = joined_session(C, 0);
    for round in 0..3u32 {
        s.on_frame(
            conv(C),
            ServerFrame::Error {
                code: ErrorCode::RateLimited,
                reason: "slow down".into(),
            },
            1_000,
        );
        assert_eq!(
            events(&mut s),
            [Event::Error {
                stream: conv(C),
                code: ErrorCode::RateLimited,
                reason: "slow down".into()
            }]
        );
        s.on_stream_closed(conv(C), 1_000);
        assert!(transmits(&mut s).is_empty());
        let due = 1_000 + (100u64 << round);
        assert!(s.poll_timeout().is_some_and(|t| t <= due));
        s.handle_timeout(due - 1);
        assert!(conversation_transmits(&mut s).is_empty());
        s.handle_timeout(due);
        assert_eq!(
            conversation_transmits(&mut s),
            [join_frame(C, Some(Cursor { epoch: 1, seq: 0 }))]
        );
    }
    s.on_frame(conv(C), joined(C, 1, 0, 0), 2_000);
    assert!(matches!(&events(&mut s)[..], [Event::Joined { .. }]));
}

#[test]
fn forbidden_conversation_is_no_longer_wanted_but_keeps_its_sends() {
    let mut s = joined_session(C, 0);
    s.send(C, "x".into());
    transmits(&mut s);
    s.on_frame(
        conv(C),
        ServerFrame::Error {
            code: ErrorCode::Forbidden,
            reason: "banned".into(),
        },
        1,
    );
    assert!(matches!(&events(&mut s)[..], [Event::Error { .. }]));
    s.on_stream_closed(conv(C), 2);
    assert!(transmits(&mut s).is_empty());
    assert_eq!(s.cursor(C), None);
    assert_eq!(s.pending().count(), 1);
    s.leave(C);
    assert_eq!(s.pending().count(), 0);
    assert!(transmits(&mut s).is_empty(), "no stream, no Leave");
}

/// A conversation re-joined after a stream error, before that stream's end is reported: what
/// was in flight on the old stream goes again first, and a later send does not overtake it.
#[test]
fn a_rejoin_before_the_old_stream_closes_resends_what_was_in_flight() {
    let mut s = joined_session(C, 0);
    let x = s.send(C, "x".into());
    transmits(&mut s);
    s.on_frame(
        conv(C),
        ServerFrame::Error {
            code: ErrorCode::Forbidden,
            reason: "not a member".into(),
        },
        1,
    );
    events(&mut s);
    s.join(C);
    transmits(&mut s);
    s.on_frame(conv(C), joined(C, 1, 0, 0), 2);
    let y = s.send(C, "y".into());
    assert_eq!(
        conversation_transmits(&mut s),
        [
            (
                conv(C),
                ClientFrame::Send {
                    client_id: x,
                    body: "x".into()
                }
            ),
            (
                conv(C),
                ClientFrame::Send {
                    client_id: y,
                    body: "y".into()
                }
            ),
        ]
    );
}

#[test]
fn leave_sends_leave_and_forgets() {
    let mut s = joined_session(C, 3);
    s.send(C, "bye".into());
    transmits(&mut s);
    s.leave(C);
    assert_eq!(transmits(&mut s), [(conv(C), ClientFrame::Leave)]);
    assert_eq!(s.cursor(C), None);
    assert_eq!(s.pending().count(), 0);
    s.on_frame(conv(C), ServerFrame::Message(msg(C, 4)), 1);
    s.on_stream_closed(conv(C), 1);
    assert!(events(&mut s).is_empty());
    assert!(transmits(&mut s).is_empty());
    // Leaving while offline sends nothing; the conversation is not rejoined.
    s.join(D);
    s.on_disconnected(2, 0);
    s.leave(D);
    s.handle_timeout(2);
    s.on_connected(3, StreamOrder::Shared);
    s.on_frame(StreamKey::Control, welcome(1, 1_000), 3);
    let tx = transmits(&mut s);
    assert_eq!(tx.len(), 1, "only Hello: {tx:?}");
}

#[test]
fn load_older_pages_back_until_the_start() {
    let mut s = ready(0);
    assert!(!s.load_older(C, 10), "not joined");
    s.join(C);
    transmits(&mut s);
    assert!(!s.load_older(C, 10), "Joined not received yet");
    s.on_frame(conv(C), joined(C, 1, 100, 70), 1);
    events(&mut s);
    assert!(s.load_older(C, 500));
    assert_eq!(transmits(&mut s), [history(C, 71, 50)]);
    assert!(s.load_older(C, 20), "already on its way");
    assert!(transmits(&mut s).is_empty());
    s.on_frame(
        conv(C),
        ServerFrame::HistoryPage {
            before_seq: 71,
            messages: (21..=70).map(|q| msg(C, q)).collect(),
            has_more: true,
        },
        2,
    );
    let ev = events(&mut s);
    let [
        Event::History {
            conversation,
            messages,
            has_more: true,
        },
    ] = &ev[..]
    else {
        panic!("expected one History event: {ev:?}");
    };
    assert_eq!(*conversation, C);
    assert_eq!(messages.len(), 50);
    assert!(seqs(&ev).is_empty(), "history is not live delivery");
    assert_eq!(s.cursor(C), Some(Cursor { epoch: 1, seq: 70 }));
    // An unsolicited page is ignored.
    s.on_frame(
        conv(C),
        ServerFrame::HistoryPage {
            before_seq: 3,
            messages: vec![msg(C, 1)],
            has_more: false,
        },
        2,
    );
    assert!(events(&mut s).is_empty());

    assert!(s.load_older(C, 0));
    assert_eq!(transmits(&mut s), [history(C, 21, 1)]);
    s.on_frame(
        conv(C),
        ServerFrame::HistoryPage {
            before_seq: 21,
            messages: vec![msg(C, 20)],
            has_more: false,
        },
        3,
    );
    assert_eq!(events(&mut s).len(), 1);
    assert!(!s.load_older(C, 10), "nothing older");
}

#[test]
fn an_unanswered_older_page_is_asked_again_after_reconnect() {
    let mut s = joined_session(C, 30);
    assert!(s.load_older(C, 10));
    transmits(&mut s);
    s.on_disconnected(1, 0);
    s.handle_timeout(1);
    s.on_connected(2, StreamOrder::Shared);
    s.on_frame(StreamKey::Control, welcome(1, 1_000), 2);
    transmits(&mut s);
    s.on_frame(conv(C), joined(C, 1, 30, 30), 3);
    assert_eq!(transmits(&mut s), [history(C, 31, 10)]);
}

#[test]
fn joining_from_the_start_has_nothing_older() {
    let mut s = joined_session(C, 0);
    assert!(!s.load_older(C, 10));
}

#[test]
fn disconnected_is_reported_once_per_connection() {
    let mut s = ready(0);
    s.on_disconnected(1, 0);
    s.on_disconnected(2, 0);
    assert_eq!(events(&mut s), [Event::Disconnected]);
    s.handle_timeout(10_000);
    s.on_connected(10_001, StreamOrder::Shared);
    s.on_disconnected(10_002, 0);
    assert_eq!(events(&mut s), [Event::Disconnected]);
}

#[test]
fn queued_frames_of_a_dead_connection_are_dropped() {
    let mut s = joined_session(C, 0);
    s.send(C, "a".into());
    s.on_disconnected(1, 0);
    assert!(transmits(&mut s).is_empty());
    assert_eq!(s.pending().count(), 1);
}

fn send_frame(c: ConversationId, client_id: u64, body: &str) -> (StreamKey, ClientFrame) {
    (
        conv(c),
        ClientFrame::Send {
            client_id,
            body: body.into(),
        },
    )
}

fn rate_limited(client_id: u64, retry_in_ms: u64) -> ServerFrame {
    ServerFrame::Rejected {
        client_id,
        code: ErrorCode::RateLimited,
        reason: format!(
            "sending too fast: at most 5 messages per second (bursts of 5); retry in {retry_in_ms} ms"
        ),
    }
}

fn sent(client_id: u64, seq: u64) -> ServerFrame {
    ServerFrame::Sent {
        client_id,
        seq,
        sent_at_ms: seq,
    }
}

#[test]
fn a_rate_limited_send_is_resent_after_the_hint_and_acknowledged_once() {
    let mut s = joined_session(C, 0);
    let a = s.send(C, "a".into());
    assert_eq!(transmits(&mut s), [send_frame(C, a, "a")]);
    s.on_frame(conv(C), rate_limited(a, 40), 100);
    assert_eq!(
        events(&mut s),
        [Event::Throttled {
            conversation: C,
            client_id: a,
            retry_in_ms: 40
        }]
    );
    let pending: Vec<u64> = s.pending().map(|p| p.client_id).collect();
    assert_eq!(pending, [a], "a rate-limited send stays pending");
    assert!(s.poll_timeout().is_some_and(|t| t <= 140));
    s.handle_timeout(139);
    assert!(
        conversation_transmits(&mut s).is_empty(),
        "not before the hint"
    );
    s.handle_timeout(140);
    assert_eq!(
        conversation_transmits(&mut s),
        [send_frame(C, a, "a")],
        "the same client id again"
    );
    s.on_frame(conv(C), sent(a, 1), 141);
    s.on_frame(conv(C), sent(a, 1), 142);
    assert_eq!(
        events(&mut s),
        [Event::Sent {
            conversation: C,
            client_id: a,
            seq: 1,
            sent_at_ms: 1
        }],
        "acknowledged once"
    );
    assert_eq!(s.pending().count(), 0);
    // Nothing pending: back to sending at once.
    let b = s.send(C, "b".into());
    assert_eq!(transmits(&mut s), [send_frame(C, b, "b")]);
}

#[test]
fn sends_after_a_rate_limited_one_never_overtake_it() {
    let mut s = joined_session(C, 0);
    let [a, b, c] = ["a", "b", "c"].map(|body| s.send(C, body.into()));
    assert_eq!(transmits(&mut s).len(), 3, "pipelined while not throttled");
    s.on_frame(conv(C), rate_limited(a, 10), 0);
    // `b` comes back held behind `a`, with the server's longer hold as its hint: the pause
    // is still `a`'s.
    s.on_frame(conv(C), rate_limited(b, 2_010), 0);
    let throttled: Vec<u64> = events(&mut s)
        .into_iter()
        .filter_map(|e| match e {
            Event::Throttled { retry_in_ms, .. } => Some(retry_in_ms),
            _ => None,
        })
        .collect();
    assert_eq!(throttled, [10, 10]);
    // Throttled: a new send waits its turn.
    let d = s.send(C, "d".into());
    assert!(transmits(&mut s).is_empty());
    // `c` is still in flight: nothing goes until it is answered, even past the hint.
    assert_eq!(s.poll_timeout().filter(|&t| t <= 10), None);
    s.handle_timeout(10);
    assert!(conversation_transmits(&mut s).is_empty());
    s.on_frame(conv(C), rate_limited(c, 2_005), 5);
    assert!(conversation_transmits(&mut s).is_empty());
    // Then `a` first: three were in flight at the refusal, so the window is one.
    assert!(s.poll_timeout().is_some_and(|t| t <= 10));
    s.handle_timeout(10);
    assert_eq!(conversation_transmits(&mut s), [send_frame(C, a, "a")]);
    s.handle_timeout(11);
    assert!(
        conversation_transmits(&mut s).is_empty(),
        "the window is full"
    );
    // Each ack widens the window by one: two go after `a`'s, then one more after `b`'s.
    s.on_frame(conv(C), sent(a, 1), 12);
    assert_eq!(
        transmits(&mut s),
        [send_frame(C, b, "b"), send_frame(C, c, "c")]
    );
    s.on_frame(conv(C), sent(b, 2), 13);
    assert_eq!(transmits(&mut s), [send_frame(C, d, "d")]);
    // A new refusal pauses again; `d`, behind it, comes back too.
    s.on_frame(conv(C), rate_limited(c, 20), 14);
    s.on_frame(conv(C), rate_limited(d, 2_020), 14);
    s.handle_timeout(33);
    assert!(conversation_transmits(&mut s).is_empty());
    // A reconnect keeps the order: on the new stream, once due, `c` goes first (the window
    // halved to one).
    s.on_disconnected(34, 0);
    let Some(retry) = s.poll_timeout() else {
        panic!("a reconnect is scheduled");
    };
    s.handle_timeout(retry);
    assert_eq!(actions(&mut s), [Action::Connect]);
    s.on_connected(retry, StreamOrder::Shared);
    s.on_frame(StreamKey::Control, welcome(1, 1_000), retry);
    transmits(&mut s);
    s.on_frame(conv(C), joined(C, 1, 1, 1), retry);
    assert_eq!(transmits(&mut s), [send_frame(C, c, "c")]);
    s.on_frame(conv(C), sent(c, 3), retry + 1);
    assert_eq!(transmits(&mut s), [send_frame(C, d, "d")]);
    s.on_frame(conv(C), sent(d, 4), retry + 2);
    assert!(transmits(&mut s).is_empty());
    let acked: Vec<u64> = events(&mut s)
        .into_iter()
        .filter_map(|e| match e {
            Event::Sent { client_id, .. } => Some(client_id),
            _ => None,
        })
        .collect();
    assert_eq!(acked, [a, b, c, d], "stored in the order they were made");
    // The outbox is empty: pipelining again.
    let e = s.send(C, "e".into());
    let f = s.send(C, "f".into());
    assert_eq!(
        transmits(&mut s),
        [send_frame(C, e, "e"), send_frame(C, f, "f")]
    );
}

#[test]
fn after_the_hint_a_backlog_is_pipelined_within_a_widening_window() {
    let mut s = joined_session(C, 0);
    let first: Vec<u64> = (0..8).map(|n| s.send(C, format!("m{n}"))).collect();
    assert_eq!(transmits(&mut s).len(), 8);
    // The first is refused for congestion; the seven behind it come back held.
    s.on_frame(conv(C), rate_limited(first[0], 25), 100);
    for &id in &first[1..] {
        s.on_frame(conv(C), rate_limited(id, 2_025), 101);
    }
    events(&mut s);
    // Meanwhile the application queues 32 more.
    let backlog: Vec<u64> = (8..40).map(|n| s.send(C, format!("m{n}"))).collect();
    assert!(transmits(&mut s).is_empty(), "paused");
    s.handle_timeout(125);
    // Half of what was in flight at the refusal goes at once, oldest first.
    let all: Vec<u64> = first.iter().chain(&backlog).copied().collect();
    let window: Vec<u64> = conversation_transmits(&mut s)
        .into_iter()
        .map(|t| match t {
            (_, ClientFrame::Send { client_id, .. }) => client_id,
            other => panic!("a send, not {other:?}"),
        })
        .collect();
    assert_eq!(window, all[..4]);
    // Every ack lets two more go (one freed, one wider), never out of order.
    let mut next = 4;
    let mut seq = 0;
    let mut in_flight: std::collections::VecDeque<u64> = window.into();
    while let Some(id) = in_flight.pop_front() {
        seq += 1;
        s.on_frame(conv(C), sent(id, seq), 130 + seq);
        for t in transmits(&mut s) {
            match t {
                (_, ClientFrame::Send { client_id, .. }) => {
                    assert_eq!(client_id, all[next], "in order");
                    next += 1;
                    in_flight.push_back(client_id);
                }
                other => panic!("a send, not {other:?}"),
            }
        }
        assert!(in_flight.len() <= 4 + seq as usize, "within the window");
    }
    assert_eq!(next, all.len(), "every send went, once");
    assert_eq!(s.pending().count(), 0);
    let acked: Vec<u64> = events(&mut s)
        .into_iter()
        .filter_map(|e| match e {
            Event::Sent { client_id, .. } => Some(client_id),
            _ => None,
        })
        .collect();
    assert_eq!(acked, all, "each acknowledged once, in order");
}

#[test]
fn a_throttled_conversation_does_not_hold_back_another() {
    let mut s = joined_session(C, 0);
    s.join(D);
    s.on_frame(conv(D), joined(D, 1, 0, 0), 0);
    transmits(&mut s);
    let a = s.send(C, "a".into());
    s.on_frame(conv(C), rate_limited(a, 50), 0);
    transmits(&mut s);
    let b = s.send(C, "b".into());
    let x = s.send(D, "x".into());
    assert_eq!(transmits(&mut s), [send_frame(D, x, "x")]);
    s.handle_timeout(50);
    assert_eq!(conversation_transmits(&mut s), [send_frame(C, a, "a")]);
    assert_eq!(
        s.pending().map(|p| p.client_id).collect::<Vec<_>>(),
        [a, b, x]
    );
}

#[test]
fn rejections_other_than_rate_limited_stay_final() {
    let mut s = joined_session(C, 0);
    for code in ErrorCode::ALL
        .into_iter()
        .filter(|&code| code != ErrorCode::RateLimited)
    {
        let id = s.send(C, "x".into());
        transmits(&mut s);
        let reason = "no; retry in 5 ms".to_owned();
        s.on_frame(
            conv(C),
            ServerFrame::Rejected {
                client_id: id,
                code,
                reason: reason.clone(),
            },
            1,
        );
        assert_eq!(
            events(&mut s),
            [Event::Rejected {
                conversation: C,
                client_id: id,
                code,
                reason
            }]
        );
        assert_eq!(s.pending().count(), 0, "{code} is final");
        s.handle_timeout(100);
        assert!(
            conversation_transmits(&mut s).is_empty(),
            "{code} is not resent"
        );
    }
}

#[test]
fn a_live_ban_fails_for_good() {
    let mut s = ready(0);
    s.on_frame(
        StreamKey::Control,
        ServerFrame::Error {
            code: ErrorCode::Banned,
            reason: "banned: spam".into(),
        },
        1,
    );
    assert_eq!(s.state(), State::Failed(ErrorCode::Banned));
    assert_eq!(
        events(&mut s),
        [Event::Error {
            stream: StreamKey::Control,
            code: ErrorCode::Banned,
            reason: "banned: spam".into()
        }]
    );
    assert!(matches!(&actions(&mut s)[..], [Action::Disconnect { .. }]));
    // No reconnect is ever scheduled.
    s.on_disconnected(2, 5);
    assert_eq!(s.state(), State::Failed(ErrorCode::Banned));
    assert!(events(&mut s).is_empty());
    assert_eq!(s.poll_timeout(), None);
    s.handle_timeout(u64::MAX);
    assert!(actions(&mut s).is_empty());
}

#[test]
fn joins_go_out_behind_hello_and_what_overtakes_welcome_waits_for_it() {
    const E: ConversationId = ConversationId(9);
    let mut s = Session::new(config());
    actions(&mut s);
    s.join(C);
    // Joining from a seq needs the store's epoch, which only Welcome tells: it waits.
    s.join_from(D, 5);
    s.on_connected(1, StreamOrder::Shared);
    let tx = transmits(&mut s);
    assert!(matches!(tx[0].1, ClientFrame::Hello { .. }));
    assert_eq!(tx[1..], [join_frame(C, None)]);
    // Joined while handshaking: at once. Left while handshaking: Leave follows its Join.
    s.join(E);
    s.leave(E);
    assert_eq!(
        transmits(&mut s),
        [join_frame(E, None), (conv(E), ClientFrame::Leave)]
    );

    // C's stream overtakes Welcome (a server need not keep that order): held, applied after
    // Welcome.
    s.on_frame(conv(C), joined(C, 1, 2, 0), 2);
    s.on_frame(conv(C), ServerFrame::Message(msg(C, 1)), 2);
    s.on_frame(conv(C), ServerFrame::Message(msg(C, 2)), 2);
    assert!(events(&mut s).is_empty(), "nothing before Welcome");
    s.on_frame(StreamKey::Control, welcome(1, 1_000), 3);
    let got = events(&mut s);
    assert_eq!(
        got[..2],
        [
            Event::Connected {
                user: ME,
                username: "me".into()
            },
            Event::Joined {
                conversation: C,
                head_seq: 2
            }
        ]
    );
    assert_eq!(seqs(&got), [1, 2]);
    assert_eq!(s.cursor(C), Some(Cursor { epoch: 1, seq: 2 }));
    assert_eq!(
        transmits(&mut s),
        [join_frame(D, Some(Cursor { epoch: 1, seq: 5 }))]
    );

    // After a reconnect the epoch is known: D goes out behind Hello too, from its cursor.
    s.on_disconnected(10, 0);
    s.handle_timeout(10);
    actions(&mut s);
    s.on_connected(11, StreamOrder::Shared);
    assert_eq!(
        transmits(&mut s)[1..],
        [
            join_frame(C, Some(Cursor { epoch: 1, seq: 2 })),
            join_frame(D, Some(Cursor { epoch: 1, seq: 5 }))
        ]
    );
}

#[test]
fn over_webtransport_joins_wait_for_welcome() {
    let mut s = Session::new(config());
    actions(&mut s);
    s.join(C);
    s.on_connected(1, StreamOrder::PerStream);
    let tx = transmits(&mut s);
    assert_eq!(tx.len(), 1, "only Hello before Welcome: {tx:?}");
    assert!(matches!(tx[0].1, ClientFrame::Hello { .. }));
    // Asked for while handshaking: it waits too.
    const E: ConversationId = ConversationId(9);
    s.join(E);
    assert!(transmits(&mut s).is_empty());
    s.on_frame(StreamKey::Control, welcome(1, 1_000), 2);
    let mut joins = transmits(&mut s);
    joins.sort_by_key(|(stream, _)| format!("{stream:?}"));
    assert_eq!(joins, [join_frame(C, None), join_frame(E, None)]);
}

#[test]
fn a_conversation_left_before_welcome_drops_what_its_old_stream_sent() {
    let mut s = Session::new(config());
    actions(&mut s);
    s.join(C);
    s.on_connected(1, StreamOrder::Shared);
    transmits(&mut s);
    // The pipelined stream's Joined and a message come before Welcome; then C is left and
    // joined again (a new stream, its own Joined).
    s.on_frame(conv(C), joined(C, 1, 50, 40), 2);
    s.on_frame(conv(C), ServerFrame::Message(msg(C, 41)), 2);
    s.leave(C);
    s.join(C);
    s.on_frame(StreamKey::Control, welcome(1, 1_000), 3);
    let got = events(&mut s);
    assert!(
        seqs(&got).is_empty() && !got.iter().any(|e| matches!(e, Event::Joined { .. })),
        "the old stream's frames were applied to the new join: {got:?}"
    );
    // The new stream's own Joined is the one taken.
    s.on_frame(conv(C), joined(C, 1, 50, 10), 4);
    s.on_frame(conv(C), ServerFrame::Message(msg(C, 11)), 4);
    assert_eq!(seqs(&events(&mut s)), [11]);
}

#[test]
fn too_much_before_welcome_gives_the_connection_up() {
    let mut s = Session::new(config());
    actions(&mut s);
    s.join(C);
    s.on_connected(1, StreamOrder::Shared);
    transmits(&mut s);
    for seq in 0..1024 {
        s.on_frame(conv(C), ServerFrame::Message(msg(C, seq)), 2);
    }
    assert!(actions(&mut s).is_empty(), "1,024 frames are held");
    s.on_frame(conv(C), ServerFrame::Message(msg(C, 1024)), 2);
    assert!(matches!(actions(&mut s)[..], [Action::Disconnect { .. }]));
}

#[test]
fn a_failed_dial_that_carried_the_first_flight_reconnects_without_a_disconnected_event() {
    let mut s = joined_session(C, 3);
    s.on_disconnected(0, 0);
    assert_eq!(events(&mut s), [Event::Disconnected]);
    s.handle_timeout(0);
    assert_eq!(actions(&mut s), [Action::Connect]);
    // The driver announces the dial and takes the first flight into its handshake.
    s.on_connected(1, StreamOrder::Shared);
    assert!(matches!(
        &transmits(&mut s)[..],
        [
            (StreamKey::Control, ClientFrame::Hello { .. }),
            (_, ClientFrame::Join { .. })
        ]
    ));
    // The dial fails: a backoff, a retry, and no Disconnected (the application never had it).
    s.on_connect_failed(2, u64::MAX);
    assert!(events(&mut s).is_empty());
    let State::Reconnecting { retry_at_ms, .. } = s.state() else {
        panic!("not reconnecting: {:?}", s.state());
    };
    s.handle_timeout(retry_at_ms);
    assert_eq!(actions(&mut s), [Action::Connect]);
    // The next flight resumes from the same cursor.
    s.on_connected(retry_at_ms, StreamOrder::Shared);
    let resumes = transmits(&mut s)
        .into_iter()
        .filter_map(|(_, f)| match f {
            ClientFrame::Join { resume, .. } => Some(resume.map(|c| c.seq)),
            _ => None,
        })
        .collect::<Vec<_>>();
    assert_eq!(resumes, [Some(3)]);
}
