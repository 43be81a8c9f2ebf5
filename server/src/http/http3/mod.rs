//! HTTP/3 (hyperium `h3` on quinn): the page and the JSON API on a UDP port of their own, with a
//! configured certificate only, through the same axum router as HTTP/1.1. Each new QUIC
//! connection first gets an admission [`Slot`] from the server's budgets (global and per
//! address, like a TCP connection, but no descriptor: the endpoint's socket carries them all);
//! a refused one is refused at QUIC level. An admitted one must finish its QUIC handshake and
//! HTTP/3 setup within the TLS handshake deadline; then each request stream is served on a
//! task of its own ([`request`]), its head due within the header deadline and at most
//! [`MAX_HEAD`] bytes. A connection with no request in flight for the header deadline is sent
//! GOAWAY and closed (as HTTP/1.1 ends idle keep-alive connections); on shutdown every
//! connection is sent GOAWAY, its requests in flight get [`SHUTDOWN_GRACE`] to finish, then it
//! is closed. The QUIC settings (requests at once, windows, idle timeout) are [`endpoint`]'s.

pub mod body;
pub mod endpoint;
pub mod request;

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use tokio::task::JoinSet;
use tokio::time::timeout;
use wtransport::quinn;

pub use endpoint::Http3Endpoints;

use crate::admission::Slot;
use crate::state::AppState;

/// Largest request head (QPACK-decoded field section) a request may send.
pub const MAX_HEAD: u64 = 32 * 1024;
/// How long a connection's requests in flight may take to finish once shutdown began.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// The admission and metrics label.
const TRANSPORT: &str = "http3";

/// Accept and serve HTTP/3 connections on every endpoint until shutdown.
pub async fn serve(state: AppState, endpoints: Http3Endpoints, router: Router) {
    let mut loops = JoinSet::new();
    for endpoint in endpoints.endpoints() {
        loops.spawn(accept_loop(state.clone(), endpoint.clone(), router.clone()));
    }
    while loops.join_next().await.is_some() {}
}

async fn accept_loop(state: AppState, endpoint: quinn::Endpoint, router: Router) {
    loop {
        let incoming = tokio::select! {
            biased;
            _ = state.shutting_down() => return,
            incoming = endpoint.accept() => incoming,
        };
        let Some(incoming) = incoming else { return };
        let peer = incoming.remote_address();
        // Banned addresses get the router's 403 with its reason, as over HTTP/1.1.
        match state.admission.admit_shared(peer.ip(), TRANSPORT) {
            Ok(slot) => {
                tokio::spawn(connection(
                    state.clone(),
                    router.clone(),
                    incoming,
                    peer,
                    slot,
                ));
            }
            Err(refusal) => {
                tracing::debug!(%peer, "HTTP/3 connection refused: {refusal}");
                incoming.refuse();
            }
        }
    }
}

/// Why a connection's accept loop ended.
#[derive(Debug)]
enum End {
    Shutdown,
    Idle,
    /// The peer sent GOAWAY and its requests are done, or the connection failed.
    Peer,
}

async fn connection(
    state: AppState,
    router: Router,
    incoming: quinn::Incoming,
    peer: SocketAddr,
    slot: Slot,
) {
    let limits = state.limits.clone();
    let handshake = async {
        let conn = incoming.accept()?.await?;
        let h3 = h3::server::builder()
            .max_field_section_size(MAX_HEAD)
            .build::<_, bytes::Bytes>(h3_quinn::Connection::new(conn.clone()))
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok::<_, std::io::Error>((conn, h3))
    };
    let (conn, mut h3) = match timeout(limits.tls_handshake_timeout, handshake).await {
        Ok(Ok(pair)) => pair,
        Ok(Err(e)) => {
            tracing::debug!(%peer, "HTTP/3 handshake failed: {e}");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "HTTP/3 handshake timed out");
            return;
        }
    };
    metrics::counter!(crate::metrics::HTTP3_CONNECTIONS).increment(1);
    let idle = limits.http_header_timeout;
    let mut requests = JoinSet::new();
    let end = loop {
        tokio::select! {
            biased;
            _ = state.shutting_down() => break End::Shutdown,
            accepted = h3.accept() => match accepted {
                Ok(Some(resolver)) => {
                    let context = request::Context {
                        router: router.clone(),
                        peer,
                        slot: slot.clone(),
                        write_stall: limits.http_write_timeout,
                    };
                    requests.spawn(one_request(resolver, context, limits.http_header_timeout));
                }
                Ok(None) => break End::Peer,
                Err(e) => {
                    tracing::debug!(%peer, "HTTP/3 connection ended: {e}");
                    break End::Peer;
                }
            },
            Some(_) = requests.join_next(), if !requests.is_empty() => {}
            _ = tokio::time::sleep(idle), if requests.is_empty() => break End::Idle,
        }
    };
    tracing::trace!(%peer, ?end, "HTTP/3 connection closing");
    // GOAWAY (what was accepted is still served), then the requests in flight get their grace.
    if !matches!(end, End::Peer) {
        let _ = timeout(SHUTDOWN_GRACE, h3.shutdown(0)).await;
    }
    let _ = timeout(SHUTDOWN_GRACE, async {
        while requests.join_next().await.is_some() {}
    })
    .await;
    requests.abort_all();
    conn.close(quinn::VarInt::from_u32(0x100), b""); // H3_NO_ERROR
    drop(h3);
    drop(slot);
}

/// Read one request's head within `head_deadline`, then serve it.
async fn one_request(
    resolver: h3::server::RequestResolver<h3_quinn::Connection, bytes::Bytes>,
    context: request::Context,
    head_deadline: Duration,
) {
    let peer = context.peer;
    let (head, stream) = match timeout(head_deadline, resolver.resolve_request()).await {
        Ok(Ok(resolved)) => resolved,
        Ok(Err(e)) => {
            tracing::debug!(%peer, "HTTP/3 request head unreadable: {e}");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "HTTP/3 request head not sent within {head_deadline:?}");
            return;
        }
    };
    if let Err(e) = request::serve(context, head, stream).await {
        tracing::debug!(%peer, "HTTP/3 request failed: {e}");
    }
}
