//! `protocol/PROTOCOL.md` checked against the code, so the document cannot drift from it.
//!
//! The document's examples are fenced blocks that start with `example: NAME` and
//! `value: DEBUG`, then lines of hex bytes (each line's `#` starts a comment). Every example
//! named here must be in the document with exactly the bytes the real encoder produces (the
//! WebSocket message: stream id, frame length, postcard body) and the value's `Debug` text,
//! the bytes must decode back to the value, and the document may hold no example this file
//! does not check. Its tables (marked `<!-- table: NAME -->`) of variant indices, error codes
//! and constants are checked against the code too, and every variant of every wire enum must
//! have a table row.

use std::collections::BTreeMap;

use quibble_protocol::codec::{encode, read_varint};
use quibble_protocol::limits::{MAX_BODY_LEN, MAX_FRAME_LEN, MAX_HISTORY_PAGE, MAX_TOKEN_LEN};
use quibble_protocol::mux::{self, Envelope};
use quibble_protocol::wire::PREVIEW_CHARS;
use quibble_protocol::{
    ChatMessage, ClientFrame, ConversationId, ConversationKind, ConversationSummary, Cursor,
    ErrorCode, FriendStatus, LastMessage, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION, ServerFrame,
    TYPING_TTL_MS, UserId,
};

const DOC: &str = include_str!("../PROTOCOL.md");

const EPOCH: u64 = 0x9f3c_5a21_0b7e_44d1;
const AT: u64 = 1_764_547_200_123;
const TOKEN: &str = "q7Hn0cX2w9Yb4TtZkP1eRv8sLm3aJd5UfGi6oNhWxQc";
const C7: ConversationId = ConversationId(7);
const ALICE: UserId = UserId(1);
const BOB: UserId = UserId(2);

/// A frame of either direction.
enum Frame {
    Client(ClientFrame),
    Server(ServerFrame),
}

/// One example: a WebSocket message carrying `frame` on `stream`, or (no frame) the message
/// that finishes `stream`.
struct Example {
    name: &'static str,
    stream: u64,
    frame: Option<Frame>,
}

fn client(name: &'static str, stream: u64, frame: ClientFrame) -> Example {
    Example {
        name,
        stream,
        frame: Some(Frame::Client(frame)),
    }
}

fn server(name: &'static str, stream: u64, frame: ServerFrame) -> Example {
    Example {
        name,
        stream,
        frame: Some(Frame::Server(frame)),
    }
}

fn message(
    seq: u64,
    author: UserId,
    name: &str,
    client_id: u64,
    at: u64,
    body: &str,
) -> ChatMessage {
    ChatMessage {
        conversation: C7,
        seq,
        author,
        author_name: name.into(),
        client_id,
        sent_at_ms: at,
        body: body.into(),
    }
}

