//! Live enforcement against the real server, over both transports: revoked sessions (logout,
//! password change) end the live connections that used them within a second while other
//! sessions stay; a ban cuts the user's connections with `Banned` (older clients:
//! `Unauthorized`) and unban lets them back; an IP ban (IPv4 range, IPv6 address; also one
//! made while the server was stopped) refuses the WebTransport session, the WebSocket upgrade
//! and REST and cuts live connections, until it is removed; the client address comes from
//! `X-Forwarded-For` only when the TCP peer is a trusted proxy (for bans and login limits,
//! which count IPv6 by /64), and connection budgets behind a trusted proxy count each client
//! rather than the proxy.

mod support;

use std::net::IpAddr;

use quibble_protocol::mux::Envelope;
use quibble_protocol::{ClientFrame, ErrorCode, ServerFrame};
use serde_json::{Value, json};
use support::live::{AT_ONCE, ban, cut_with, raw_ws_hello, still_live, welcomed};
use support::{RawPeer, TestServer};
use tokio_tungstenite::tungstenite::Message;

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

/// Signs up `name` and makes them an admin through `quibble admin` (the Unix socket); their
/// token.
async fn admin_token(server: &TestServer, name: &str) -> String {
    let token = server.api().signup(name).await;
    support::promote(server, name);
    token
}

/// A WebTransport session to `host` (a literal address, `[::1]` for IPv6), pinning `hash`.
async fn wt_session(
    host: &str,
    port: u16,
    hash: [u8; 32],
) -> Result<wtransport::Connection, wtransport::error::ConnectingError> {
    let config = wtransport::ClientConfig::builder()
        .with_bind_default()
        .with_server_certificate_hashes([wtransport::tls::Sha256Digest::new(hash)])
        .build();
    let endpoint = wtransport::Endpoint::client(config).expect("client endpoint");
    endpoint.connect(format!("https://{host}:{port}/wt")).await
}

/// The HTTP status of a WebSocket upgrade at `host`, `None` if it was accepted.
async fn ws_refusal(host: &str, port: u16) -> Option<u16> {
    match tokio_tungstenite::connect_async(format!("ws://{host}:{port}/ws")).await {
        Ok(_) => None,
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            Some(response.status().as_u16())
        }
        Err(e) => panic!("WebSocket upgrade failed otherwise: {e}"),
    }
}

