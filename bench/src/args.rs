//! The command line of `quibble-bench` (clap derive): the `chat` load scenario and its options.

use clap::{Args, Parser, Subcommand, ValueEnum};
use quibble_client::{TransportChoice, TransportKind};

/// Load generator and benchmarks for a Quibble server.
#[derive(Debug, Parser)]
#[command(name = "quibble-bench", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Bots chat in rooms at a steady rate; measure acknowledgement and fan-out latency,
    /// throughput, and check that every message reaches every member exactly once.
    Chat(ChatArgs),
}

#[derive(Debug, Clone, Args)]
pub struct ChatArgs {
    /// The server's base URL.
    #[arg(long, default_value = "http://127.0.0.1:4433")]
    pub server: String,

    /// The realtime transport; `both` runs the identical scenario once per transport and
    /// compares them (WebSocket / WebTransport).
    #[arg(long, value_enum, default_value_t = TransportArg::Both)]
    pub transport: TransportArg,

    /// Number of rooms.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub rooms: u32,

    /// Bots per room.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub users_per_room: u32,

    /// Messages each bot sends.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub messages: u32,

    /// Messages per second each bot sends (the server allows 50 per user).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=50))]
    pub rate: u32,

    /// Print the results as JSON instead of a table.
    #[arg(long)]
    pub json: bool,

    /// Seconds each transport's run may take (connect, send, deliver) before it stops and
    /// reports what it has; also the limit for signing the bots up.
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub timeout: u64,
}

/// `--transport`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TransportArg {
    Webtransport,
    Websocket,
    Both,
}

impl TransportArg {
    /// The transports to run, in order.
    pub fn kinds(self) -> Vec<TransportKind> {
        match self {
            TransportArg::Webtransport => vec![TransportKind::WebTransport],
            TransportArg::Websocket => vec![TransportKind::WebSocket],
            TransportArg::Both => vec![TransportKind::WebTransport, TransportKind::WebSocket],
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            TransportArg::Webtransport => "webtransport",
            TransportArg::Websocket => "websocket",
            TransportArg::Both => "both",
        }
    }
}

/// The client's transport choice that forces `kind` (no fallback).
pub fn choice(kind: TransportKind) -> TransportChoice {
    match kind {
        TransportKind::WebTransport => TransportChoice::WebTransport,
        TransportKind::WebSocket => TransportChoice::WebSocket,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_above_the_server_limit_are_refused() {
        assert!(Cli::try_parse_from(["quibble-bench", "chat", "--rate", "51"]).is_err());
        let cli = Cli::try_parse_from(["quibble-bench", "chat", "--rate", "50"]);
        assert!(cli.is_ok());
    }

    #[test]
    fn both_runs_webtransport_then_websocket() {
        let Command::Chat(args) =
            Cli::try_parse_from(["quibble-bench", "chat", "--transport", "both"])
                .map(|cli| cli.command)
                .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            args.transport.kinds(),
            [TransportKind::WebTransport, TransportKind::WebSocket]
        );
        assert_eq!(args.rooms, 4);
        assert_eq!(args.users_per_room, 8);
        assert_eq!(args.timeout, 120);
    }
}
