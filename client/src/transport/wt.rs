//! The WebTransport transport (`https://host:port/wt` over QUIC, wtransport): the control
//! stream is the first bidirectional stream, opened while connecting; each conversation stream
//! is another client-opened bidirectional stream. Frames are written length-prefixed as
//! encoded and read back with `protocol::codec::Decoder`. The server certificate is trusted
//! either through the client's roots (`tls.rs`: an `https` server or a CA file) or by pinning
//! the hash `/api/cert` publishes (fetched anew for every connection, since the server rotates
//! its certificate); a certificate refused is [`TransportError::Certificate`]. The session runs on an
//! endpoint (UDP socket) leased from a [`WtEndpoints`] pool, shared with other sessions.
//!
//! A handshake is tried up to [`HANDSHAKE_TRIES`] times, after a short jittered pause, when it
//! fails the way wtransport 0.7's SETTINGS race makes it fail. wtransport's driver reads the
//! peer's HTTP/3 SETTINGS frame inside a `select!` loop that drops a half-read frame whenever
//! another branch wins (say the session request's stream arrives); it then reads on from the
//! middle of the frame and closes the connection with an HTTP/3 error (`H3_FRAME_UNEXPECTED`
//! 0x105, `H3_EXCESSIVE_LOAD` 0x107, ...) or waits for bytes that never come. It takes a frame
//! that arrives split over two packets, and wtransport writes it in three writes (type,
//! length, payload), which a loaded sender (many handshakes at once) sends apart now and then.
//! So a handshake closed with an HTTP/3 error code by either side, or not done within
//! [`HANDSHAKE_TIMEOUT`], is tried again (the last try has what is left of the dial's time);
//! every other failure (a refused session, a TLS error) is final.

use std::ops::RangeInclusive;
use std::time::Duration;

use quibble_protocol::session::StreamKey;
use quibble_protocol::{Decoder, ErrorCode, ServerFrame};
use rand::Rng;
use tokio::sync::mpsc;
use tokio::time::{sleep, timeout};
use wtransport::endpoint::endpoint_side;
use wtransport::error::{ConnectingError, ConnectionError, StreamReadError};
use wtransport::tls::Sha256Digest;
use wtransport::{Connection, Endpoint, RecvStream, SendStream, VarInt};

use super::streams::{CONTROL_ID, INBOUND_QUEUE, Inbound, StreamTable};
use super::wt_endpoints::{EndpointKey, Family, Lease, Pinning, WtEndpoints};
use super::{CloseInfo, TransportEvent, TransportKind};
use crate::api::Api;
use crate::endpoints::ServerUrl;
use crate::error::TransportError;
use crate::tls::{self, TlsRoots};

/// Bytes read from a stream at a time.
const READ_CHUNK: usize = 16 * 1024;
/// Handshakes tried per connection attempt (see the module doc).
const HANDSHAKE_TRIES: u32 = 3;
/// How long a handshake (QUIC, HTTP/3 SETTINGS and the session request) that is not the last
/// try may take: a few round trips and a lost packet's retransmission on a slow path.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);
/// The most the pause before the second try lasts; it doubles for each later one.
const RETRY_PAUSE_MS: u64 = 100;
/// HTTP/3 error codes (RFC 9114 §8.1).
const H3_ERRORS: RangeInclusive<u64> = 0x100..=0x110;

/// How the server's certificate is trusted.
#[derive(Debug, Clone)]
pub(crate) enum Trust {
    /// Pin the hash from `/api/cert` (fetched per connection).
    PinnedHash(Api),
    /// Verify against these roots.
    Roots(TlsRoots),
}

/// An open WebTransport session.
pub(crate) struct WtConnection {
    connection: Connection,
    /// The session's place on a shared endpoint, kept so that the UDP socket's owner
    /// outlives the connection.
    _endpoint: Lease,
    inbound_tx: mpsc::Sender<Inbound>,
    inbound: mpsc::Receiver<Inbound>,
    /// Each logical stream's write queue.
    streams: StreamTable<mpsc::UnboundedSender<Vec<u8>>>,
}

fn failed(reason: impl Into<String>) -> TransportError {
    TransportError::Failed {
        transport: TransportKind::WebTransport,
        reason: reason.into(),
    }
}