fn examples() -> Vec<Example> {
    let hello_message = message(1, ALICE, "alice", 1001, AT, "hello");
    vec![
        client(
            "hello",
            0,
            ClientFrame::Hello {
                version: 4,
                token: TOKEN.into(),
            },
        ),
        server(
            "welcome",
            0,
            ServerFrame::Welcome {
                version: 4,
                user: ALICE,
                username: "alice".into(),
                epoch: EPOCH,
                heartbeat_ms: 10_000,
            },
        ),
        server(
            "error-hello",
            0,
            ServerFrame::Error {
                code: ErrorCode::Unauthorized,
                reason: "invalid or expired token".into(),
            },
        ),
        server(
            "conversations-empty",
            0,
            ServerFrame::Conversations {
                conversations: Vec::new(),
                done: true,
            },
        ),
        server(
            "conversations",
            0,
            ServerFrame::Conversations {
                conversations: vec![ConversationSummary {
                    conversation: C7,
                    kind: ConversationKind::Room,
                    title: "general".into(),
                    head_seq: 3,
                    delivered_seq: 2,
                    read_seq: 2,
                    peer_delivered_seq: None,
                    peer_read_seq: None,
                    unread: 1,
                    last: Some(LastMessage {
                        seq: 3,
                        author: BOB,
                        author_name: "bob".into(),
                        preview: "hi".into(),
                        sent_at_ms: AT,
                    }),
                    activity_ms: AT,
                }],
                done: true,
            },
        ),
        client("ping", 0, ClientFrame::Ping { nonce: 5 }),
        server("pong", 0, ServerFrame::Pong { nonce: 5 }),
        client(
            "join",
            1,
            ClientFrame::Join {
                conversation: C7,
                resume: None,
            },
        ),
        server(
            "joined",
            1,
            ServerFrame::Joined {
                conversation: C7,
                epoch: EPOCH,
                head_seq: 0,
                from_seq: 0,
            },
        ),
        client(
            "send",
            1,
            ClientFrame::Send {
                client_id: 1001,
                body: "hello".into(),
            },
        ),
        server(
            "sent",
            1,
            ServerFrame::Sent {
                client_id: 1001,
                seq: 1,
                sent_at_ms: AT,
            },
        ),
        server("message", 1, ServerFrame::Message(hello_message.clone())),
        server(
            "message-other",
            1,
            ServerFrame::Message(message(2, BOB, "bob", 77, AT + 1_500, "hi alice")),
        ),
        server(
            "rejected",
            1,
            ServerFrame::Rejected {
                client_id: 1002,
                code: ErrorCode::RateLimited,
                reason: "sending too fast: at most 50 messages per second (bursts of 200); \
                         retry in 120 ms"
                    .into(),
            },
        ),
        client(
            "history",
            1,
            ClientFrame::History {
                before_seq: 2,
                limit: 50,
            },
        ),
        server(
            "history-page",
            1,
            ServerFrame::HistoryPage {
                before_seq: 2,
                messages: vec![hello_message],
                has_more: false,
            },
        ),
        client("leave", 1, ClientFrame::Leave),
        Example {
            name: "finish",
            stream: 1,
            frame: None,
        },
        client(
            "join-resume",
            2,
            ClientFrame::Join {
                conversation: C7,
                resume: Some(Cursor {
                    epoch: EPOCH,
                    seq: 2,
                }),
            },
        ),
        server(
            "joined-resume",
            2,
            ServerFrame::Joined {
                conversation: C7,
                epoch: EPOCH,
                head_seq: 3,
                from_seq: 2,
            },
        ),
        server(
            "message-deleted",
            2,
            ServerFrame::Message(message(3, BOB, "bob", 0, AT + 9_000, "")),
        ),
        server(
            "deleted",
            2,
            ServerFrame::Deleted {
                conversation: C7,
                seq: 3,
            },
        ),
        server("lagged", 2, ServerFrame::Lagged { resume_from: 120 }),
        server(
            "error",
            3,
            ServerFrame::Error {
                code: ErrorCode::UnknownConversation,
                reason: "no such conversation".into(),
            },
        ),
        server(
            "go-away",
            0,
            ServerFrame::GoAway {
                reconnect_after_ms: 2_500,
                reason: "server shutting down".into(),
            },
        ),
        client(
            "receipt",
            0,
            ClientFrame::Receipt {
                conversation: C7,
                delivered: 3,
                read: 3,
            },
        ),
        client("typing", 0, ClientFrame::Typing { conversation: C7 }),
        server(
            "conversation-updated",
            0,
            ServerFrame::ConversationUpdated(ConversationSummary {
                conversation: ConversationId(9),
                kind: ConversationKind::Dm { peer: BOB },
                title: "bob".into(),
                head_seq: 4,
                delivered_seq: 4,
                read_seq: 4,
                peer_delivered_seq: Some(4),
                peer_read_seq: Some(3),
                unread: 0,
                last: None,
                activity_ms: AT,
            }),
        ),
        server(
            "conversation-removed",
            0,
            ServerFrame::ConversationRemoved { conversation: C7 },
        ),
        server(
            "conversation-activity",
            0,
            ServerFrame::ConversationActivity {
                conversation: C7,
                last: LastMessage {
                    seq: 4,
                    author: BOB,
                    author_name: "bob".into(),
                    preview: "lunch?".into(),
                    sent_at_ms: AT + 60_000,
                },
            },
        ),
        server(
            "receipt-event",
            0,
            ServerFrame::Receipt {
                conversation: C7,
                user: BOB,
                delivered: 3,
                read: 2,
            },
        ),
        server(
            "friend",
            0,
            ServerFrame::Friend {
                user: BOB,
                username: "bob".into(),
                status: FriendStatus::Friends,
                dm: Some(ConversationId(9)),
            },
        ),
        server(
            "presence",
            0,
            ServerFrame::Presence {
                user: BOB,
                username: "bob".into(),
                online: false,
                last_seen_ms: AT,
            },
        ),
        server(
            "typing-event",
            0,
            ServerFrame::Typing {
                conversation: C7,
                user: BOB,
                username: "bob".into(),
                typing: true,
            },
        ),
    ]
}

