//! Live connections as moderation sees them: a welcomed peer, waiting for the server to cut
//! one (its last control frame and its close code), and checking one is still served.

use std::time::{Duration, Instant};

use quibble_protocol::{ClientFrame, ErrorCode, ServerFrame};

use serde_json::json;

use super::{Api, RawPeer, Received, TestServer};

/// How soon a cut must reach the peer.
pub const AT_ONCE: Duration = Duration::from_secs(1);

/// A peer over WebTransport or WebSocket, welcomed with `token`.
pub async fn welcomed(server: &TestServer, websocket: bool, token: &str) -> RawPeer {
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
pub fn close_code(peer: &RawPeer, code: ErrorCode) -> u32 {
    if peer.is_websocket() {
        u32::from(code.ws_close_code())
    } else {
        code.as_u32()
    }
}

/// Waits for the server to end `peer`'s connection, at most [`AT_ONCE`]: the control stream's
/// last frame is `Error { code, reason }` and the connection closes with `code`.
pub async fn cut_with(peer: &mut RawPeer, code: ErrorCode, reason: &str) {
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
pub async fn still_live(peer: &mut RawPeer) {
    peer.send(0, &ClientFrame::Ping { nonce: 77 }).await;
    match peer.next_on(0).await {
        Received::Frame(0, ServerFrame::Pong { nonce: 77 }) => {}
        other => panic!("expected Pong, got {other:?}"),
    }
}

/// `admin` bans `username` with `reason` through `api`.
pub async fn ban(api: &Api, admin: &str, username: &str, reason: &str) {
    let (status, body) = api
        .call(
            "POST",
            "/api/users/ban",
            Some(admin),
            Some(json!({"username": username, "reason": reason})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

/// Says `Hello` with `token` on `ws` and waits for `Welcome`.
pub async fn raw_ws_hello<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>, token: &str)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use futures_util::{SinkExt, StreamExt};
    use quibble_protocol::mux::Envelope;
    use tokio_tungstenite::tungstenite::Message;
    let hello = quibble_protocol::codec::encode(&ClientFrame::Hello {
        version: quibble_protocol::PROTOCOL_VERSION,
        token: token.to_owned(),
    })
    .unwrap();
    ws.send(Message::Binary(
        quibble_protocol::mux::wrap(0, &hello).into(),
    ))
    .await
    .unwrap();
    loop {
        let message = tokio::time::timeout(super::WAIT, ws.next())
            .await
            .expect("Welcome in time")
            .expect("open")
            .expect("read");
        if let Message::Binary(data) = message
            && let Ok(Envelope::Frame(0, ServerFrame::Welcome { .. })) =
                quibble_protocol::mux::unwrap::<ServerFrame>(&data, usize::MAX)
        {
            return;
        }
    }
}
