//! An HTTP port: its accept loop and the serving of each connection (in place of
//! `axum::serve`, which sets no deadlines). Each accepted TCP connection first gets a slot from
//! the port's [`Admission`] (a trusted proxy's, from the global budget only); a refused one is answered with a 503/429 JSON response and closed
//! (over TLS it is just closed). An admitted one gets `TCP_NODELAY`, a write deadline for peers
//! that stop reading, the TLS handshake under its deadline (HTTPS), then hyper's HTTP/1 with a
//! header-read deadline that runs from the connection's start and again after each response,
//! so it also ends idle keep-alive connections; upgrades (WebSocket) are on. Every request
//! carries `ConnectInfo<SocketAddr>` and the connection's [`Slot`], which an upgraded WebSocket
//! keeps so its socket stays counted. When `accept` runs out of descriptors anyway, a spare
//! descriptor is given up to accept the waiting connection and close it at once, so peers are
//! refused instead of left hanging. With HTTP/3 on (HTTPS with a configured certificate), every
//! response advertises it with `Alt-Svc`. On shutdown each connection finishes its request and
//! closes; during the drain that follows, the loop still accepts, and each new connection gets
//! one request answered (`/readyz` says 503, the realtime handshakes say `GoAway`); once the
//! drain is over it stops accepting.

use std::fs::File;
use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Request, header};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::time::{Instant, timeout};
use tokio_rustls::TlsAcceptor;
use tower_service::Service;

use crate::admission::{Admission, Refusal, Slot};
use crate::client_addr::TrustedProxies;
use crate::handshake::{self, HandshakeTransport, Outcome};
use crate::http::write_deadline::WriteDeadline;

/// Largest request head (request line and headers) a connection may buffer.
const MAX_HEAD: usize = 32 * 1024;
const MAX_HEADERS: usize = 64;
/// Refused connections being answered at once; past this they are closed without an answer.
const REFUSALS_IN_FLIGHT: usize = 32;
/// Request head read from a refused connection before it is answered anyway.
const MAX_REFUSED_HEAD: usize = 8 * 1024;
/// How long a refused connection may take to send its request and receive its answer.
const REFUSAL_DEADLINE: Duration = Duration::from_secs(1);
/// How long a connection may take to finish its request once shutdown began.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// At most one "out of file descriptors" warning per this period.
const FD_WARNING_PERIOD: Duration = Duration::from_secs(10);

/// One HTTP port, ready to serve.
pub struct HttpPort {
    pub tcp: TcpListener,
    pub router: Router,
    pub admission: Arc<Admission>,
    /// HTTPS when set.
    pub tls: Option<TlsAcceptor>,
    pub header_timeout: Duration,
    pub tls_handshake_timeout: Duration,
    /// How long a write may wait on a peer that reads nothing.
    pub write_stall: Duration,
    /// The transport label of this port's metrics (`http`, `metrics`).
    pub label: &'static str,
    /// Peers whose connections count for no address ([`Admission::admit_proxied`]).
    pub proxies: TrustedProxies,
    /// The `Alt-Svc` header every response carries (HTTP/3 served elsewhere), if any.
    pub alt_svc: Option<HeaderValue>,
}