/// Open a WebTransport session to `server` and its control stream, on an endpoint (UDP
/// socket) of `endpoints`.
pub(crate) async fn connect(
    server: &ServerUrl,
    trust: &Trust,
    endpoints: &WtEndpoints,
) -> Result<WtConnection, TransportError> {
    let family = Family::of(server.host());
    let (pinning, url) = match trust {
        Trust::Roots(roots) => (Pinning::Roots(roots.clone()), server.webtransport(None)),
        Trust::PinnedHash(api) => {
            let cert = api.cert().await.map_err(TransportError::CertFetch)?;
            let hash = parse_sha256_hex(&cert.sha256_hex)
                .ok_or_else(|| TransportError::BadCertHash(cert.sha256_hex.clone()))?;
            (
                Pinning::Hash(hash),
                server.webtransport(Some(cert.webtransport_port)),
            )
        }
    };
    let endpoint = endpoints.lease(&EndpointKey { family, pinning })?;
    let connection = open_session(endpoint.endpoint(), url.as_str())
        .await
        .map_err(|e| certificate_error(e, &url, trust))?;
    let (send, recv) = open_bi(&connection).await.map_err(failed)?;
    // Control frames (pings, pongs) go first when streams compete for the path.
    send.set_priority(1);

    let (inbound_tx, inbound) = mpsc::channel(INBOUND_QUEUE);
    let (control_tx, control_rx) = mpsc::unbounded_channel();
    tokio::spawn(write_stream(send, control_rx));
    tokio::spawn(read_stream(
        CONTROL_ID,
        recv,
        inbound_tx.clone(),
        Some(connection.clone()),
    ));
    Ok(WtConnection {
        connection,
        _endpoint: endpoint,
        inbound_tx,
        inbound,
        streams: StreamTable::new(control_tx),
    })
}

/// The session at `url`, tried again after a failure of wtransport's SETTINGS race (see the
/// module doc).
async fn open_session(
    endpoint: &Endpoint<endpoint_side::Client>,
    url: &str,
) -> Result<Connection, TransportError> {
    let mut tries = 1;
    let mut pause_ms = RETRY_PAUSE_MS;
    loop {
        let handshake = endpoint.connect(url);
        let result = if tries < HANDSHAKE_TRIES {
            timeout(HANDSHAKE_TIMEOUT, handshake).await
        } else {
            Ok(handshake.await)
        };
        let error = match result {
            Ok(Ok(connection)) => return Ok(connection),
            Ok(Err(e)) if !an_http3_error(&e) => return Err(failed(e.to_string())),
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no session within {HANDSHAKE_TIMEOUT:?}"),
        };
        if tries == HANDSHAKE_TRIES {
            return Err(failed(error));
        }
        tracing::debug!(
            tries,
            "WebTransport handshake failed, trying again: {error}"
        );
        let pause = Duration::from_millis(rand::rng().random_range(0..=pause_ms));
        sleep(pause).await;
        tries += 1;
        pause_ms *= 2;
    }
}

/// [`TransportError::Certificate`] if `error` is the server's certificate failing
/// verification, else `error`.
fn certificate_error(error: TransportError, url: &reqwest::Url, trust: &Trust) -> TransportError {
    let TransportError::Failed { reason, .. } = &error else {
        return error;
    };
    let Some(reason) = tls::quic_certificate_failure(reason) else {
        return error;
    };
    TransportError::Certificate {
        transport: TransportKind::WebTransport,
        server: format!(
            "{}:{}",
            url.host_str().unwrap_or_default(),
            url.port_or_known_default().unwrap_or_default()
        ),
        reason,
        trusted: match trust {
            Trust::Roots(roots) => roots.describe(),
            Trust::PinnedHash(_) => "the certificate hash from /api/cert".to_owned(),
        },
    }
}

/// Whether the handshake was closed with an HTTP/3 error code, by wtransport here or by the
/// server.
fn an_http3_error(error: &ConnectingError) -> bool {
    match error {
        ConnectingError::ConnectionError(ConnectionError::LocalH3Error(_)) => true,
        ConnectingError::ConnectionError(ConnectionError::ApplicationClosed(close)) => {
            H3_ERRORS.contains(&u64::from(close.code()))
        }
        _ => false,
    }
}

