//! Opening one connection with the chosen transport. For [`TransportChoice::Auto`]
//! WebTransport starts first and, if it is not up within [`HEAD_START`] (or fails sooner), a
//! WebSocket is started too; the first to come up wins and the other attempt is dropped. Each
//! attempt gives up after [`ATTEMPT_TIMEOUT`].
//!
//! A WebSocket-only dial carries the session's first flight in its opening handshake (see
//! [`DialConfig::carries_first_flight`]); WebTransport and the race send it once up.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use quibble_protocol::session::Transmit;
use tokio::time::{sleep, timeout};

use super::wt::Trust;
use super::wt_endpoints::WtEndpoints;
use super::{Connection, TransportChoice, TransportKind, ws, wt};
use crate::endpoints::ServerUrl;
use crate::error::TransportError;
use crate::tls::TlsRoots;

/// How long WebTransport may take before a WebSocket is raced against it.
pub(crate) const HEAD_START: Duration = Duration::from_millis(300);
/// How long one transport may take to come up.
pub(crate) const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// Everything needed to open a connection, shared by every reconnect.
#[derive(Debug)]
pub(crate) struct DialConfig {
    pub server: ServerUrl,
    pub trust: Trust,
    /// The roots WSS verifies an `https` server with.
    pub tls: TlsRoots,
    pub choice: TransportChoice,
    /// Where WebTransport sessions get their UDP socket.
    pub wt_endpoints: WtEndpoints,
}

impl DialConfig {
    /// Whether [`dial`] sends the session's first frames itself, in the transport's opening
    /// handshake: then the driver hands them over before dialing, not after.
    pub(crate) fn carries_first_flight(&self) -> bool {
        self.choice == TransportChoice::WebSocket
    }
}

/// Open a connection as `config` says, carrying `first_flight` if
/// [`DialConfig::carries_first_flight`] (it is empty otherwise).
pub(crate) async fn dial(
    config: Arc<DialConfig>,
    first_flight: Vec<Transmit>,
) -> Result<Connection, TransportError> {
    match config.choice {
        TransportChoice::WebTransport => webtransport(&config).await,
        TransportChoice::WebSocket => websocket(&config, first_flight).await,
        TransportChoice::Auto => race(
            webtransport(&config),
            || websocket(&config, Vec::new()),
            HEAD_START,
        )
        .await
        .map_err(|(wt, ws)| TransportError::Neither {
            webtransport: Box::new(wt),
            websocket: Box::new(ws),
        }),
    }
}

async fn webtransport(config: &DialConfig) -> Result<Connection, TransportError> {
    let attempt = wt::connect(&config.server, &config.trust, &config.wt_endpoints);
    limited(TransportKind::WebTransport, attempt)
        .await
        .map(Connection::WebTransport)
}

async fn websocket(
    config: &DialConfig,
    first_flight: Vec<Transmit>,
) -> Result<Connection, TransportError> {
    let url = config.server.websocket();
    limited(
        TransportKind::WebSocket,
        ws::connect(&url, first_flight, &config.tls),
    )
    .await
    .map(Connection::WebSocket)
}

/// One attempt, within [`ATTEMPT_TIMEOUT`]; failures are logged (a race may hide them).
async fn limited<T>(
    transport: TransportKind,
    attempt: impl Future<Output = Result<T, TransportError>>,
) -> Result<T, TransportError> {
    let result = match timeout(ATTEMPT_TIMEOUT, attempt).await {
        Ok(result) => result,
        Err(_) => Err(TransportError::TimedOut {
            transport,
            after: ATTEMPT_TIMEOUT,
        }),
    };
    if let Err(e) = &result {
        tracing::debug!(%transport, "connection attempt failed: {e}");
    }
    result
}

/// Run `first`; start `second` once `first` failed or `head_start` passed; the first success
/// wins (the other future is dropped). Both errors if neither succeeds, `first`'s first.
pub(crate) async fn race<T, E, A, B>(
    first: A,
    second: impl FnOnce() -> B,
    head_start: Duration,
) -> Result<T, (E, E)>
where
    A: Future<Output = Result<T, E>>,
    B: Future<Output = Result<T, E>>,
{
    tokio::pin!(first);
    let early_failure = tokio::select! {
        result = &mut first => match result {
            Ok(won) => return Ok(won),
            Err(e) => Some(e),
        },
        () = sleep(head_start) => None,
    };
    let second = second();
    tokio::pin!(second);
    if let Some(first_error) = early_failure {
        return second.await.map_err(|e| (first_error, e));
    }
    tokio::select! {
        result = &mut first => match result {
            Ok(won) => Ok(won),
            Err(first_error) => second.await.map_err(|e| (first_error, e)),
        },
        result = &mut second => match result {
            Ok(won) => Ok(won),
            Err(second_error) => first.await.map_err(|e| (e, second_error)),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    const HEAD: Duration = Duration::from_millis(100);

    async fn after(
        ms: u64,
        result: Result<&'static str, &'static str>,
    ) -> Result<&'static str, &'static str> {
        sleep(Duration::from_millis(ms)).await;
        result
    }

    #[tokio::test]
    async fn a_quick_first_wins_without_starting_the_second() {
        let started = AtomicBool::new(false);
        let result = race(
            after(10, Ok("wt")),
            || {
                started.store(true, Ordering::SeqCst);
                after(0, Ok("ws"))
            },
            HEAD,
        )
        .await;
        assert_eq!(result, Ok("wt"));
        assert!(!started.load(Ordering::SeqCst));
    }

    #[tokio::test]
    async fn a_slow_first_loses_to_the_second() {
        let result = race(after(1_000, Ok("wt")), || after(10, Ok("ws")), HEAD).await;
        assert_eq!(result, Ok("ws"));
    }

    #[tokio::test]
    async fn a_slow_first_still_wins_if_the_second_fails() {
        let result = race(after(300, Ok("wt")), || after(10, Err("ws down")), HEAD).await;
        assert_eq!(result, Ok("wt"));
    }

    #[tokio::test]
    async fn an_early_failure_starts_the_second_at_once() {
        let start = tokio::time::Instant::now();
        let result = race(after(0, Err("wt down")), || after(10, Ok("ws")), HEAD).await;
        assert_eq!(result, Ok("ws"));
        assert!(start.elapsed() < HEAD);
    }

    #[tokio::test]
    async fn both_failing_reports_both() {
        let result = race(
            after(200, Err("wt down")),
            || after(10, Err("ws down")),
            HEAD,
        )
        .await;
        assert_eq!(result, Err(("wt down", "ws down")));
        let result: Result<&str, _> =
            race(after(0, Err("wt down")), || after(0, Err("ws down")), HEAD).await;
        assert_eq!(result, Err(("wt down", "ws down")));
    }
}