impl HttpPort {
    /// Accept and serve until `closed` turns true. Once `shutdown` has turned true (the drain),
    /// a connection still accepted gets one request answered, then is closed: a load balancer
    /// can read `/readyz` say so while the node drains.
    pub async fn serve(self, shutdown: watch::Receiver<bool>, mut closed: watch::Receiver<bool>) {
        let mut http = http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(self.header_timeout)
            .max_buf_size(MAX_HEAD)
            .max_headers(MAX_HEADERS);
        let mut last_call = http.clone();
        last_call.keep_alive(false);
        let served = Arc::new(Served {
            http,
            last_call,
            router: self.router,
            tls: self.tls,
            tls_handshake_timeout: self.tls_handshake_timeout,
            write_stall: self.write_stall,
            shutdown,
            alt_svc: self.alt_svc,
        });
        let refusals = Arc::new(Semaphore::new(REFUSALS_IN_FLIGHT));
        let mut spare = Spare::new(self.label);
        loop {
            let accepted = tokio::select! {
                biased;
                _ = stopped(&mut closed) => return,
                accepted = self.tcp.accept() => accepted,
            };
            let (stream, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(e) if is_out_of_files(&e) => {
                    spare.refuse_one(&self.tcp).await;
                    continue;
                }
                // The peer gave up while queued, and the like: nothing to do.
                Err(e) => {
                    tracing::debug!("accept failed: {e}");
                    continue;
                }
            };
            // Frames are small and latency-sensitive: no Nagle delay on the socket.
            let _ = stream.set_nodelay(true);
            let admitted = if self.proxies.trusts(peer.ip()) {
                self.admission.admit_proxied(self.label)
            } else {
                self.admission.admit(peer.ip(), self.label)
            };
            match admitted {
                Ok(slot) => {
                    tokio::spawn(served.clone().connection(stream, peer, slot));
                }
                Err(refusal) => {
                    tracing::debug!(%peer, "refused: {refusal}");
                    let answer = served
                        .tls
                        .is_none()
                        .then(|| refusals.clone().try_acquire_owned());
                    if let Some(Ok(permit)) = answer {
                        tokio::spawn(async move {
                            answer_refusal(stream, refusal).await;
                            drop(permit);
                        });
                    }
                }
            }
        }
    }
}

/// What every connection of a port shares.
struct Served {
    http: http1::Builder,
    /// For connections accepted during the drain: no keep-alive.
    last_call: http1::Builder,
    router: Router,
    tls: Option<TlsAcceptor>,
    tls_handshake_timeout: Duration,
    write_stall: Duration,
    shutdown: watch::Receiver<bool>,
    alt_svc: Option<HeaderValue>,
}

impl Served {
    async fn connection(self: Arc<Self>, stream: TcpStream, peer: SocketAddr, slot: Slot) {
        let stream = WriteDeadline::new(stream, self.write_stall);
        let Some(acceptor) = &self.tls else {
            return self.http(TokioIo::new(stream), peer, slot).await;
        };
        let ip = peer.ip().to_canonical();
        match timeout(self.tls_handshake_timeout, acceptor.accept(stream)).await {
            Ok(Ok(tls)) => {
                handshake::succeeded(HandshakeTransport::Https);
                self.http(TokioIo::new(tls), peer, slot).await
            }
            Ok(Err(e)) => {
                // rustls's refusals are `InvalidData`; the rest is the peer going away.
                let outcome = match e.kind() {
                    io::ErrorKind::InvalidData => Outcome::TlsFailed,
                    _ => Outcome::PeerLeft,
                };
                handshake::failed(
                    HandshakeTransport::Https,
                    outcome,
                    &ip,
                    &format_args!("TLS: {e}"),
                );
            }
            Err(_) => handshake::failed(
                HandshakeTransport::Https,
                Outcome::TimedOut,
                &ip,
                &format_args!(
                    "TLS handshake not done within {:?}",
                    self.tls_handshake_timeout
                ),
            ),
        }
    }

    async fn http<I>(&self, io: I, peer: SocketAddr, slot: Slot)
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let router = self.router.clone();
        let alt_svc = self.alt_svc.clone();
        let service = service_fn(move |mut request: Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            request.extensions_mut().insert(slot.clone());
            let mut router = router.clone();
            let alt_svc = alt_svc.clone();
            async move {
                let mut response = router.call(request.map(Body::new)).await?;
                if let Some(value) = alt_svc {
                    response.headers_mut().insert(header::ALT_SVC, value);
                }
                Ok::<_, std::convert::Infallible>(response)
            }
        });
        let mut shutdown = self.shutdown.clone();
        if *shutdown.borrow() {
            let conn = self.last_call.serve_connection(io, service).with_upgrades();
            if let Ok(Err(e)) = timeout(SHUTDOWN_GRACE, conn).await {
                tracing::debug!(%peer, "HTTP connection ended: {e}");
            }
            return;
        }
        let mut conn = pin!(self.http.serve_connection(io, service).with_upgrades());
        let ended = tokio::select! {
            ended = conn.as_mut() => ended,
            _ = stopped(&mut shutdown) => {
                conn.as_mut().graceful_shutdown();
                match timeout(SHUTDOWN_GRACE, conn.as_mut()).await {
                    Ok(ended) => ended,
                    Err(_) => return,
                }
            }
        };
        if let Err(e) = ended {
            tracing::debug!(%peer, "HTTP connection ended: {e}");
        }
    }
}

