//! Test support: the real `quibble` binary on an ephemeral loopback port with a temp data
//! dir, a small JSON API helper, and raw WebTransport/WebSocket peers that speak frames
//! directly (so tests can also send what a well-behaved client never would).

#![allow(dead_code)] // each test binary uses a different part of this module

pub mod live;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use quibble_protocol::codec::{self, Decoder};
use quibble_protocol::mux::{self, Envelope};
use quibble_protocol::{ClientFrame, ConversationId, PROTOCOL_VERSION, ServerFrame};
use serde_json::{Value, json};

pub mod fleet;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

pub const WAIT: Duration = Duration::from_secs(10);

/// What /proc/PID/status says about a (running) process.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcStatus {
    /// Resident memory, bytes.
    pub rss: u64,
    pub threads: u64,
}

/// Read a process's resident memory and thread count.
pub fn proc_status(pid: u32) -> ProcStatus {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("process status");
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
    };
    ProcStatus {
        rss: field("VmRSS:") * 1024,
        threads: field("Threads:"),
    }
}

/// A running `quibble serve`, killed on drop.
pub struct TestServer {
    child: Option<Child>,
    pub port: u16,
    pub data_dir: PathBuf,
    pub stderr_log: PathBuf,
}

impl TestServer {
    pub fn start(data_dir: &Path) -> TestServer {
        Self::start_with(data_dir, &[])
    }

    /// Start with `toml` as the config file (written next to the data directory).
    pub fn start_with_config(data_dir: &Path, toml: &str) -> TestServer {
        Self::start_configured(&[], data_dir, toml, &[])
    }

    /// Start under `wrapper` with `toml` as the config file and extra arguments.
    pub fn start_configured(
        wrapper: &[&str],
        data_dir: &Path,
        toml: &str,
        extra: &[&str],
    ) -> TestServer {
        let config = data_dir.with_extension("toml");
        std::fs::write(&config, toml).expect("write config");
        let mut args = vec!["--config", config.to_str().expect("utf-8 path")];
        args.extend_from_slice(extra);
        Self::start_via(wrapper, data_dir, &args)
    }

    /// Start with extra `quibble serve` arguments.
    pub fn start_with(data_dir: &Path, extra: &[&str]) -> TestServer {
        Self::start_via(&[], data_dir, extra)
    }

