//! The network edge against the real binary: HTTP deadlines (idle, slowloris, lying bodies),
//! per-address and unauthenticated connection budgets on both transports, refusing promptly
//! at the open-file limit, tokens kept out of trace logs, and the separate metrics listener.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use quibble_protocol::{ClientFrame, PROTOCOL_VERSION, ServerFrame};
use serde_json::Value;
use support::{RawPeer, TestServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite;

/// Start a server with `toml` as its config file.
fn start(dir: &tempfile::TempDir, toml: &str, wrapper: &[&str], extra: &[&str]) -> TestServer {
    TestServer::start_configured(wrapper, &dir.path().join("data"), toml, extra)
}

/// A TCP connection to the server from `source` (any 127/8 address is loopback).
async fn connect_from(source: &str, port: u16) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(source.parse().unwrap(), 0))
        .unwrap();
    socket
        .connect(SocketAddr::from(([127, 0, 0, 1], port)))
        .await
        .unwrap()
}

/// Read until the server closes the connection; returns what it sent and when it closed.
async fn read_to_close(stream: &mut TcpStream, within: Duration) -> Option<(String, Duration)> {
    let started = Instant::now();
    let mut got = Vec::new();
    let closed = tokio::time::timeout(within, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    closed.ok().map(|()| {
        (
            String::from_utf8_lossy(&got).into_owned(),
            started.elapsed(),
        )
    })
}

/// Send one raw request and read the response head and body (the server closes after it).
async fn raw_request(source: &str, port: u16, request: &[u8]) -> (u16, String, Value) {
    let mut stream = connect_from(source, port).await;
    let _ = stream.write_all(request).await;
    let (text, _) = read_to_close(&mut stream, Duration::from_secs(5))
        .await
        .expect("an answer and a close within 5 s");
    parse_response(&text)
}

fn parse_response(text: &str) -> (u16, String, Value) {
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"));
    let body = serde_json::from_str(body).unwrap_or(Value::Null);
    (status, head.to_ascii_lowercase(), body)
}

fn ws_url(server: &TestServer) -> String {
    format!("ws://127.0.0.1:{}/ws", server.port)
}

/// A WebSocket handshake from `source`: the socket, or the refusal's status and body.
async fn websocket_from(
    source: &str,
    server: &TestServer,
) -> Result<tokio_tungstenite::WebSocketStream<TcpStream>, (u16, Option<String>, Value)> {
    let stream = connect_from(source, server.port).await;
    match tokio_tungstenite::client_async(ws_url(server), stream).await {
        Ok((ws, _)) => Ok(ws),
        Err(tungstenite::Error::Http(response)) => {
            let retry = response
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_owned());
            let body = response
                .body()
                .as_ref()
                .and_then(|b| serde_json::from_slice(b).ok())
                .unwrap_or(Value::Null);
            Err((response.status().as_u16(), retry, body))
        }
        Err(e) => panic!("websocket handshake failed oddly: {e}"),
    }
}

/// Wait until the server closes `ws` (it never sent Hello).
async fn closed_within(ws: &mut tokio_tungstenite::WebSocketStream<TcpStream>, within: Duration) {
    use futures_util::StreamExt;
    tokio::time::timeout(within, async {
        while let Some(Ok(message)) = ws.next().await {
            if message.is_close() {
                return;
            }
        }
    })
    .await
    .expect("the server closed the connection in time");
}

fn hello_frame(token: &str) -> tungstenite::Message {
    let frame = quibble_protocol::codec::encode(&ClientFrame::Hello {
        version: PROTOCOL_VERSION,
        token: token.to_owned(),
    })
    .unwrap();
    tungstenite::Message::Binary(quibble_protocol::mux::wrap(0, &frame).into())
}

