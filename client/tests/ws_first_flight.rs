//! The native WebSocket dial carries the session's first flight (`Hello` and the `Join`s of
//! `ClientOptions::join`) in the upgrade request's write, against the real server: a relay on
//! loopback in front of it holds each connection until the request and both frames arrived
//! (so a client that waited for the `101` would never get through) and records everything the
//! client sends, which shows each frame sent once, on every reconnect too. A refused upgrade
//! still reports the server's error.

use quibble_test_support as support;

use std::io::Cursor;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use quibble_client::{
    Api, Client, ClientError, ClientEvent, ClientOptions, ConversationId, Event, TransportChoice,
};
use quibble_protocol::{ClientFrame, codec, limits::MAX_FRAME_LEN, mux};
use support::TestServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

const PASSWORD: &str = "correct horse battery";
const WAIT: Duration = Duration::from_secs(20);

/// A client frame, as recorded: its WebSocket stream id and the frame.
type Sent = (u64, ClientFrame);

/// The complete data frames after the request in `bytes` (client → server), decoded.
fn frames(bytes: &[u8]) -> Vec<Sent> {
    let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Vec::new();
    };
    let mut cursor = Cursor::new(&bytes[end + 4..]);
    let mut found = Vec::new();
    loop {
        let start = cursor.position();
        let Ok(Some((header, len))) = FrameHeader::parse(&mut cursor) else {
            return found;
        };
        let from = usize::try_from(cursor.position()).unwrap();
        let to = from + usize::try_from(len).unwrap();
        let Some(payload) = cursor.get_ref().get(from..to) else {
            cursor.set_position(start);
            return found;
        };
        cursor.set_position(to as u64);
        if header.opcode != OpCode::Data(Data::Binary) {
            continue;
        }
        let mask = header.mask.expect("client frames are masked");
        let data: Vec<u8> = payload
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ mask[i % 4])
            .collect();
        let (id, frame) = mux::split(&data).expect("a mux envelope");
        if frame.is_empty() {
            continue; // a stream's finish
        }
        let frame = codec::decode_exact::<ClientFrame>(frame, MAX_FRAME_LEN).expect("a frame");
        found.push((id, frame));
    }
}

/// One relayed connection: what the client sent before the relay first contacted the server
/// (the first flight, if the client pipelined it), and everything it sent.
#[derive(Default)]
struct Recorded {
    before_upgrade: Vec<u8>,
    all: Vec<u8>,
}