/// Every `ClientFrame` variant's name. Exhaustive: a new variant does not compile until it is
/// named here, and then the test wants a table row and an example for it.
fn client_variant(frame: &ClientFrame) -> &'static str {
    match frame {
        ClientFrame::Hello { .. } => "Hello",
        ClientFrame::Ping { .. } => "Ping",
        ClientFrame::Join { .. } => "Join",
        ClientFrame::Send { .. } => "Send",
        ClientFrame::History { .. } => "History",
        ClientFrame::Leave => "Leave",
        ClientFrame::Receipt { .. } => "Receipt",
        ClientFrame::Typing { .. } => "Typing",
    }
}

const CLIENT_VARIANTS: usize = 8;

/// As [`client_variant`], for `ServerFrame`.
fn server_variant(frame: &ServerFrame) -> &'static str {
    match frame {
        ServerFrame::Welcome { .. } => "Welcome",
        ServerFrame::Pong { .. } => "Pong",
        ServerFrame::Joined { .. } => "Joined",
        ServerFrame::Message(_) => "Message",
        ServerFrame::Sent { .. } => "Sent",
        ServerFrame::Rejected { .. } => "Rejected",
        ServerFrame::HistoryPage { .. } => "HistoryPage",
        ServerFrame::Error { .. } => "Error",
        ServerFrame::GoAway { .. } => "GoAway",
        ServerFrame::Lagged { .. } => "Lagged",
        ServerFrame::Conversations { .. } => "Conversations",
        ServerFrame::ConversationUpdated(_) => "ConversationUpdated",
        ServerFrame::ConversationRemoved { .. } => "ConversationRemoved",
        ServerFrame::ConversationActivity { .. } => "ConversationActivity",
        ServerFrame::Receipt { .. } => "Receipt",
        ServerFrame::Friend { .. } => "Friend",
        ServerFrame::Presence { .. } => "Presence",
        ServerFrame::Typing { .. } => "Typing",
        ServerFrame::Deleted { .. } => "Deleted",
    }
}

const SERVER_VARIANTS: usize = 19;

/// Every `ConversationKind` and `FriendStatus`, exhaustively named.
fn kinds() -> Vec<(ConversationKind, &'static str)> {
    let all = [ConversationKind::Room, ConversationKind::Dm { peer: BOB }];
    all.into_iter()
        .map(|kind| {
            let name = match kind {
                ConversationKind::Room => "Room",
                ConversationKind::Dm { .. } => "Dm",
            };
            (kind, name)
        })
        .collect()
}

fn statuses() -> Vec<(FriendStatus, &'static str)> {
    let all = [
        FriendStatus::None,
        FriendStatus::Friends,
        FriendStatus::Outgoing,
        FriendStatus::Incoming,
    ];
    all.into_iter()
        .map(|status| {
            let name = match status {
                FriendStatus::None => "None",
                FriendStatus::Friends => "Friends",
                FriendStatus::Outgoing => "Outgoing",
                FriendStatus::Incoming => "Incoming",
            };
            (status, name)
        })
        .collect()
}

/// An example block of the document: its value line and its bytes.
struct DocExample {
    value: String,
    bytes: Vec<u8>,
}