    /// Start under a wrapper command (e.g. `prlimit --nofile=N:N`, `env RUST_LOG=trace`).
    pub fn start_via(wrapper: &[&str], data_dir: &Path, extra: &[&str]) -> TestServer {
        let stderr_log = data_dir.with_extension("log");
        let log = std::fs::File::create(&stderr_log).expect("create log");
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(env!("CARGO_BIN_EXE_quibble"));
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_quibble")),
        };
        let mut child = command
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .env("RUST_LOG", "info,quibble_server=debug")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn quibble");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let Some(first) = lines.next() else {
            let status = child.wait().ok();
            let log = std::fs::read_to_string(&stderr_log).unwrap_or_default();
            panic!("server printed nothing (exit {status:?}); its log:\n{log}");
        };
        let first = first.expect("read stdout");
        let url = first
            .strip_prefix("quibble listening on ")
            .unwrap_or_else(|| panic!("unexpected first line: {first}"));
        let port: u16 = url
            .trim_end_matches('/')
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {url}"));
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        TestServer {
            child: Some(child),
            port,
            data_dir: data_dir.to_owned(),
            stderr_log,
        }
    }

    /// The server process's id (e.g. to read its memory from /proc).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn http(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn api(&self) -> Api {
        Api {
            base: self.http(),
            http: reqwest::Client::new(),
        }
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn stop(mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let pid = child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        for _ in 0..200 {
            if let Some(status) = child.try_wait().expect("wait") {
                let log = self.log();
                assert!(!log.contains("panicked"), "the server panicked:\n{log}");
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        panic!("server did not stop within 10 s of SIGTERM");
    }

    /// SIGKILL the server by its PID (a crash: no goodbye to its clients) and reap it.
    pub fn kill(mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().expect("SIGKILL the server");
        child.wait().expect("reap the server");
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }

    /// `quibble admin ARGS --data-dir <this server's>`: through its admin socket while it runs.
    pub fn admin(&self, args: &[&str]) -> AdminRun {
        quibble_admin(&self.data_dir, args)
    }
}

/// What a `quibble admin` run printed, and whether it succeeded.
#[derive(Debug)]
pub struct AdminRun {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `quibble admin ARGS --data-dir DATA_DIR` (the real binary) and waits for it.
pub fn quibble_admin(data_dir: &Path, args: &[&str]) -> AdminRun {
    let output = Command::new(env!("CARGO_BIN_EXE_quibble"))
        .arg("admin")
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run quibble admin");
    AdminRun {
        ok: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Makes `username` an admin with `quibble admin promote` (accounts start as users).
pub fn promote(server: &TestServer, username: &str) {
    let run = server.admin(&["promote", username]);
    assert!(run.ok, "quibble admin promote {username}: {run:?}");
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- server log ----\n{}", self.log());
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Minimal JSON API client for tests.
pub struct Api {
    pub base: String,
    pub http: reqwest::Client,
}

impl Api {
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).expect("JSON body")
        };
        (status, value)
    }

    /// Sign up and return the token.
    pub async fn signup(&self, username: &str) -> String {
        let (status, body) = self
            .call(
                "POST",
                "/api/signup",
                None,
                Some(json!({"username": username, "password": "correct horse"})),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["token"].as_str().expect("token").to_owned()
    }

    pub async fn login(&self, username: &str) -> String {
        let (status, body) = self
            .call(
                "POST",
                "/api/login",
                None,
                Some(json!({"username": username, "password": "correct horse"})),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body["token"].as_str().expect("token").to_owned()
    }

    /// Joins `room` as the holder of `token` (the REST way).
    pub async fn join_room(&self, token: &str, room: ConversationId) {
        let path = format!("/api/rooms/{}/join", room.0);
        let (status, body) = self.call("POST", &path, Some(token), None).await;
        assert_eq!(status, 200, "{body}");
    }

    pub async fn create_room(&self, token: &str, name: &str) -> ConversationId {
        let (status, body) = self
            .call(
                "POST",
                "/api/rooms",
                Some(token),
                Some(json!({"name": name})),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        ConversationId(body["id"].as_u64().expect("id"))
    }

    /// The users behind `ta` and `tb` (named `a` and `b`) become friends; returns their DM.
    pub async fn befriend(&self, ta: &str, tb: &str, a: &str, b: &str) -> ConversationId {
        let add = |token, username| {
            self.call(
                "POST",
                "/api/users/add",
                Some(token),
                Some(json!({ "username": username })),
            )
        };
        let (status, body) = add(ta, b).await;
        assert_eq!((status, body["status"].as_str()), (200, Some("requested")));
        let (status, body) = add(tb, a).await;
        assert_eq!(
            (status, body["status"].as_str()),
            (200, Some("accepted")),
            "{body}"
        );
        ConversationId(body["user"]["dm"].as_u64().expect("dm id"))
    }

    pub async fn cert_hash(&self) -> [u8; 32] {
        let (_, body) = self.call("GET", "/api/cert", None, None).await;
        let hex = body["sha256_hex"].as_str().expect("hash");
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("hex");
        }
        out
    }
}

/// Whether a server frame is a per-user event of the control stream (conversation list,
/// friends, receipts, presence, typing) rather than an answer.
pub fn is_user_event(frame: &ServerFrame) -> bool {
    matches!(
        frame,
        ServerFrame::Conversations { .. }
            | ServerFrame::ConversationUpdated(_)
            | ServerFrame::ConversationRemoved { .. }
            | ServerFrame::ConversationActivity { .. }
            | ServerFrame::Receipt { .. }
            | ServerFrame::Friend { .. }
            | ServerFrame::Presence { .. }
            | ServerFrame::Typing { .. }
    )
}

/// What a raw peer received: the stream id (0 = control) and the frame, or the stream's end.
#[derive(Debug)]
pub enum Received {
    Frame(u64, ServerFrame),
    Finished(u64),
    /// The connection closed, with the close code when there was one.
    Closed(Option<u32>),
}

/// A raw protocol peer over WebSocket or WebTransport. Stream ids are ours: 0 is control,
/// conversation streams are numbered by the test.
pub struct RawPeer {
    inner: RawInner,
    /// Messages `say` skipped while waiting for its ack, for `next_message`.
    backlog: std::collections::VecDeque<(u64, quibble_protocol::ChatMessage)>,
    /// Frames put aside: per-user events while waiting for something else, and other frames
    /// while waiting for an event.
    stash: std::collections::VecDeque<Received>,
    pub received: mpsc::UnboundedReceiver<Received>,
    events: mpsc::UnboundedSender<Received>,
}

/// A WebSocket's sending half, over plain TCP or TLS.
type WsSink = std::pin::Pin<
    Box<dyn futures_util::Sink<Message, Error = tokio_tungstenite::tungstenite::Error> + Send>,
>;

enum RawInner {
    Ws(WsSink),
    Wt {
        conn: wtransport::Connection,
        streams: std::collections::HashMap<u64, wtransport::SendStream>,
    },
}

impl RawPeer {
    pub async fn websocket(server: &TestServer) -> RawPeer {
        RawPeer::websocket_at(server.port)
            .await
            .expect("ws connect")
    }

    /// A WebSocket peer to the server on loopback port `port`, or why it could not connect.
    pub async fn websocket_at(port: u16) -> Result<RawPeer, String> {
        let url = format!("ws://127.0.0.1:{port}/ws");
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .map_err(|e| format!("ws connect to port {port}: {e}"))?;
        Ok(RawPeer::from_websocket(ws))
    }

    /// A WebSocket peer over TLS (`wss`) to loopback port `port`, trusting what `connector`
    /// trusts, or why it could not connect.
    pub async fn websocket_tls(
        port: u16,
        connector: &tokio_rustls::TlsConnector,
    ) -> Result<RawPeer, String> {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| format!("tcp connect to port {port}: {e}"))?;
        let name =
            wtransport::tls::rustls::pki_types::ServerName::try_from("127.0.0.1").expect("a name");
        let tls = connector
            .connect(name, tcp)
            .await
            .map_err(|e| format!("tls to port {port}: {e}"))?;
        let (ws, _) = tokio_tungstenite::client_async(format!("wss://127.0.0.1:{port}/ws"), tls)
            .await
            .map_err(|e| format!("wss upgrade on port {port}: {e}"))?;
        Ok(RawPeer::from_websocket(ws))
    }

    fn from_websocket<S>(ws: tokio_tungstenite::WebSocketStream<S>) -> RawPeer
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (sink, mut source) = ws.split();
        let (tx, rx) = mpsc::unbounded_channel();
        let events = tx.clone();
        tokio::spawn(async move {
            while let Some(msg) = source.next().await {
                match msg {
                    Ok(Message::Binary(data)) => {
                        let got = match mux::unwrap::<ServerFrame>(&data, usize::MAX) {
                            Ok(Envelope::Frame(id, frame)) => Received::Frame(id, frame),
                            Ok(Envelope::Finish(id)) => Received::Finished(id),
                            Err(e) => panic!("server sent a bad frame: {e}"),
                        };
                        let _ = tx.send(got);
                    }
                    Ok(Message::Close(frame)) => {
                        let _ = tx.send(Received::Closed(
                            frame.map(|f| u32::from(u16::from(f.code))),
                        ));
                        return;
                    }
                    Ok(_) => {}
                    Err(_) => {
                        let _ = tx.send(Received::Closed(None));
                        return;
                    }
                }
            }
            let _ = tx.send(Received::Closed(None));
        });
        RawPeer {
            inner: RawInner::Ws(Box::pin(sink)),
            backlog: Default::default(),
            stash: Default::default(),
            received: rx,
            events,
        }
    }

    pub async fn webtransport(server: &TestServer) -> RawPeer {
        let hash = server.api().cert_hash().await;
        RawPeer::webtransport_pinned(server, hash).await
    }

    /// A WebTransport session to a certificate whose hash is already known (no HTTP request).
    pub async fn webtransport_pinned(server: &TestServer, hash: [u8; 32]) -> RawPeer {
        RawPeer::webtransport_at(server.port, hash)
            .await
            .expect("wt connect")
    }

    /// A WebTransport session to the server on loopback port `port` whose certificate has
    /// `hash`, or why it could not connect.
    pub async fn webtransport_at(port: u16, hash: [u8; 32]) -> Result<RawPeer, String> {
        let config = wtransport::ClientConfig::builder()
            .with_bind_default()
            .with_server_certificate_hashes([wtransport::tls::Sha256Digest::new(hash)])
            .build();
        RawPeer::webtransport_with(port, config).await
    }

    /// A WebTransport session to loopback port `port` with the client settings `config`
    /// (e.g. trusting a test CA), or why it could not connect.
    pub async fn webtransport_with(
        port: u16,
        config: wtransport::ClientConfig,
    ) -> Result<RawPeer, String> {
        let endpoint = wtransport::Endpoint::client(config).expect("client endpoint");
        let url = format!("https://127.0.0.1:{port}/wt");
        let conn = endpoint
            .connect(url)
            .await
            .map_err(|e| format!("wt connect to port {port}: {e}"))?;
        let (tx, rx) = mpsc::unbounded_channel();
        let closed_conn = conn.clone();
        let closed_tx = tx.clone();
        tokio::spawn(async move {
            let err = closed_conn.closed().await;
            let code = match err {
                wtransport::error::ConnectionError::ApplicationClosed(close) => {
                    Some(close.code().into_inner() as u32)
                }
                _ => None,
            };
            let _ = closed_tx.send(Received::Closed(code));
        });
        Ok(RawPeer {
            inner: RawInner::Wt {
                conn,
                streams: Default::default(),
            },
            backlog: Default::default(),
            stash: Default::default(),
            received: rx,
            events: tx,
        })
    }

    /// Send raw bytes as one frame's worth on `stream` (opening it if new).
    pub async fn send_bytes(&mut self, stream: u64, bytes: &[u8]) {
        self.try_send_bytes(stream, bytes)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// [`RawPeer::send_bytes`], or why it failed (e.g. the connection is gone).
    pub async fn try_send_bytes(&mut self, stream: u64, bytes: &[u8]) -> Result<(), String> {
        match &mut self.inner {
            RawInner::Ws(sink) => {
                sink.send(Message::Binary(mux::wrap(stream, bytes).into()))
                    .await
                    .map_err(|e| format!("ws send: {e}"))?;
            }
            RawInner::Wt { conn, streams } => {
                if let std::collections::hash_map::Entry::Vacant(slot) = streams.entry(stream) {
                    let (send, mut recv) = conn
                        .open_bi()
                        .await
                        .map_err(|e| format!("wt open: {e}"))?
                        .await
                        .map_err(|e| format!("wt opened: {e}"))?;
                    let tx = self.events.clone();
                    tokio::spawn(async move {
                        let mut decoder = Decoder::with_max(usize::MAX);
                        let mut buf = vec![0u8; 64 * 1024];
                        loop {
                            match recv.read(&mut buf).await {
                                Ok(Some(n)) => {
                                    decoder.push(&buf[..n]);
                                    while let Ok(Some(frame)) = decoder.next_frame::<ServerFrame>()
                                    {
                                        let _ = tx.send(Received::Frame(stream, frame));
                                    }
                                }
                                _ => {
                                    let _ = tx.send(Received::Finished(stream));
                                    return;
                                }
                            }
                        }
                    });
                    slot.insert(send);
                }
                let send = streams.get_mut(&stream).expect("stream");
                send.write_all(bytes)
                    .await
                    .map_err(|e| format!("wt write: {e}"))?;
                send.flush().await.map_err(|e| format!("wt flush: {e}"))?;
            }
        }
        Ok(())
    }

    // --- issue 9 (setup helper): pipelined connection setup
    /// A WebSocket peer whose upgrade request and `first` frames go out in one TCP write,
    /// before the server's `101` answer.
    pub async fn websocket_pipelined(server: &TestServer, first: &[(u64, ClientFrame)]) -> RawPeer {
        use tokio::io::AsyncReadExt;
        use tokio_tungstenite::tungstenite::protocol::Role;
        use tokio_tungstenite::tungstenite::protocol::frame::Frame;
        use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

        let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", server.port))
            .await
            .expect("tcp connect");
        let mut flight = format!(
            "GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: Upgrade\r\n\
             Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
            server.port
        )
        .into_bytes();
        for (stream, frame) in first {
            let payload = mux::wrap(*stream, &codec::encode(frame).expect("encode"));
            let mut frame = Frame::message(payload, OpCode::Data(Data::Binary), true);
            frame.header_mut().mask = Some([7, 1, 3, 9]);
            frame.format(&mut flight).expect("format");
        }
        tcp.write_all(&flight).await.expect("write the flight");
        let mut head = Vec::new();
        let end = loop {
            if let Some(at) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout(WAIT, tcp.read(&mut chunk))
                .await
                .expect("no upgrade answer in time")
                .expect("read the upgrade answer");
            assert!(n > 0, "the server closed before answering the upgrade");
            head.extend_from_slice(&chunk[..n]);
        };
        assert!(
            head.starts_with(b"HTTP/1.1 101"),
            "upgrade refused: {}",
            String::from_utf8_lossy(&head)
        );
        let ws = tokio_tungstenite::WebSocketStream::from_partially_read(
            tokio_tungstenite::MaybeTlsStream::Plain(tcp),
            head.split_off(end),
            Role::Client,
            None,
        )
        .await;
        RawPeer::from_websocket(ws)
    }

    /// Send `frames` over WebSocket in one flush (one TCP write), without waiting for any
    /// answer.
    pub async fn send_flight(&mut self, frames: &[(u64, ClientFrame)]) {
        let RawInner::Ws(sink) = &mut self.inner else {
            panic!("a flight is a WebSocket peer's");
        };
        for (stream, frame) in frames {
            let bytes = codec::encode(frame).expect("encode");
            sink.feed(Message::Binary(mux::wrap(*stream, &bytes).into()))
                .await
                .expect("ws feed");
        }
        sink.flush().await.expect("ws flush");
    }

    /// Everything received, in arrival order, until the connection closes or `until` accepts
    /// a received item (which is included).
    pub async fn collect_until(
        &mut self,
        mut until: impl FnMut(&Received) -> bool,
    ) -> Vec<Received> {
        let mut got: Vec<Received> = self.stash.drain(..).collect();
        if got
            .iter()
            .any(|r| until(r) || matches!(r, Received::Closed(_)))
        {
            return got;
        }
        loop {
            let next = self.receive("the connection").await;
            let done = until(&next) || matches!(next, Received::Closed(_));
            got.push(next);
            if done {
                return got;
            }
        }
    }
    // --- end issue 9 (setup helper)

    pub async fn send(&mut self, stream: u64, frame: &ClientFrame) {
        let bytes = codec::encode(frame).expect("encode");
        self.send_bytes(stream, &bytes).await;
    }

    /// Close our side of `stream` (one the server ended), as a client that is done with it
    /// does: over WebTransport a stream counts against the session's stream limit until both
    /// sides are closed.
    pub async fn finish(&mut self, stream: u64) {
        match &mut self.inner {
            RawInner::Ws(sink) => {
                let _ = sink.send(Message::Binary(mux::finish(stream).into())).await;
            }
            RawInner::Wt { streams, .. } => {
                if let Some(mut send) = streams.remove(&stream) {
                    let _ = send.finish().await;
                }
            }
        }
    }

    /// [`RawPeer::send`], or why it failed (e.g. the connection is gone).
    pub async fn try_send(&mut self, stream: u64, frame: &ClientFrame) -> Result<(), String> {
        let bytes = codec::encode(frame).expect("encode");
        self.try_send_bytes(stream, &bytes).await
    }

    /// The next thing received on any stream (frames put aside first, in arrival order), or
    /// `None` when nothing comes within `wait`.
    pub async fn next_within(&mut self, wait: Duration) -> Option<Received> {
        if let Some(got) = self.stash.pop_front() {
            return Some(got);
        }
        match tokio::time::timeout(wait, self.received.recv()).await {
            Ok(got) => Some(got.unwrap_or(Received::Closed(None))),
            Err(_) => None,
        }
    }

    pub async fn hello(&mut self, token: &str) -> ServerFrame {
        self.send(
            0,
            &ClientFrame::Hello {
                version: PROTOCOL_VERSION,
                token: token.to_owned(),
            },
        )
        .await;
        self.next_frame(0).await
    }

    /// The next frame on `stream` (other streams' frames are kept for later).
    pub async fn next_frame(&mut self, stream: u64) -> ServerFrame {
        match self.next_on(stream).await {
            Received::Frame(_, frame) => frame,
            other => panic!("expected a frame on stream {stream}, got {other:?}"),
        }
    }

    /// The next event on `stream` (a frame or its end), or the connection's close. Per-user
    /// events on the control stream (see [`is_user_event`]) are put aside for
    /// [`RawPeer::next_event`].
    pub async fn next_on(&mut self, stream: u64) -> Received {
        if let Some(i) = self.stash.iter().position(|got| match got {
            Received::Frame(id, frame) => *id == stream && !is_user_event(frame),
            Received::Finished(id) => *id == stream,
            Received::Closed(_) => true,
        }) && let Some(got) = self.stash.remove(i)
        {
            return got;
        }
        loop {
            let got = self.receive(&format!("stream {stream}")).await;
            match &got {
                Received::Frame(_, frame) if is_user_event(frame) => self.stash.push_back(got),
                Received::Frame(id, _) | Received::Finished(id) if *id != stream => continue,
                _ => return got,
            }
        }
    }

    /// The next per-user event on the control stream (other frames are kept for `next_on`).
    pub async fn next_event(&mut self) -> ServerFrame {
        if let Some(i) = self
            .stash
            .iter()
            .position(|got| matches!(got, Received::Frame(_, frame) if is_user_event(frame)))
            && let Some(Received::Frame(_, frame)) = self.stash.remove(i)
        {
            return frame;
        }
        loop {
            match self.receive("the control stream").await {
                Received::Frame(_, frame) if is_user_event(&frame) => return frame,
                Received::Closed(code) => panic!("closed ({code:?}) while waiting for an event"),
                other => self.stash.push_back(other),
            }
        }
    }

    /// The first per-user event that `pick` accepts; the others stay for later calls.
    pub async fn event_where<T>(&mut self, mut pick: impl FnMut(&ServerFrame) -> Option<T>) -> T {
        for i in 0..self.stash.len() {
            if let Received::Frame(_, frame) = &self.stash[i]
                && is_user_event(frame)
                && let Some(found) = pick(frame)
            {
                self.stash.remove(i);
                return found;
            }
        }
        loop {
            let got = self.receive("the control stream").await;
            if let Received::Frame(_, frame) = &got
                && is_user_event(frame)
                && let Some(found) = pick(frame)
            {
                return found;
            }
            if let Received::Closed(code) = got {
                panic!("closed ({code:?}) while waiting for an event");
            }
            self.stash.push_back(got);
        }
    }

    async fn receive(&mut self, what: &str) -> Received {
        tokio::time::timeout(WAIT, self.received.recv())
            .await
            .unwrap_or_else(|_| panic!("nothing on {what} within {WAIT:?}"))
            .expect("peer task ended")
    }

    /// Join on `stream` and collect the `Joined` frame and every message up to `head_seq`.
    pub async fn join(
        &mut self,
        stream: u64,
        conversation: ConversationId,
        resume: Option<quibble_protocol::Cursor>,
    ) -> (ServerFrame, Vec<quibble_protocol::ChatMessage>) {
        self.send(
            stream,
            &ClientFrame::Join {
                conversation,
                resume,
            },
        )
        .await;
        let joined = self.next_frame(stream).await;
        let ServerFrame::Joined {
            head_seq, from_seq, ..
        } = joined
        else {
            panic!("expected Joined, got {joined:?}");
        };
        let mut messages = Vec::new();
        for _ in from_seq..head_seq {
            match self.next_frame(stream).await {
                ServerFrame::Message(m) => messages.push(m),
                other => panic!("expected a replayed message, got {other:?}"),
            }
        }
        (joined, messages)
    }

    /// Send a message and wait for its ack, skipping the echo; returns the acked seq.
    pub async fn say(&mut self, stream: u64, client_id: u64, body: &str) -> u64 {
        self.send(
            stream,
            &ClientFrame::Send {
                client_id,
                body: body.to_owned(),
            },
        )
        .await;
        loop {
            match self.next_frame(stream).await {
                ServerFrame::Sent {
                    client_id: id, seq, ..
                } if id == client_id => return seq,
                ServerFrame::Message(m) => self.backlog.push_back((stream, m)),
                other => panic!("expected Sent, got {other:?}"),
            }
        }
    }

    /// The next live message on `stream`, skipping acks.
    pub async fn next_message(&mut self, stream: u64) -> quibble_protocol::ChatMessage {
        if let Some(i) = self.backlog.iter().position(|(s, _)| *s == stream)
            && let Some((_, m)) = self.backlog.remove(i)
        {
            return m;
        }
        loop {
            match self.next_frame(stream).await {
                ServerFrame::Message(m) => return m,
                ServerFrame::Sent { .. } => {}
                other => panic!("expected a message, got {other:?}"),
            }
        }
    }

    pub fn is_websocket(&self) -> bool {
        matches!(self.inner, RawInner::Ws(_))
    }

    /// Over WebSocket: `frame` and the close frame in one flush (one TCP write).
    pub async fn send_and_close(self, stream: u64, frame: &ClientFrame) {
        let RawInner::Ws(mut sink) = self.inner else {
            panic!("send_and_close is a WebSocket peer's");
        };
        let bytes = codec::encode(frame).expect("encode");
        sink.feed(Message::Binary(mux::wrap(stream, &bytes).into()))
            .await
            .expect("ws feed");
        sink.feed(Message::Close(None))
            .await
            .expect("ws feed close");
        let _ = sink.flush().await;
    }

    pub async fn close(self) {
        match self.inner {
            RawInner::Ws(mut sink) => {
                let _ = sink.close().await;
            }
            RawInner::Wt { conn, .. } => conn.close(wtransport::VarInt::from_u32(0), b"bye"),
        }
    }
}