/// A relay in front of the server: per connection it reads the client's bytes until the
/// request and `want` frames are in (within `WAIT`, else it drops the connection), only then
/// connects to the server, and relays both ways, recording what the client sends.
struct Relay {
    port: u16,
    connections: Arc<Mutex<Vec<Arc<Mutex<Recorded>>>>>,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Relay {
    async fn start(server_port: u16, want: usize) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections: Arc<Mutex<Vec<Arc<Mutex<Recorded>>>>> = Arc::default();
        let links: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (conns, all_links) = (connections.clone(), links.clone());
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let recorded = Arc::new(Mutex::new(Recorded::default()));
                conns.lock().unwrap().push(recorded.clone());
                let link = tokio::spawn(relay(client, server_port, want, recorded));
                all_links.lock().unwrap().push(link);
            }
        });
        Relay {
            port,
            connections,
            links,
            accept,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn recorded(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.connections
            .lock()
            .unwrap()
            .iter()
            .map(|r| {
                let r = r.lock().unwrap();
                (r.before_upgrade.clone(), r.all.clone())
            })
            .collect()
    }

    /// Cut every relayed connection (the client sees its connection drop).
    fn cut(&self) {
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

async fn relay(
    mut client: TcpStream,
    server_port: u16,
    want: usize,
    recorded: Arc<Mutex<Recorded>>,
) {
    let mut first = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let gathered = tokio::time::timeout(WAIT, async {
        while frames(&first).len() < want {
            let n = client.read(&mut buf).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            first.extend_from_slice(&buf[..n]);
        }
        Ok::<_, std::io::Error>(())
    })
    .await;
    if !matches!(gathered, Ok(Ok(()))) {
        return; // never pipelined: the client's connection is dropped unanswered
    }
    {
        let mut r = recorded.lock().unwrap();
        r.before_upgrade = first.clone();
        r.all = first.clone();
    }
    let Ok(server) = TcpStream::connect(("127.0.0.1", server_port)).await else {
        return;
    };
    let (mut from_client, mut to_client) = client.into_split();
    let (mut from_server, mut to_server) = server.into_split();
    if to_server.write_all(&first).await.is_err() {
        return;
    }
    let upstream = async {
        loop {
            match from_client.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    recorded.lock().unwrap().all.extend_from_slice(&buf[..n]);
                    if to_server.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        }
    };
    let downstream = tokio::io::copy(&mut from_server, &mut to_client);
    tokio::select! {
        () = upstream => {}
        _ = downstream => {}
    }
}

/// The first event `pick` accepts (others are skipped), within [`WAIT`].
async fn wait_for<T>(client: &Client, mut pick: impl FnMut(ClientEvent) -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let event = tokio::time::timeout_at(deadline, client.next_event())
            .await
            .expect("the awaited event in time")
            .expect("the client is still running");
        if let Some(found) = pick(event) {
            return found;
        }
    }
}

async fn message_body(client: &Client, room: ConversationId) -> String {
    wait_for(client, |e| match e {
        ClientEvent::Session(Event::Message(m)) if m.conversation == room => Some(m.body),
        _ => None,
    })
    .await
}

fn is_hello(sent: &Sent) -> bool {
    matches!(sent, (0, ClientFrame::Hello { .. }))
}

fn is_join_of(sent: &Sent, room: ConversationId) -> bool {
    matches!(sent, (id, ClientFrame::Join { conversation, .. }) if *id != 0 && *conversation == room)
}

#[tokio::test]
async fn hello_and_join_go_out_with_the_upgrade_request_once_per_connection() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path());
    let api = Api::new(&server.url()).unwrap();
    let ann = api.signup("ann", PASSWORD).await.unwrap().token;
    let ben = api.signup("ben", PASSWORD).await.unwrap().token;
    let general = api.create_room(&ann, "General").await.unwrap().id;
    // Ben reaches the server directly, Ann only through the relay.
    let ben = Client::connect(
        ClientOptions::new(server.url(), &ben)
            .transport(TransportChoice::WebSocket)
            .join(general),
    )
    .await
    .unwrap();
    let port = server
        .url()
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches('/')
        .parse()
        .unwrap();
    let relay = Relay::start(port, 2).await;
    let ann = tokio::time::timeout(
        WAIT,
        Client::connect(
            ClientOptions::new(relay.url(), &ann)
                .transport(TransportChoice::WebSocket)
                .join(general),
        ),
    )
    .await
    .expect("connected in time")
    .expect("connected through the relay: Hello and Join came with the request");
    wait_for(&ann, |e| match e {
        ClientEvent::Session(Event::Joined { conversation, .. }) if conversation == general => {
            Some(())
        }
        _ => None,
    })
    .await;
    ben.send(general, "m0");
    assert_eq!(message_body(&ann, general).await, "m0");

    // A reconnect carries that attempt's Hello and Join (from Ann's cursor) the same way;
    // what was said meanwhile arrives once, in order.
    relay.cut();
    ben.send(general, "m1");
    ben.send(general, "m2");
    assert_eq!(message_body(&ann, general).await, "m1");
    assert_eq!(message_body(&ann, general).await, "m2");
    ann.close().await;

    let connections = relay.recorded();
    assert!(connections.len() >= 2, "{} connections", connections.len());
    for (i, (before_upgrade, all)) in connections.iter().enumerate() {
        let first = frames(before_upgrade);
        assert!(before_upgrade.starts_with(b"GET /ws"), "connection {i}");
        assert!(
            is_hello(&first[0]) && is_join_of(&first[1], general),
            "connection {i}: the first flight is Hello then Join: {first:?}"
        );
        let sent = frames(all);
        let hellos = sent.iter().filter(|s| is_hello(s)).count();
        let joins = sent.iter().filter(|s| is_join_of(s, general)).count();
        assert_eq!((hellos, joins), (1, 1), "connection {i} sent {sent:?}");
    }
    let (_, second) = &connections[1];
    assert!(
        matches!(
            frames(second)[1],
            (
                _,
                ClientFrame::Join {
                    resume: Some(_),
                    ..
                }
            )
        ),
        "the rejoin resumes from Ann's cursor: {:?}",
        frames(second)
    );
    ben.close().await;
}

#[tokio::test]
async fn a_refused_upgrade_still_reports_the_servers_answer() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with_config(dir.path(), "max_unauthenticated_per_ip = 0\n");
    let api = Api::new(&server.url()).unwrap();
    let ann = api.signup("ann", PASSWORD).await.unwrap().token;
    let general = api.create_room(&ann, "General").await.unwrap().id;
    let options = ClientOptions::new(server.url(), &ann)
        .transport(TransportChoice::WebSocket)
        .join(general);
    let result = tokio::time::timeout(WAIT, Client::connect(options))
        .await
        .expect("an answer, not a hang");
    let Err(ClientError::Connect(error)) = result else {
        panic!("expected a connect error, got {result:?}");
    };
    let text = error.to_string();
    assert!(
        text.contains("HTTP 429") && text.contains("are signing in"),
        "{text}"
    );
}
