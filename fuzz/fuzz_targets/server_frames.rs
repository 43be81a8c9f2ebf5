//! Fuzz the server's frame handling through its real WebSocket path. Once per process the real
//! server starts in-process (`Server::bind` + `run`, as `quibble serve` does) on a loopback
//! port with a store in a temp dir, and one account and one room are made over its HTTP API.
//! Each input is a WebSocket session: `Hello` with that account's token, then a sequence of
//! arbitrary operations — well-formed frames with fuzzed fields on fuzzed stream ids, a stream
//! id followed by arbitrary bytes, whole arbitrary messages, stream ends, text messages — and
//! finally a `Ping` on the control stream as a barrier: the server must answer it with `Pong`
//! or close the connection, within a deadline. A panic anywhere in the server aborts the
//! process (libFuzzer's panic hook), a hang fails the deadline, and a server that died fails
//! the next connect.

#![no_main]

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use arbitrary::Arbitrary;
use futures_util::{SinkExt, StreamExt};
use libfuzzer_sys::fuzz_target;
use quibble_protocol::codec;
use quibble_protocol::mux::{self, Envelope};
use quibble_protocol::{ClientFrame, ConversationId, Cursor, PROTOCOL_VERSION, ServerFrame};
use quibble_server::config::Loaded;
use quibble_server::server::Server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::runtime::Runtime;
use tokio_tungstenite::tungstenite::Message;

/// The server must answer the barrier within this.
const DEADLINE: Duration = Duration::from_secs(10);
/// Operations per input, at most.
const MAX_OPS: usize = 48;
const BARRIER: u64 = 0x5eed_ba55;

#[derive(Arbitrary, Debug)]
struct Session {
    ops: Vec<Op>,
}

#[derive(Arbitrary, Debug)]
enum Op {
    /// A well-formed frame on a stream.
    Frame {
        stream: u8,
        frame: Frame,
    },
    /// A stream id, then arbitrary bytes as its frame.
    Raw {
        stream: u8,
        bytes: Vec<u8>,
    },
    /// A whole WebSocket message of arbitrary bytes.
    Message(Vec<u8>),
    /// End a stream.
    Finish(u8),
    Text(String),
}

#[derive(Arbitrary, Debug)]
enum Frame {
    Hello {
        version: u16,
        token: Option<String>,
    },
    Ping(u64),
    /// `room: None` joins the real room.
    Join {
        room: Option<u64>,
        resume: Option<(u64, u64)>,
    },
    Send {
        client_id: u64,
        body: String,
    },
    History {
        before_seq: u64,
        limit: u16,
    },
    Leave,
}

struct Harness {
    runtime: Runtime,
    addr: SocketAddr,
    token: String,
    room: u64,
    _dir: tempfile::TempDir,
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let dir = tempfile::tempdir().expect("temp dir");
        // Through the config file format, so a fuzz run is not held back by the send quota.
        let file = dir.path().join("quibble.toml");
        std::fs::write(
            &file,
            "messages_per_second = 100000\nmessage_burst = 100000\n",
        )
        .expect("write config");
        let mut settings = Loaded::from_file(&file).expect("config file").settings;
        settings.data_dir = dir.path().join("data");
        settings.listen = vec!["127.0.0.1:0".parse().expect("address")];
        let config = settings.into_config().expect("config");
        let (addr, token, room) = runtime.block_on(async {
            let server = Server::bind(config).await.expect("server starts");
            let addr = server.addrs()[0];
            tokio::spawn(server.run(std::future::pending()));
            let login = http(
                addr,
                "/api/signup",
                None,
                r#"{"username":"fuzzer","password":"correct horse battery"}"#,
            )
            .await;
            let token = login["token"].as_str().expect("token").to_owned();
            let room = http(addr, "/api/rooms", Some(&token), r#"{"name":"fuzz"}"#).await;
            (addr, token, room["id"].as_u64().expect("room id"))
        });
        Harness {
            runtime,
            addr,
            token,
            room,
            _dir: dir,
        }
    })
}

/// POST `body` to `path` over a plain HTTP/1.1 connection; the JSON answer.
async fn http(addr: SocketAddr, path: &str, token: Option<&str>, body: &str) -> serde_json::Value {
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: fuzz\r\n{auth}Content-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    tcp.write_all(request.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    tcp.read_to_end(&mut response).await.expect("read");
    let response = String::from_utf8_lossy(&response);
    let (_, json) = response.split_once("\r\n\r\n").expect("an HTTP response");
    serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {response}"))
}

fn frame_message(stream: u8, frame: &ClientFrame) -> Message {
    let encoded = codec::encode(frame).expect("encodable");
    Message::Binary(mux::wrap(u64::from(stream), &encoded).into())
}

impl Op {
    fn message(&self, h: &Harness) -> Message {
        match self {
            Op::Frame { stream, frame } => frame_message(*stream, &frame.to_client(h)),
            Op::Raw { stream, bytes } => {
                Message::Binary(mux::wrap(u64::from(*stream), bytes).into())
            }
            Op::Message(bytes) => Message::Binary(bytes.clone().into()),
            Op::Finish(stream) => Message::Binary(mux::finish(u64::from(*stream)).into()),
            Op::Text(text) => Message::Text(text.as_str().into()),
        }
    }
}

impl Frame {
    fn to_client(&self, h: &Harness) -> ClientFrame {
        match self {
            Frame::Hello { version, token } => ClientFrame::Hello {
                version: *version,
                token: token.clone().unwrap_or_else(|| h.token.clone()),
            },
            Frame::Ping(nonce) => ClientFrame::Ping { nonce: *nonce },
            Frame::Join { room, resume } => ClientFrame::Join {
                conversation: ConversationId(room.unwrap_or(h.room)),
                resume: resume.map(|(epoch, seq)| Cursor { epoch, seq }),
            },
            Frame::Send { client_id, body } => ClientFrame::Send {
                client_id: *client_id,
                body: body.clone(),
            },
            Frame::History { before_seq, limit } => ClientFrame::History {
                before_seq: *before_seq,
                limit: *limit,
            },
            Frame::Leave => ClientFrame::Leave,
        }
    }
}

fuzz_target!(|session: Session| {
    let h = harness();
    h.runtime.block_on(run(h, &session));
});

async fn run(h: &Harness, session: &Session) {
    let url = format!("ws://{}/ws", h.addr);
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("the server still accepts WebSockets");
    let hello = ClientFrame::Hello {
        version: PROTOCOL_VERSION,
        token: h.token.clone(),
    };
    let mut messages = vec![frame_message(0, &hello)];
    messages.extend(session.ops.iter().take(MAX_OPS).map(|op| op.message(h)));
    messages.push(frame_message(0, &ClientFrame::Ping { nonce: BARRIER }));
    for message in messages {
        if ws.send(message).await.is_err() {
            // The server closed the connection: a fine answer to bad input.
            return;
        }
    }
    let answered = tokio::time::timeout(DEADLINE, async {
        while let Some(Ok(message)) = ws.next().await {
            let Message::Binary(data) = message else {
                continue;
            };
            // Whatever the server sends must be well formed.
            match mux::unwrap::<ServerFrame>(&data, usize::MAX) {
                Ok(Envelope::Frame(0, ServerFrame::Pong { nonce: BARRIER })) => return,
                Ok(_) => {}
                Err(e) => panic!("the server sent a malformed frame: {e}"),
            }
        }
    })
    .await;
    assert!(
        answered.is_ok(),
        "the server neither answered the barrier ping nor closed within {DEADLINE:?}"
    );
    let _ = ws.close(None).await;
}
