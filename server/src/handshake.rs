//! Handshake outcomes: every handshake a peer starts — QUIC/TLS and the session request on
//! WebTransport, TLS on HTTPS, the WebSocket upgrade, and the `Hello` on both realtime
//! transports — ends in one [`Outcome`], counted in `quibble_handshakes_total` by transport
//! and outcome. A failure is logged with its cause, once, at info; but at most
//! [`LINES_PER_WINDOW`] such lines are written per [`WINDOW`]: past that failures are only
//! counted, and one warning says how many lines were held back (written with the first
//! failure of a later window, or by the metrics upkeep), so a flood of bad handshakes cannot
//! flood the log. A peer that leaves, or a server that is shutting down, is counted but logged
//! only at debug: neither is a fault.

use std::fmt::Display;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Where a handshake happened (the `transport` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeTransport {
    WebTransport,
    WebSocket,
    /// TLS on the HTTP port (plain HTTP has no handshake).
    Https,
}

impl HandshakeTransport {
    pub const ALL: [HandshakeTransport; 3] = [
        HandshakeTransport::WebTransport,
        HandshakeTransport::WebSocket,
        HandshakeTransport::Https,
    ];

    pub fn label(self) -> &'static str {
        match self {
            HandshakeTransport::WebTransport => "webtransport",
            HandshakeTransport::WebSocket => "websocket",
            HandshakeTransport::Https => "https",
        }
    }

    /// The handshake transport of a realtime connection's `transport` label.
    pub fn realtime(label: &str) -> HandshakeTransport {
        match label {
            "webtransport" => HandshakeTransport::WebTransport,
            _ => HandshakeTransport::WebSocket,
        }
    }
}

/// How a handshake ended (the `outcome` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Done: TLS is up (HTTPS), or the `Hello` was accepted (realtime).
    Ok,
    /// The QUIC or TLS handshake failed.
    TlsFailed,
    /// Not done within its deadline (the TLS handshake, or the `Hello`).
    TimedOut,
    /// Not a request for a session: a WebTransport request for another path, a WebSocket
    /// upgrade without its headers.
    BadRequest,
    /// Refused by admission (the server or the address is at its limit).
    Refused,
    /// The address or the account is banned.
    Banned,
    /// The first frame was not a readable `Hello`.
    BadHello,
    /// A missing, expired or revoked token.
    Unauthorized,
    /// A protocol version this server does not speak.
    UnsupportedVersion,
    /// The peer left before the handshake was done.
    PeerLeft,
    /// The server is shutting down.
    ShuttingDown,
    /// The server failed (the token could not be checked).
    Internal,
}

impl Outcome {
    pub const ALL: [Outcome; 12] = [
        Outcome::Ok,
        Outcome::TlsFailed,
        Outcome::TimedOut,
        Outcome::BadRequest,
        Outcome::Refused,
        Outcome::Banned,
        Outcome::BadHello,
        Outcome::Unauthorized,
        Outcome::UnsupportedVersion,
        Outcome::PeerLeft,
        Outcome::ShuttingDown,
        Outcome::Internal,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::TlsFailed => "tls_failed",
            Outcome::TimedOut => "timed_out",
            Outcome::BadRequest => "bad_request",
            Outcome::Refused => "refused",
            Outcome::Banned => "banned",
            Outcome::BadHello => "bad_hello",
            Outcome::Unauthorized => "unauthorized",
            Outcome::UnsupportedVersion => "unsupported_version",
            Outcome::PeerLeft => "peer_left",
            Outcome::ShuttingDown => "shutting_down",
            Outcome::Internal => "internal",
        }
    }

    /// Whether an operator should see it (see the module doc).
    fn is_fault(self) -> bool {
        !matches!(
            self,
            Outcome::Ok | Outcome::PeerLeft | Outcome::ShuttingDown
        )
    }
}

/// The most failure lines written per [`WINDOW`].
pub const LINES_PER_WINDOW: u32 = 10;
pub const WINDOW: Duration = Duration::from_secs(1);

/// The log's budget: lines written in the current window, and those held back.
#[derive(Default)]
struct Budget {
    started: Option<Instant>,
    written: u32,
    held: u64,
}

impl Budget {
    /// Starts a new window if the current one is over; returns the lines held back in it.
    fn roll(&mut self, now: Instant) -> u64 {
        if self
            .started
            .is_some_and(|at| now.duration_since(at) < WINDOW)
        {
            return 0;
        }
        self.started = Some(now);
        self.written = 0;
        std::mem::take(&mut self.held)
    }
}

static BUDGET: Mutex<Budget> = Mutex::new(Budget {
    started: None,
    written: 0,
    held: 0,
});

/// A handshake of `transport` succeeded.
pub fn succeeded(transport: HandshakeTransport) {
    crate::metrics::hot().handshake(transport, Outcome::Ok);
}

/// A handshake of `transport` with `peer` ended with `outcome` (not [`Outcome::Ok`]) because
/// of `cause`: counted, and logged within the budget.
pub fn failed(
    transport: HandshakeTransport,
    outcome: Outcome,
    peer: &dyn Display,
    cause: &dyn Display,
) {
    crate::metrics::hot().handshake(transport, outcome);
    if !outcome.is_fault() {
        tracing::debug!(
            transport = transport.label(),
            outcome = outcome.label(),
            %peer,
            "handshake ended: {cause}"
        );
        return;
    }
    let (write, held) = {
        let mut budget = BUDGET.lock().unwrap_or_else(PoisonError::into_inner);
        let held = budget.roll(Instant::now());
        let write = budget.written < LINES_PER_WINDOW;
        if write {
            budget.written += 1;
        } else {
            budget.held += 1;
        }
        (write, held)
    };
    report_held(held);
    if write {
        tracing::info!(
            transport = transport.label(),
            outcome = outcome.label(),
            %peer,
            "handshake failed: {cause}"
        );
    }
}

/// Write the summary of lines held back in a window that is over (the metrics upkeep calls
/// this, so a flood that stopped is still summarised).
pub fn summarise() {
    let held = BUDGET
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .roll(Instant::now());
    report_held(held);
}

fn report_held(held: u64) {
    if held > 0 {
        tracing::warn!(
            held,
            "{held} more handshake failures were not logged (at most {LINES_PER_WINDOW} lines \
             per {WINDOW:?}); quibble_handshakes_total counts them all"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_holds_back_past_its_budget_and_the_next_one_reports_them() {
        let mut budget = Budget::default();
        let start = Instant::now();
        assert_eq!(budget.roll(start), 0);
        budget.written = LINES_PER_WINDOW;
        budget.held = 7;
        assert_eq!(budget.roll(start + WINDOW / 2), 0, "same window");
        assert_eq!(budget.roll(start + WINDOW), 7);
        assert_eq!(budget.written, 0);
        assert_eq!(budget.roll(start + WINDOW * 2), 0);
    }

    #[test]
    fn every_outcome_has_its_own_label() {
        let mut labels: Vec<_> = Outcome::ALL.iter().map(|o| o.label()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), Outcome::ALL.len());
        for (i, outcome) in Outcome::ALL.iter().enumerate() {
            assert_eq!(*outcome as usize, i, "ALL is in declaration order");
        }
    }
}
