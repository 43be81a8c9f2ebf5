//! The log filter the binary installs: `RUST_LOG` (default `info`) decides what is logged,
//! under a cap no `RUST_LOG` can lift on the targets that would log what peers send — the
//! WebSocket library logs every frame, payload included (a `Hello` carries a session token), at
//! trace level, and axum logs rejected request details. Both filters must let an event through
//! (the cap is its own layer), so `RUST_LOG=tungstenite=trace` stays capped too.
//!
//! Libraries that log through the `log` crate (the WebSocket library, on every frame) reach
//! the subscriber through a bridge that asks it, per call, whether the record is wanted; that
//! cost 5 % of the server's CPU under chat load. So `log`'s own level gate, a static compare
//! at each call site, is set to the most `RUST_LOG` lets through.
//!
//! Lines are text (coloured only on a terminal, so a file or a journal gets plain text) or,
//! with `--log-format json`, one JSON object each. A line logged while a realtime connection
//! is handled carries the connection's span (`conn`, `transport`, `peer`, `user`; see
//! `chat::connection::span`): in text as its prefix, in JSON as the `span` object.

use std::io::IsTerminal;

use tracing::Level;
use tracing::level_filters::LevelFilter;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Targets that log payloads below this level, and the most they may log.
const CAPPED: &[(&str, Level)] = &[
    ("tungstenite", Level::DEBUG),
    ("tokio_tungstenite", Level::DEBUG),
    ("axum::rejection", Level::DEBUG),
];

/// The cap on payload-logging targets; everything else passes.
pub fn payload_cap() -> Targets {
    CAPPED.iter().fold(
        Targets::new().with_default(Level::TRACE),
        |t, (target, level)| t.with_target(*target, *level),
    )
}

/// How log lines are written.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// For people: colours only when standard error is a terminal.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Install the process-wide subscriber: capped, then `RUST_LOG`, to stderr in `format`.
pub fn init(format: LogFormat) {
    let env = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let most = log_level(env.max_level_hint());
    let registry = tracing_subscriber::registry().with(payload_cap()).with(env);
    match format {
        LogFormat::Text => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(std::io::stderr().is_terminal()),
            )
            .init(),
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    // The connection's fields (`conn`, `transport`, `peer`, `user`) are in
                    // `span`; the list of every enclosing span would only repeat them.
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_writer(std::io::stderr),
            )
            .init(),
    }
    // After `init`, which set the bridge's gate to everything.
    log::set_max_level(most);
}

/// `log`'s gate for the most a filter lets through (all when it cannot say).
fn log_level(hint: Option<LevelFilter>) -> log::LevelFilter {
    match hint.and_then(LevelFilter::into_level) {
        None if hint.is_some() => log::LevelFilter::Off,
        None => log::LevelFilter::Trace,
        Some(Level::ERROR) => log::LevelFilter::Error,
        Some(Level::WARN) => log::LevelFilter::Warn,
        Some(Level::INFO) => log::LevelFilter::Info,
        Some(Level::DEBUG) => log::LevelFilter::Debug,
        Some(Level::TRACE) => log::LevelFilter::Trace,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_targets_are_capped_and_others_are_not() {
        let cap = payload_cap();
        assert!(!cap.would_enable("tungstenite::protocol", &Level::TRACE));
        assert!(cap.would_enable("tungstenite::protocol", &Level::DEBUG));
        assert!(!cap.would_enable("axum::rejection", &Level::TRACE));
        assert!(cap.would_enable("quibble_server::chat", &Level::TRACE));
    }

    #[test]
    fn the_log_gate_follows_the_filter() {
        assert_eq!(
            log_level(EnvFilter::new("info").max_level_hint()),
            log::LevelFilter::Info
        );
        assert_eq!(
            log_level(EnvFilter::new("info,quibble_server=debug").max_level_hint()),
            log::LevelFilter::Debug
        );
        assert_eq!(log_level(Some(LevelFilter::OFF)), log::LevelFilter::Off);
        assert_eq!(log_level(None), log::LevelFilter::Trace);
    }
}