/// A SHA-256 digest from 64 hex digits (colons and whitespace between them are ignored).
pub(crate) fn parse_sha256_hex(hex: &str) -> Option<Sha256Digest> {
    let digits: Vec<u8> = hex
        .bytes()
        .filter(|b| *b != b':' && !b.is_ascii_whitespace())
        .collect();
    if digits.len() != 64 {
        return None;
    }
    let mut bytes = [0u8; 32];
    for (byte, pair) in bytes.iter_mut().zip(digits.chunks_exact(2)) {
        let pair = std::str::from_utf8(pair).ok()?;
        *byte = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(Sha256Digest::new(bytes))
}

async fn open_bi(connection: &Connection) -> Result<(SendStream, RecvStream), String> {
    let opening = connection.open_bi().await.map_err(|e| e.to_string())?;
    opening.await.map_err(|e| e.to_string())
}

impl WtConnection {
    /// Queue an encoded frame on `stream` (on a newly opened stream if `fresh`).
    pub(crate) fn send(&mut self, stream: StreamKey, frame: Vec<u8>, fresh: bool) {
        if let Some((_, queue)) = self.streams.get(stream)
            && (!fresh || stream == StreamKey::Control)
        {
            // If the writer is gone, the stream's reader reports its end.
            let _ = queue.send(frame);
            return;
        }
        if stream == StreamKey::Control {
            // The control stream ended: the connection is being reported closed.
            return;
        }
        let (queue, frames) = mpsc::unbounded_channel();
        let _ = queue.send(frame);
        let (id, _replaced) = self.streams.open(stream, |_| queue);
        tokio::spawn(run_stream(
            self.connection.clone(),
            id,
            frames,
            self.inbound_tx.clone(),
        ));
    }

    pub(crate) async fn recv(&mut self) -> TransportEvent {
        loop {
            // `self` holds a sender, so the queue never ends while it is read.
            let Some(inbound) = self.inbound.recv().await else {
                return TransportEvent::Closed(CloseInfo {
                    code: None,
                    reason: "the WebTransport readers stopped".into(),
                });
            };
            if let Some(event) = self.streams.translate(inbound) {
                return event;
            }
        }
    }
}

impl Drop for WtConnection {
    fn drop(&mut self) {
        // Ends every stream task with it.
        self.connection.close(VarInt::from_u32(0), b"client closed");
    }
}

/// Open a conversation stream, then read it and write its queued frames.
async fn run_stream(
    connection: Connection,
    id: u64,
    frames: mpsc::UnboundedReceiver<Vec<u8>>,
    inbound: mpsc::Sender<Inbound>,
) {
    match open_bi(&connection).await {
        Ok((send, recv)) => {
            tokio::spawn(read_stream(id, recv, inbound, None));
            write_stream(send, frames).await;
        }
        Err(e) => {
            tracing::debug!(stream = id, "cannot open a WebTransport stream: {e}");
            let _ = inbound.send(Inbound::Ended(id)).await;
        }
    }
}

/// Write queued frames (everything queued at once in one write); finish the stream when the
/// queue is dropped.
async fn write_stream(mut send: SendStream, mut frames: mpsc::UnboundedReceiver<Vec<u8>>) {
    while let Some(mut batch) = frames.recv().await {
        while let Ok(more) = frames.try_recv() {
            batch.extend_from_slice(&more);
        }
        if let Err(e) = send.write_all(&batch).await {
            tracing::debug!("WebTransport stream write failed: {e}");
            return;
        }
    }
    let _ = send.finish().await;
}

/// Read frames from a stream until it ends. `control` is the connection if this is the
/// control stream, whose end is reported as the connection's.
async fn read_stream(
    id: u64,
    mut recv: RecvStream,
    inbound: mpsc::Sender<Inbound>,
    control: Option<Connection>,
) {
    let mut decoder = Decoder::new();
    let mut buf = vec![0u8; READ_CHUNK];
    let end = 'read: loop {
        let n = match recv.read(&mut buf).await {
            Ok(Some(n)) => n,
            Ok(None) => break Inbound::Ended(id),
            Err(e) => match &control {
                Some(connection) => break Inbound::Lost(connection_lost(connection, e).await),
                None => break Inbound::Ended(id),
            },
        };
        decoder.push(&buf[..n]);
        loop {
            match decoder.next_frame::<ServerFrame>() {
                Ok(Some(frame)) => {
                    if inbound.send(Inbound::Frame(id, frame)).await.is_err() {
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(stream = id, "malformed frame from the server: {e}");
                    recv.stop(VarInt::from_u32(ErrorCode::BadFrame.as_u32()));
                    break 'read match control {
                        Some(_) => Inbound::Lost(CloseInfo {
                            code: Some(ErrorCode::BadFrame),
                            reason: format!("malformed frame from the server: {e}"),
                        }),
                        None => Inbound::Ended(id),
                    };
                }
            }
        }
    };
    let _ = inbound.send(end).await;
}

/// Why the connection under a failed control stream read is gone.
async fn connection_lost(connection: &Connection, error: StreamReadError) -> CloseInfo {
    match error {
        StreamReadError::NotConnected => {
            match timeout(Duration::from_secs(1), connection.closed()).await {
                Ok(error) => close_info(&error),
                Err(_) => CloseInfo {
                    code: None,
                    reason: "the connection was lost".into(),
                },
            }
        }
        StreamReadError::Reset(code) => CloseInfo {
            code: protocol_code(code),
            reason: "the server reset the control stream".into(),
        },
        StreamReadError::QuicProto => CloseInfo {
            code: None,
            reason: "QUIC protocol error on the control stream".into(),
        },
    }
}

fn protocol_code(code: VarInt) -> Option<ErrorCode> {
    u32::try_from(u64::from(code))
        .ok()
        .and_then(ErrorCode::from_u32)
}

fn close_info(error: &ConnectionError) -> CloseInfo {
    match error {
        ConnectionError::ApplicationClosed(close) => {
            let reason = String::from_utf8_lossy(close.reason()).trim().to_owned();
            CloseInfo {
                code: protocol_code(close.code()),
                reason: if reason.is_empty() {
                    error.to_string()
                } else {
                    reason
                },
            }
        }
        other => CloseInfo {
            code: None,
            reason: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_hashes_parse_from_hex() {
        let hex = "00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF";
        let digest = parse_sha256_hex(hex).unwrap();
        assert_eq!(digest.as_ref()[1], 0x11);
        assert_eq!(digest.as_ref()[31], 0xff);
        let dotted = digest.to_string();
        assert_eq!(parse_sha256_hex(&dotted), Some(digest));
        assert_eq!(parse_sha256_hex("abcd"), None);
        assert_eq!(parse_sha256_hex(&"zz".repeat(32)), None);
        assert_eq!(parse_sha256_hex(&"é".repeat(32)), None);
    }
}
