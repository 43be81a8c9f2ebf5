//! Live enforcement against the real server, over both transports: revoked sessions (logout)
//! end the live connections that used them within a second while the user's other sessions
//! stay; the client address comes from `X-Forwarded-For` only when the TCP peer is a trusted
//! proxy, per-address login limits count IPv6 by /64, and connection budgets behind a trusted
//! proxy count each client rather than the proxy.

mod support;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use quibble_protocol::{ClientFrame, ErrorCode, ServerFrame};
use serde_json::{Value, json};
use support::{RawPeer, Received, TestServer};

/// How soon a cut must reach the peer.
const AT_ONCE: Duration = Duration::from_secs(1);

/// A peer over WebTransport or WebSocket, welcomed with `token`.
async fn welcomed(server: &TestServer, websocket: bool, token: &str) -> RawPeer {
    let mut peer = if websocket {
        RawPeer::websocket(server).await
    } else {
        RawPeer::webtransport(server).await
    };
    let welcome = peer.hello(token).await;
    assert!(
        matches!(welcome, ServerFrame::Welcome { .. }),
        "expected Welcome, got {welcome:?}"
    );
    peer
}

/// The close code `code` is on `peer`'s transport.
fn close_code(peer: &RawPeer, code: ErrorCode) -> u32 {
    if peer.is_websocket() {
        u32::from(code.ws_close_code())
    } else {
        code.as_u32()
    }
}

/// Waits for the server to end `peer`'s connection, at most [`AT_ONCE`]: the control stream's
/// last frame is `Error { code, reason }` and the connection closes with `code`.
async fn cut_with(peer: &mut RawPeer, code: ErrorCode, reason: &str) {
    let started = Instant::now();
    let mut error = None;
    loop {
        let left = AT_ONCE.saturating_sub(started.elapsed());
        let got = tokio::time::timeout(left, peer.next_on(0))
            .await
            .unwrap_or_else(|_| panic!("not cut within {AT_ONCE:?} (so far: {error:?})"));
        match got {
            Received::Frame(0, ServerFrame::Error { code: c, reason: r }) => error = Some((c, r)),
            Received::Frame(_, ServerFrame::Pong { .. }) | Received::Finished(_) => {}
            Received::Closed(closed) => {
                assert_eq!(error, Some((code, reason.to_owned())));
                assert_eq!(closed, Some(close_code(peer, code)));
                return;
            }
            other => panic!("unexpected while waiting for the cut: {other:?}"),
        }
    }
}