/// The document's example blocks, by name.
fn doc_examples() -> BTreeMap<String, DocExample> {
    let mut found = BTreeMap::new();
    let mut lines = DOC.lines();
    while let Some(line) = lines.next() {
        if !line.starts_with("```") {
            continue;
        }
        let block: Vec<&str> = lines
            .by_ref()
            .take_while(|l| !l.starts_with("```"))
            .collect();
        let Some(name) = block.first().and_then(|l| l.strip_prefix("example: ")) else {
            continue;
        };
        let value = block
            .get(1)
            .and_then(|l| l.strip_prefix("value: "))
            .unwrap_or_else(|| panic!("example {name}: no `value:` line"));
        let mut bytes = Vec::new();
        for line in &block[2..] {
            let hex = line.split('#').next().unwrap_or_default();
            for token in hex.split_whitespace() {
                assert_eq!(
                    token.len(),
                    2,
                    "example {name}: `{token}` is not one hex byte"
                );
                let byte = u8::from_str_radix(token, 16)
                    .unwrap_or_else(|_| panic!("example {name}: `{token}` is not hex"));
                bytes.push(byte);
            }
        }
        let previous = found.insert(
            name.to_owned(),
            DocExample {
                value: value.to_owned(),
                bytes,
            },
        );
        assert!(previous.is_none(), "example {name} appears twice");
    }
    found
}

/// The rows of the table after `<!-- table: NAME -->`: its cells, header and rule skipped.
fn doc_table(name: &str) -> Vec<Vec<String>> {
    let marker = format!("<!-- table: {name} -->");
    let start = DOC
        .find(&marker)
        .unwrap_or_else(|| panic!("no {marker} in PROTOCOL.md"));
    DOC[start + marker.len()..]
        .lines()
        .skip_while(|l| l.trim().is_empty())
        .take_while(|l| l.starts_with('|'))
        .skip(2)
        .map(|row| {
            row.trim()
                .trim_matches('|')
                .split('|')
                .map(|cell| cell.trim().trim_matches('`').to_owned())
                .collect()
        })
        .collect()
}

/// The table `name` as variant name → index (first column index, second column name).
fn variant_table(name: &str) -> BTreeMap<String, u64> {
    doc_table(name)
        .into_iter()
        .map(|row| {
            let index = row[0]
                .parse()
                .unwrap_or_else(|_| panic!("table {name}: `{}` is not an index", row[0]));
            (row[1].clone(), index)
        })
        .collect()
}