#[tokio::test]
async fn idle_slowloris_and_lying_bodies_are_cut_within_their_deadlines() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(
        &dir,
        "http_header_timeout_ms = 1000\nhttp_body_timeout_ms = 1000\n",
        &[],
        &[],
    );
    let port = server.port;

    // 20 idle connections and 20 that trickle a request head, a byte at a time.
    let mut idle = Vec::new();
    let mut slow = Vec::new();
    for _ in 0..20 {
        idle.push(connect_from("127.0.0.1", port).await);
        slow.push(connect_from("127.0.0.1", port).await);
    }
    let trickle = tokio::spawn(async move {
        let head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        for byte in head.iter().cycle().take(40) {
            for s in &mut slow {
                let _ = s.write_all(&[*byte]).await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        slow
    });
    for s in &mut idle {
        let (_, after) = read_to_close(s, Duration::from_secs(5))
            .await
            .expect("an idle connection is closed");
        assert!(after < Duration::from_secs(3), "closed after {after:?}");
    }
    for s in &mut trickle.await.unwrap() {
        assert!(
            read_to_close(s, Duration::from_secs(1)).await.is_some(),
            "a slowloris connection is closed by its header deadline"
        );
    }

    // A keep-alive connection that goes quiet after a response is closed too.
    let mut kept = connect_from("127.0.0.1", port).await;
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let (text, after) = read_to_close(&mut kept, Duration::from_secs(5))
        .await
        .expect("an idle keep-alive connection is closed");
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(after < Duration::from_secs(3), "closed after {after:?}");

    // A body claimed at 10 GB is refused at once; one that never arrives gets 408.
    let started = Instant::now();
    let (status, head, body) = raw_request(
        "127.0.0.1",
        port,
        b"POST /api/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
          Content-Length: 10000000000\r\n\r\n",
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (413, Some("payload_too_large"))
    );
    assert!(head.contains("connection: close"), "{head}");
    assert!(started.elapsed() < Duration::from_secs(1));
    let started = Instant::now();
    let (status, _, body) = raw_request(
        "127.0.0.1",
        port,
        b"POST /api/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
          Content-Length: 100\r\n\r\n{\"user",
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (408, Some("request_timeout"))
    );
    assert!(started.elapsed() < Duration::from_secs(3));

    // The server still serves.
    let (status, _) = server.api().call("GET", "/healthz", None, None).await;
    assert_eq!(status, 200);
    assert!(server.stop().success());
}

#[tokio::test]
async fn one_address_cannot_take_every_slot_and_unauthenticated_connections_get_a_small_share() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(
        &dir,
        "max_connections = 40\nmax_connections_per_ip = 6\nmax_unauthenticated_connections = 4\n\
         max_unauthenticated_per_ip = 3\nhello_timeout_ms = 1000\n",
        &[],
        &[],
    );
    let port = server.port;
    let token = server.api().signup("alice").await;

    // Six connections from one address fill its share; the seventh is refused with 429.
    let mut held = Vec::new();
    for _ in 0..6 {
        held.push(connect_from("127.0.0.1", port).await);
    }
    let (status, head, body) = raw_request(
        "127.0.0.1",
        port,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await;
    assert_eq!(status, 429, "{head}");
    assert!(head.contains("retry-after: "), "{head}");
    assert_eq!(body["error"]["code"], "too_many_connections");
    // Another address still gets in.
    let (status, _, _) = raw_request(
        "127.0.0.2",
        port,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 200);
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Unauthenticated realtime connections: three per address, four in all.
    let mut silent = Vec::new();
    for _ in 0..3 {
        silent.push(
            websocket_from("127.0.0.1", &server)
                .await
                .expect("admitted"),
        );
    }
    let (status, retry, body) = websocket_from("127.0.0.1", &server).await.err().unwrap();
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (429, Some("too_many_connections"))
    );
    assert!(retry.is_some());
    silent.push(
        websocket_from("127.0.0.2", &server)
            .await
            .expect("admitted"),
    );
    let (status, retry, body) = websocket_from("127.0.0.3", &server).await.err().unwrap();
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (503, Some("overloaded"))
    );
    assert!(retry.is_some());
    // WebTransport counts against the same pool: refused too.
    let hash = server.api().cert_hash().await;
    let config = wtransport::ClientConfig::builder()
        .with_bind_address("127.0.0.3:0".parse().unwrap())
        .with_server_certificate_hashes([wtransport::tls::Sha256Digest::new(hash)])
        .build();
    let endpoint = wtransport::Endpoint::client(config).unwrap();
    let refused = endpoint
        .connect(format!("https://127.0.0.1:{port}/wt"))
        .await;
    assert!(
        refused.is_err(),
        "a WebTransport session beyond the share is refused"
    );

    // Silent connections are closed by the (short) Hello deadline, freeing the pool.
    let started = Instant::now();
    for ws in &mut silent {
        closed_within(ws, Duration::from_secs(4)).await;
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    drop(silent);
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Signed-in connections leave the unauthenticated pool: more than its share stay open.
    use futures_util::{SinkExt, StreamExt};
    let mut signed_in = Vec::new();
    for _ in 0..4 {
        let mut ws = websocket_from("127.0.0.1", &server)
            .await
            .expect("admitted");
        ws.send(hello_frame(&token)).await.unwrap();
        let welcome = loop {
            match ws.next().await.expect("a frame").unwrap() {
                tungstenite::Message::Binary(data) => break data,
                _ => continue,
            }
        };
        match quibble_protocol::mux::unwrap::<ServerFrame>(&welcome, usize::MAX).unwrap() {
            quibble_protocol::mux::Envelope::Frame(0, ServerFrame::Welcome { .. }) => {}
            other => panic!("expected Welcome, got {other:?}"),
        }
        signed_in.push(ws);
    }
    let mut peer = RawPeer::webtransport(&server).await;
    assert!(matches!(
        peer.hello(&token).await,
        ServerFrame::Welcome { .. }
    ));
    // ...until the address's share of all connections is reached.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _sixth = connect_from("127.0.0.1", port).await;
    let (status, _, _) = websocket_from("127.0.0.1", &server).await.err().unwrap();
    assert_eq!(status, 429);

    let mut stream = connect_from("127.0.0.2", port).await;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let (metrics, _) = read_to_close(&mut stream, Duration::from_secs(5))
        .await
        .unwrap();
    for reason in [
        "address_full",
        "unauthenticated_address_full",
        "unauthenticated_full",
    ] {
        assert!(
            metrics.contains(&format!("reason=\"{reason}\"")),
            "{reason} counted:\n{metrics}"
        );
    }
    peer.close().await;
    drop(signed_in);
    assert!(server.stop().success());
}

#[tokio::test]
async fn at_the_open_file_limit_the_server_refuses_at_once_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    // 160 descriptors: the server keeps 64 in reserve, so it admits 96 connections.
    let server = start(
        &dir,
        "http_header_timeout_ms = 30000\nmax_connections_per_ip = 1000\n",
        &["prlimit", "--nofile=160:160"],
        &[],
    );
    let port = server.port;
    assert!(
        server
            .log()
            .contains("TCP connections (HTTP, WebSocket) limited to 96"),
        "{}",
        server.log()
    );
    let carol = server.api().signup("carol").await;
    let hash = server.api().cert_hash().await;
    // The API calls' keep-alive connections count against the budget until the server sees
    // them close: let it, or one held connection is refused now and its slot freed later
    // admits a request below (which then hangs, kept alive).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut held = Vec::new();
    for _ in 0..96 {
        held.push(connect_from("127.0.0.1", port).await);
    }
    // Beyond the budget, /healthz and a WebSocket upgrade get 503 promptly.
    for _ in 0..40 {
        let started = Instant::now();
        let (status, head, body) = raw_request(
            "127.0.0.1",
            port,
            b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
        )
        .await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (503, Some("overloaded"))
        );
        assert!(head.contains("retry-after: "), "{head}");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
    }
    let (status, _, _) = websocket_from("127.0.0.1", &server).await.err().unwrap();
    assert_eq!(status, 503);
    // WebTransport sessions share the UDP socket: the open-file limit does not refuse them.
    let mut session = RawPeer::webtransport_pinned(&server, hash).await;
    assert!(matches!(
        session.hello(&carol).await,
        ServerFrame::Welcome { .. }
    ));
    session.close().await;
    assert!(
        !server.log().contains("Too many open files"),
        "{}",
        server.log()
    );

    drop(held);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, _) = server.api().call("GET", "/healthz", None, None).await;
    assert_eq!(status, 200, "recovered once connections closed");
    let mut peer = RawPeer::websocket(&server).await;
    let token = server.api().signup("alice").await;
    assert!(matches!(
        peer.hello(&token).await,
        ServerFrame::Welcome { .. }
    ));
    peer.close().await;
    assert!(server.stop().success());
}