/// Completes once `shutdown` turns true (or its sender is gone).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    // Drop the guard at once: holding it across an await would make the future non-Send.
    let _ = shutdown.wait_for(|down| *down).await.map(|_| ());
}

/// Answer a refused connection with its status and a JSON body, then close it. The request
/// head is read first (clients take an answer that comes before their request for a broken
/// connection), within the refusal's deadline and size; what the peer sends after the answer
/// is read and dropped (closing with unread input would reset the connection and could
/// destroy the answer).
async fn answer_refusal(mut stream: TcpStream, refusal: Refusal) {
    let _ = timeout(REFUSAL_DEADLINE, async {
        let mut head = Vec::with_capacity(1024);
        let mut buf = [0u8; 2048];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_REFUSED_HEAD {
            match stream.read(&mut buf).await? {
                0 => return Ok(()),
                n => head.extend_from_slice(&buf[..n]),
            }
        }
        stream.write_all(&refusal_response(refusal)).await?;
        stream.shutdown().await?;
        while stream.read(&mut buf).await? > 0 {}
        Ok::<_, io::Error>(())
    })
    .await;
}

fn refusal_response(refusal: Refusal) -> Vec<u8> {
    let status = refusal.status();
    let body = serde_json::json!({
        "error": { "code": refusal.code(), "message": refusal.to_string() }
    })
    .to_string();
    format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\nretry-after: {}\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n{body}",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        refusal.retry_after().as_secs(),
        body.len(),
    )
    .into_bytes()
}

fn is_out_of_files(e: &io::Error) -> bool {
    // EMFILE (this process) or ENFILE (the system).
    matches!(e.raw_os_error(), Some(24) | Some(23))
}

/// One descriptor held in reserve for accepting and closing connections when out of them.
struct Spare {
    file: Option<File>,
    label: &'static str,
    refused: u64,
    warned: Option<Instant>,
}

impl Spare {
    fn new(label: &'static str) -> Spare {
        Spare {
            file: File::open("/dev/null").ok(),
            label,
            refused: 0,
            warned: None,
        }
    }

    /// Out of descriptors: free the spare, accept the waiting connection and close it at once,
    /// take the spare back.
    async fn refuse_one(&mut self, tcp: &TcpListener) {
        if self.file.take().is_none() {
            // No spare to give up (another part of the process holds every descriptor): wait
            // for one to come free rather than spin.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if let Ok(Ok((stream, _))) = timeout(Duration::from_millis(10), tcp.accept()).await {
            drop(stream);
            self.refused += 1;
            metrics::counter!(crate::metrics::CONNECTIONS_REFUSED,
                "transport" => self.label, "reason" => "out_of_files")
            .increment(1);
        }
        self.file = File::open("/dev/null").ok();
        if self
            .warned
            .is_none_or(|at| at.elapsed() >= FD_WARNING_PERIOD)
        {
            tracing::warn!(
                refused = self.refused,
                "out of file descriptors: closing new connections at once"
            );
            self.warned = Some(Instant::now());
            self.refused = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_is_a_complete_http_response() {
        let text = String::from_utf8(refusal_response(Refusal::AddressFull)).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(
            head.starts_with("HTTP/1.1 429 Too Many Requests\r\n"),
            "{head}"
        );
        assert!(head.contains("retry-after: 10\r\n"), "{head}");
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["error"]["code"], "too_many_connections");
    }
}