/// The WebSocket message the code sends for an example.
fn encoded(example: &Example) -> Vec<u8> {
    match &example.frame {
        None => mux::finish(example.stream),
        Some(Frame::Client(frame)) => mux::wrap(example.stream, &encode(frame).unwrap()),
        Some(Frame::Server(frame)) => mux::wrap(example.stream, &encode(frame).unwrap()),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn every_example_in_the_document_is_what_the_code_encodes() {
    let doc = doc_examples();
    let examples = examples();
    for example in &examples {
        let shown = doc
            .get(example.name)
            .unwrap_or_else(|| panic!("example {} is missing from PROTOCOL.md", example.name));
        let want = encoded(example);
        assert_eq!(
            hex(&shown.bytes),
            hex(&want),
            "example {}: the document's bytes (left) are not the code's (right)",
            example.name
        );
        let value = match &example.frame {
            None => format!("end of stream {}", example.stream),
            Some(Frame::Client(frame)) => format!("{frame:?}"),
            Some(Frame::Server(frame)) => format!("{frame:?}"),
        };
        assert_eq!(shown.value, value, "example {}: value line", example.name);
        // And the bytes decode back to the value.
        match &example.frame {
            None => assert_eq!(
                mux::unwrap::<ServerFrame>(&shown.bytes, MAX_FRAME_LEN).unwrap(),
                Envelope::Finish(example.stream)
            ),
            Some(Frame::Client(frame)) => assert_eq!(
                mux::unwrap::<ClientFrame>(&shown.bytes, MAX_FRAME_LEN).unwrap(),
                Envelope::Frame(example.stream, frame.clone())
            ),
            Some(Frame::Server(frame)) => assert_eq!(
                mux::unwrap::<ServerFrame>(&shown.bytes, MAX_FRAME_LEN).unwrap(),
                Envelope::Frame(example.stream, frame.clone())
            ),
        }
    }
    for name in doc.keys() {
        assert!(
            examples.iter().any(|e| e.name == name),
            "PROTOCOL.md shows example {name}, which this test does not check"
        );
    }
}

/// The variant index is the frame body's first byte (every index is below 128, one varint
/// byte); the stream id and the length prefix come before it.
fn variant_index(example: &Example) -> u64 {
    let message = encoded(example);
    let (_, frame) = mux::split(&message).unwrap();
    let (_, prefix) = read_varint(frame, 5).unwrap().unwrap();
    u64::from(frame[prefix])
}

#[test]
fn the_variant_tables_match_the_code_and_every_variant_has_an_example() {
    let clients = variant_table("ClientFrame");
    let servers = variant_table("ServerFrame");
    assert_eq!(clients.len(), CLIENT_VARIANTS, "ClientFrame table rows");
    assert_eq!(servers.len(), SERVER_VARIANTS, "ServerFrame table rows");
    let mut seen_client = BTreeMap::new();
    let mut seen_server = BTreeMap::new();
    for example in examples() {
        let (table, seen, name) = match &example.frame {
            None => continue,
            Some(Frame::Client(frame)) => (&clients, &mut seen_client, client_variant(frame)),
            Some(Frame::Server(frame)) => (&servers, &mut seen_server, server_variant(frame)),
        };
        let index = variant_index(&example);
        assert_eq!(
            table.get(name),
            Some(&index),
            "the table's index of {name} is not the one the code encodes"
        );
        seen.insert(name, index);
    }
    assert_eq!(
        seen_client.len(),
        CLIENT_VARIANTS,
        "ClientFrame variants with an example"
    );
    assert_eq!(
        seen_server.len(),
        SERVER_VARIANTS,
        "ServerFrame variants with an example"
    );
}

#[test]
fn the_nested_enum_tables_match_the_code() {
    let table = variant_table("ConversationKind");
    assert_eq!(table.len(), kinds().len());
    for (kind, name) in kinds() {
        let bytes = postcard::to_allocvec(&kind).unwrap();
        assert_eq!(table.get(name), Some(&u64::from(bytes[0])), "{name}");
    }
    let table = variant_table("FriendStatus");
    assert_eq!(table.len(), statuses().len());
    for (status, name) in statuses() {
        let bytes = postcard::to_allocvec(&status).unwrap();
        assert_eq!(table.get(name), Some(&u64::from(bytes[0])), "{name}");
    }
}

#[test]
fn the_error_code_table_matches_the_code() {
    let rows = doc_table("ErrorCode");
    assert_eq!(rows.len(), ErrorCode::ALL.len(), "ErrorCode table rows");
    for (row, code) in rows.iter().zip(ErrorCode::ALL) {
        // | wire index | close code | WebSocket close | variant | name | retryable | meaning |
        let wire = postcard::to_allocvec(&code).unwrap();
        assert_eq!(row[0], wire[0].to_string(), "{code:?}: wire index");
        assert_eq!(row[1], code.as_u32().to_string(), "{code:?}: close code");
        assert_eq!(
            row[2],
            code.ws_close_code().to_string(),
            "{code:?}: WebSocket close"
        );
        assert_eq!(row[3], format!("{code:?}"), "{code:?}: variant");
        assert_eq!(row[4], code.as_str(), "{code:?}: name");
        let retryable = if code.is_retryable() { "yes" } else { "no" };
        assert_eq!(row[5], retryable, "{code:?}: retryable");
    }
}

#[test]
fn the_constants_table_matches_the_code() {
    let want: BTreeMap<&str, u64> = [
        ("PROTOCOL_VERSION", u64::from(PROTOCOL_VERSION)),
        ("MIN_PROTOCOL_VERSION", u64::from(MIN_PROTOCOL_VERSION)),
        ("MAX_FRAME_LEN", MAX_FRAME_LEN as u64),
        ("MAX_BODY_LEN", MAX_BODY_LEN as u64),
        ("MAX_HISTORY_PAGE", u64::from(MAX_HISTORY_PAGE)),
        ("MAX_TOKEN_LEN", MAX_TOKEN_LEN as u64),
        ("TYPING_TTL_MS", u64::from(TYPING_TTL_MS)),
        ("PREVIEW_CHARS", PREVIEW_CHARS as u64),
    ]
    .into_iter()
    .collect();
    let rows = doc_table("constants");
    assert_eq!(rows.len(), want.len(), "constants table rows");
    for row in rows {
        let value: u64 = row[1]
            .replace(',', "")
            .parse()
            .unwrap_or_else(|_| panic!("constant {}: `{}` is not a number", row[0], row[1]));
        assert_eq!(
            want.get(row[0].as_str()),
            Some(&value),
            "constant {}",
            row[0]
        );
    }
}