/// `peer` is still served: a ping is answered.
async fn still_live(peer: &mut RawPeer) {
    peer.send(0, &ClientFrame::Ping { nonce: 77 }).await;
    match peer.next_on(0).await {
        Received::Frame(0, ServerFrame::Pong { nonce: 77 }) => {}
        other => panic!("expected Pong, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_ends_every_live_connection_of_that_session_at_once_and_no_other() {
    let dir = tempfile::TempDir::new().unwrap();
    let server = TestServer::start(&dir.path().join("data"));
    let api = server.api();
    let token = api.signup("alice").await;
    let other = api.login("alice").await;
    let mut wt = welcomed(&server, false, &token).await;
    let mut ws = welcomed(&server, true, &token).await;
    let mut kept_wt = welcomed(&server, false, &other).await;
    let mut kept_ws = welcomed(&server, true, &other).await;

    let (status, body) = api.call("POST", "/api/logout", Some(&token), None).await;
    assert_eq!(status, 204, "{body}");
    cut_with(&mut wt, ErrorCode::Unauthorized, "signed out").await;
    cut_with(&mut ws, ErrorCode::Unauthorized, "signed out").await;

    // The same user's other session is untouched, on both transports.
    still_live(&mut kept_wt).await;
    still_live(&mut kept_ws).await;
    // The revoked token opens nothing any more.
    let mut again = RawPeer::websocket(&server).await;
    assert!(matches!(
        again.hello(&token).await,
        ServerFrame::Error {
            code: ErrorCode::Unauthorized,
            ..
        }
    ));
    let (status, _) = api.call("GET", "/api/account", Some(&token), None).await;
    assert_eq!(status, 401);
    let (status, _) = api.call("GET", "/api/account", Some(&other), None).await;
    assert_eq!(status, 200);
}

/// A wrong-password login for `username` from `source`, with `forwarded` as
/// `X-Forwarded-For`; the status.
async fn failed_login(port: u16, source: &str, forwarded: &str, username: &str) -> u16 {
    let source: IpAddr = source.parse().unwrap();
    let http = reqwest::Client::builder()
        .local_address(source)
        .build()
        .unwrap();
    let response = http
        .post(format!("http://127.0.0.1:{port}/api/login"))
        .header("x-forwarded-for", forwarded)
        .json(&json!({"username": username, "password": "wrong password"}))
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    let body: Value = response.json().await.expect("JSON");
    assert!(matches!(status, 401 | 429), "{status} {body}");
    status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_for_counts_only_from_a_trusted_proxy_and_ipv6_counts_by_64() {
    let dir = tempfile::TempDir::new().unwrap();
    let server = TestServer::start_with_config(
        &dir.path().join("data"),
        "trusted_proxies = [\"127.0.0.1\"]\n",
    );
    server.api().signup("alice").await;
    let port = server.port;
    // Behind the trusted proxy (127.0.0.1): ten failures from 2001:db8::1 spend that address's
    // budget for the account...
    for _ in 0..10 {
        assert_eq!(
            failed_login(port, "127.0.0.1", "2001:db8::1", "alice").await,
            401
        );
    }
    assert_eq!(
        failed_login(port, "127.0.0.1", "2001:db8::1", "alice").await,
        429
    );
    // ...and of its whole /64, whatever the client wrote to the left of the proxy's entry...
    assert_eq!(
        failed_login(port, "127.0.0.1", "192.0.2.1, 2001:db8::2", "alice").await,
        429
    );
    // ...while the next /64 has its own.
    assert_eq!(
        failed_login(port, "127.0.0.1", "2001:db8:0:1::1", "alice").await,
        401
    );
    // From a peer that is not trusted (127.0.0.2), the header is ignored: every failure counts
    // against 127.0.0.2, whatever address the header names.
    for n in 0..10 {
        let forwarded = format!("2001:db8:0:{}::1", n + 10);
        assert_eq!(
            failed_login(port, "127.0.0.2", &forwarded, "alice").await,
            401
        );
    }
    assert_eq!(
        failed_login(port, "127.0.0.2", "2001:db8:0:99::1", "alice").await,
        429
    );
}

/// A WebSocket upgrade from `source` with `X-Forwarded-For: forwarded`: the socket, or the
/// refusal's status.
async fn upgrade_from(
    source: &str,
    port: u16,
    forwarded: &str,
) -> Result<tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>, u16> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket
        .bind(std::net::SocketAddr::new(source.parse().unwrap(), 0))
        .unwrap();
    let stream = socket
        .connect(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
        .await
        .expect("connect");
    let mut request = format!("ws://127.0.0.1:{port}/ws")
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("x-forwarded-for", forwarded.parse().unwrap());
    match tokio_tungstenite::client_async(request, stream).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            Err(response.status().as_u16())
        }
        Err(e) => panic!("upgrade failed otherwise: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_connection_budgets_count_each_client_not_the_proxy() {
    let dir = tempfile::TempDir::new().unwrap();
    let server = TestServer::start_with_config(
        &dir.path().join("data"),
        "trusted_proxies = [\"127.0.0.1\"]\nmax_connections_per_ip = 2\n",
    );
    let port = server.port;
    let mut held = Vec::new();
    // Through the proxy: two connections of one client, then that client is full...
    for _ in 0..2 {
        held.push(
            upgrade_from("127.0.0.1", port, "198.51.100.1")
                .await
                .unwrap(),
        );
    }
    assert_eq!(
        upgrade_from("127.0.0.1", port, "198.51.100.1").await.err(),
        Some(429)
    );
    // ...while other clients go on through the same proxy, past its own address's share.
    for n in 2..5 {
        let client = format!("198.51.100.{n}");
        held.push(upgrade_from("127.0.0.1", port, &client).await.unwrap());
    }
    // A peer that is not trusted is one address, whatever it forwards.
    held.push(
        upgrade_from("127.0.0.2", port, "203.0.113.1")
            .await
            .unwrap(),
    );
    held.push(
        upgrade_from("127.0.0.2", port, "203.0.113.2")
            .await
            .unwrap(),
    );
    assert_eq!(
        upgrade_from("127.0.0.2", port, "203.0.113.3").await.err(),
        Some(429)
    );
    drop(held);
}