/// A request from `source`, optionally with `X-Forwarded-For`; the status and JSON body.
async fn request_from(
    source: &str,
    url: &str,
    forwarded: Option<&str>,
    token: Option<&str>,
) -> (u16, Value) {
    let http = reqwest::Client::builder()
        .local_address(source.parse::<IpAddr>().unwrap())
        .build()
        .unwrap();
    let mut request = http.get(url);
    if let Some(forwarded) = forwarded {
        request = request.header("x-forwarded-for", forwarded);
    }
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn assert_address_banned((status, body): (u16, Value), reason: &str) {
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "address_banned", "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.ends_with(reason), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ban_cuts_the_user_on_both_transports_and_unban_lets_them_back() {
    let dir = tempfile::TempDir::new().unwrap();
    let server = TestServer::start(&dir.path().join("data"));
    let api = server.api();
    let root = admin_token(&server, "root").await;
    let bob = api.signup("bob").await;
    let mut wt = welcomed(&server, false, &bob).await;
    let mut ws = welcomed(&server, true, &bob).await;
    // A client before protocol version 3 cannot decode `Banned`: it is told `Unauthorized`.
    let mut old = RawPeer::websocket(&server).await;
    old.send(
        0,
        &ClientFrame::Hello {
            version: 2,
            token: bob.clone(),
        },
    )
    .await;
    assert!(matches!(
        old.next_frame(0).await,
        ServerFrame::Welcome { version: 2, .. }
    ));
    let mut bystander = welcomed(&server, true, &api.signup("carol").await).await;

    ban(&api, &root, "bob", "spam").await;
    cut_with(&mut wt, ErrorCode::Banned, "banned: spam").await;
    cut_with(&mut ws, ErrorCode::Banned, "banned: spam").await;
    cut_with(&mut old, ErrorCode::Unauthorized, "banned: spam").await;
    still_live(&mut bystander).await;
    // The old token is revoked, and a login is refused while the ban lasts.
    let (status, _) = api.call("GET", "/api/account", Some(&bob), None).await;
    assert_eq!(status, 401);
    let mut again = RawPeer::webtransport(&server).await;
    assert!(matches!(
        again.hello(&bob).await,
        ServerFrame::Error {
            code: ErrorCode::Unauthorized,
            ..
        }
    ));
    let (status, body) = api
        .call(
            "POST",
            "/api/login",
            None,
            Some(json!({"username": "bob", "password": "correct horse"})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("banned")),
        "{body}"
    );

    let (status, body) = api
        .call(
            "POST",
            "/api/users/unban",
            Some(&root),
            Some(json!({"username": "bob"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let fresh = api.login("bob").await;
    let mut back = welcomed(&server, false, &fresh).await;
    still_live(&mut back).await;
    welcomed(&server, true, &fresh).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ipv4_ban_refuses_every_door_and_cuts_live_connections_until_removed() {
    let dir = tempfile::TempDir::new().unwrap();
    let server = TestServer::start(&dir.path().join("data"));
    let api = server.api();
    let alice = api.signup("alice").await;
    let hash = api.cert_hash().await;
    let mut wt = welcomed(&server, false, &alice).await;
    let mut ws = welcomed(&server, true, &alice).await;
    let port = server.port;
    let account = format!("http://127.0.0.1:{port}/api/account");

    // From the operator's socket: the admin is on the banned address too.
    let run = server.admin(&["ip-ban", "add", "127.0.0.0/8", "--reason", "abuse"]);
    assert!(run.ok, "{run:?}");
    let reason = "this address is banned: abuse";
    cut_with(&mut wt, ErrorCode::Banned, reason).await;
    cut_with(&mut ws, ErrorCode::Banned, reason).await;
    assert_address_banned(
        request_from("127.0.0.1", &account, None, Some(&alice)).await,
        reason,
    );
    assert_address_banned(
        api.call(
            "POST",
            "/api/login",
            None,
            Some(json!({"username": "alice", "password": "x"})),
        )
        .await,
        reason,
    );
    assert_eq!(ws_refusal("127.0.0.1", port).await, Some(403));
    assert!(matches!(
        wt_session("127.0.0.1", port, hash).await,
        Err(wtransport::error::ConnectingError::SessionRejected)
    ));
    assert!(
        server
            .log()
            .contains("handshake failed: this address is banned")
    );
    // Health checks stay open.
    assert_eq!(
        request_from(
            "127.0.0.1",
            &format!("http://127.0.0.1:{port}/healthz"),
            None,
            None
        )
        .await
        .0,
        200
    );

    let run = server.admin(&["ip-ban", "remove", "127.0.0.0/8"]);
    assert!(run.ok, "{run:?}");
    assert_eq!(
        request_from("127.0.0.1", &account, None, Some(&alice))
            .await
            .0,
        200
    );
    let mut back = welcomed(&server, false, &alice).await;
    still_live(&mut back).await;
    welcomed(&server, true, &alice).await;
}

type RawWs<S> = tokio_tungstenite::WebSocketStream<S>;

/// A WebSocket (over `host`, a literal address) welcomed with `token`, spoken to directly.
async fn raw_ws_welcomed(
    host: &str,
    port: u16,
    token: &str,
) -> RawWs<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{host}:{port}/ws"))
        .await
        .expect("ws connect");
    raw_ws_hello(&mut ws, token).await;
    ws
}

/// `ws` is still served: a ping on the control stream is answered.
async fn raw_ws_still_live<S>(ws: &mut RawWs<S>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use futures_util::{SinkExt, StreamExt};
    let ping = quibble_protocol::codec::encode(&ClientFrame::Ping { nonce: 5 }).unwrap();
    ws.send(Message::Binary(
        quibble_protocol::mux::wrap(0, &ping).into(),
    ))
    .await
    .unwrap();
    loop {
        let message = tokio::time::timeout(support::WAIT, ws.next())
            .await
            .expect("Pong in time")
            .expect("open")
            .expect("read");
        if let Message::Binary(data) = message
            && let Ok(Envelope::Frame(0, ServerFrame::Pong { nonce: 5 })) =
                quibble_protocol::mux::unwrap::<ServerFrame>(&data, usize::MAX)
        {
            return;
        }
    }
}

/// Waits at most [`AT_ONCE`] for the server to close `ws` with `code`.
async fn raw_ws_cut<S>(ws: &mut RawWs<S>, code: ErrorCode)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use futures_util::StreamExt;
    let closed = tokio::time::timeout(AT_ONCE, async {
        while let Some(Ok(message)) = ws.next().await {
            if let Message::Close(frame) = message {
                return frame.map(|f| u16::from(f.code));
            }
        }
        None
    })
    .await
    .expect("cut in time");
    assert_eq!(closed, Some(code.ws_close_code()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ipv6_ban_refuses_that_address_at_every_door_and_cuts_it_live() {
    let dir = tempfile::TempDir::new().unwrap();
    let server = TestServer::start_with(&dir.path().join("data"), &["--listen", "[::1]:0"]);
    let api = server.api();
    // The admin acts from 127.0.0.1, which the ban does not cover.
    let root = admin_token(&server, "root").await;
    let alice = api.signup("alice").await;
    let hash = api.cert_hash().await;
    let port = server.port;
    let mut v6 = raw_ws_welcomed("[::1]", port, &alice).await;
    let mut v4 = welcomed(&server, true, &alice).await;
    let account = |host: &str| format!("http://{host}:{port}/api/account");
    assert_eq!(
        request_from("::1", &account("[::1]"), None, Some(&alice))
            .await
            .0,
        200
    );

    let (status, body) = api
        .call(
            "POST",
            "/api/admin/ip-bans",
            Some(&root),
            Some(json!({"network": "::1", "reason": "v6 abuse"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let reason = "this address is banned: v6 abuse";
    raw_ws_cut(&mut v6, ErrorCode::Banned).await;
    assert_address_banned(
        request_from("::1", &account("[::1]"), None, Some(&alice)).await,
        reason,
    );
    assert_eq!(ws_refusal("[::1]", port).await, Some(403));
    assert!(matches!(
        wt_session("[::1]", port, hash).await,
        Err(wtransport::error::ConnectingError::SessionRejected)
    ));
    // IPv4 is not touched.
    still_live(&mut v4).await;
    assert_eq!(
        request_from("127.0.0.1", &account("127.0.0.1"), None, Some(&alice))
            .await
            .0,
        200
    );
    assert!(wt_session("127.0.0.1", port, hash).await.is_ok());

    let (status, body) = api
        .call(
            "POST",
            "/api/admin/ip-bans/remove",
            Some(&root),
            Some(json!({"network": "::1"})),
        )
        .await;
    assert_eq!((status, &body["changed"]), (200, &json!(true)), "{body}");
    assert_eq!(
        request_from("::1", &account("[::1]"), None, Some(&alice))
            .await
            .0,
        200
    );
    raw_ws_welcomed("[::1]", port, &alice).await;
    assert!(wt_session("[::1]", port, hash).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_change_cuts_every_connection_on_a_revoked_session() {
    let dir = tempfile::TempDir::new().unwrap();
    let server = TestServer::start(&dir.path().join("data"));
    let api = server.api();
    let mine = api.signup("alice").await;
    let other = api.login("alice").await;
    let mut bystander = welcomed(&server, true, &api.signup("bob").await).await;
    let mut own = welcomed(&server, true, &mine).await;
    let mut other_wt = welcomed(&server, false, &other).await;
    let mut other_ws = welcomed(&server, true, &other).await;
    let (status, body) = api
        .call(
            "POST",
            "/api/account/password",
            Some(&mine),
            Some(json!({"current": "correct horse", "new": "battery staple"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // Every session of the user is revoked, the caller's too (it gets a fresh token): so is
    // every connection that used them.
    for peer in [&mut other_wt, &mut other_ws, &mut own] {
        cut_with(peer, ErrorCode::Unauthorized, "password changed").await;
    }
    still_live(&mut bystander).await;
    let fresh = body["token"].as_str().expect("token");
    let mut back = welcomed(&server, false, fresh).await;
    still_live(&mut back).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_banned_forwarded_address_is_refused_only_behind_a_trusted_proxy() {
    let dir = tempfile::TempDir::new().unwrap();
    let server = TestServer::start_with_config(
        &dir.path().join("data"),
        "trusted_proxies = [\"127.0.0.1\"]\n",
    );
    let token = server.api().signup("alice").await;
    // A live WebSocket through the proxy for 192.0.2.9, and one straight from 127.0.0.2.
    let mut proxied = upgrade_from("127.0.0.1", server.port, "192.0.2.9")
        .await
        .unwrap();
    let mut direct = upgrade_from("127.0.0.2", server.port, "192.0.2.9")
        .await
        .unwrap();
    for ws in [&mut proxied, &mut direct] {
        raw_ws_hello(ws, &token).await;
    }
    let run = server.admin(&["ip-ban", "add", "192.0.2.0/24", "--reason", "forwarded"]);
    assert!(run.ok, "{run:?}");
    raw_ws_cut(&mut proxied, ErrorCode::Banned).await;
    let health = format!("http://127.0.0.1:{}/api/cert", server.port);
    // Through the trusted proxy, the forwarded client is the one banned...
    assert_address_banned(
        request_from("127.0.0.1", &health, Some("192.0.2.9"), None).await,
        "this address is banned: forwarded",
    );
    // ...also when it hides behind an address of its own choosing on the left...
    assert_address_banned(
        request_from("127.0.0.1", &health, Some("198.51.100.1, 192.0.2.9"), None).await,
        "this address is banned: forwarded",
    );
    // ...and the WebSocket upgrade too.
    assert_eq!(
        upgrade_from("127.0.0.1", server.port, "192.0.2.9")
            .await
            .err(),
        Some(403)
    );
    // Another forwarded client is served.
    assert_eq!(
        request_from("127.0.0.1", &health, Some("198.51.100.1"), None)
            .await
            .0,
        200
    );
    // From a peer that is not trusted the header means nothing: not banned, and its live
    // connection stays.
    assert_eq!(
        request_from("127.0.0.2", &health, Some("192.0.2.9"), None)
            .await
            .0,
        200
    );
    raw_ws_still_live(&mut direct).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ip_bans_made_while_the_server_was_stopped_hold_from_its_start() {
    let dir = tempfile::TempDir::new().unwrap();
    let data = dir.path().join("data");
    let server = TestServer::start(&data);
    let token = server.api().signup("alice").await;
    assert!(server.stop().success());
    // On the stopped data directory: no server to tell.
    let run = support::quibble_admin(
        &data,
        &["ip-ban", "add", "127.0.0.1", "--reason", "offline"],
    );
    assert!(run.ok, "{run:?}");

    let server = TestServer::start(&data);
    let account = format!("http://127.0.0.1:{}/api/account", server.port);
    assert_address_banned(
        request_from("127.0.0.1", &account, None, Some(&token)).await,
        "this address is banned: offline",
    );
    assert_eq!(ws_refusal("127.0.0.1", server.port).await, Some(403));
    let run = server.admin(&["ip-ban", "remove", "127.0.0.1"]);
    assert!(run.ok, "{run:?}");
    assert_eq!(
        request_from("127.0.0.1", &account, None, Some(&token))
            .await
            .0,
        200
    );
}