#[tokio::test]
async fn tokens_and_passwords_never_reach_the_log_even_at_trace_level() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_via(
        &[
            "env",
            "RUST_LOG=trace,tungstenite=trace,axum::rejection=trace",
        ],
        &dir.path().join("data"),
        &[],
    );
    let api = server.api();
    let password = "correct horse";
    let signup_token = api.signup("alice").await;
    let token = api.login("alice").await;
    let room = api.create_room(&token, "lobby").await;
    // A refused body too (axum logs rejections at trace).
    let refused = reqwest::Client::new()
        .post(format!("{}/api/login", server.http()))
        .header("content-type", "application/json")
        .body(r#"{"username": "alice", "password": 7}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16() / 100, 4);
    for mut peer in [
        RawPeer::websocket(&server).await,
        RawPeer::webtransport(&server).await,
    ] {
        assert!(matches!(
            peer.hello(&token).await,
            ServerFrame::Welcome { .. }
        ));
        peer.join(1, room, None).await;
        peer.say(1, 1, "hello").await;
        peer.close().await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(server.stop().success());
    let log = std::fs::read_to_string(dir.path().join("data.log")).unwrap();
    assert!(
        log.len() > 10_000,
        "trace logging is on ({} bytes)",
        log.len()
    );
    for secret in [token.as_str(), signup_token.as_str(), password] {
        let hex: String = secret.bytes().map(|b| format!("{b:02x}")).collect();
        assert!(!log.contains(secret), "a secret is in the log");
        assert!(!log.contains(&hex), "a secret is in the log, hex-encoded");
        assert!(
            !log.contains(&format!("{:?}", secret.as_bytes())),
            "a secret is in the log, as bytes"
        );
    }
}

#[tokio::test]
async fn metrics_are_served_only_on_their_own_listener() {
    let dir = tempfile::tempdir().unwrap();
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let metrics_addr = free.local_addr().unwrap();
    drop(free);
    let server = start(
        &dir,
        "",
        &[],
        &["--metrics-listen", &metrics_addr.to_string()],
    );
    let (status, body) = server.api().call("GET", "/metrics", None, None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    let response = reqwest::get(format!("http://{metrics_addr}/metrics"))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let (status, _, _) = raw_request(
        &metrics_addr.ip().to_string(),
        metrics_addr.port(),
        b"GET /api/rooms HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 404, "the metrics listener serves nothing else");
    assert!(server.stop().success());

    // Without the setting, /metrics stays on the public port.
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data"));
    // Prometheus text (every series is listed from the start), not JSON.
    let response = reqwest::get(format!("{}/metrics", server.http()))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn a_peer_that_reads_no_response_is_cut_by_the_write_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir, "http_write_timeout_ms = 1000\n", &[], &[]);
    // Pipelined requests, never a response read: the server's writes stall once the socket
    // buffers are full, and the deadline ends the connection (a reset breaks our writes).
    let mut greedy = connect_from("127.0.0.1", server.port).await;
    let requests = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n".repeat(1000);
    let started = Instant::now();
    let cut = tokio::time::timeout(Duration::from_secs(15), async {
        while greedy.write_all(&requests).await.is_ok() {}
    })
    .await;
    assert!(cut.is_ok(), "the server cut a peer that reads nothing");
    println!("cut after {:?}", started.elapsed());
    let (status, _) = server.api().call("GET", "/healthz", None, None).await;
    assert_eq!(status, 200);
    assert!(server.stop().success());
}

#[tokio::test]
async fn a_quic_peer_that_never_asks_for_a_webtransport_session_is_cut_by_the_handshake_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir, "tls_handshake_timeout_ms = 500\n", &[], &[]);
    let hash = server.api().cert_hash().await;
    // wtransport's client TLS (ALPN h3, the pinned hash) on plain QUIC: the handshake
    // completes, then neither HTTP/3 SETTINGS nor a session request follows, and keep-alives
    // keep the connection from ever idling out.
    let config = wtransport::ClientConfig::builder()
        .with_bind_default()
        .with_server_certificate_hashes([wtransport::tls::Sha256Digest::new(hash)])
        .keep_alive_interval(Some(Duration::from_millis(200)))
        .build();
    let endpoint = wtransport::quinn::Endpoint::client(SocketAddr::from(([127, 0, 0, 1], 0)))
        .expect("a client endpoint");
    let silent = endpoint
        .connect_with(
            config.quic_config().clone(),
            SocketAddr::from(([127, 0, 0, 1], server.port)),
            "127.0.0.1",
        )
        .expect("a connection attempt")
        .await
        .expect("the QUIC handshake");
    let started = Instant::now();
    let closed = tokio::time::timeout(Duration::from_secs(5), silent.closed()).await;
    assert!(
        closed.is_ok(),
        "the server ended a handshake that never finished"
    );
    println!("cut after {:?}: {:?}", started.elapsed(), closed);
    assert!(server.stop().success());
}
