//! Command-line arguments of `quibble-chat` (clap derive).

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use quibble_client::TransportChoice;

/// Terminal client for the Quibble chat server. Without a command it starts an interactive
/// chat; the commands are for scripts.
#[derive(Debug, Parser)]
#[command(name = "quibble-chat", version)]
pub struct Cli {
    /// Server base URL.
    #[arg(long, global = true, default_value = "http://127.0.0.1:4433")]
    pub server: String,
    /// Realtime transport: auto, webtransport or websocket.
    #[arg(long, global = true, default_value = "auto")]
    pub transport: TransportChoice,
    /// Username to sign up or log in with.
    #[arg(long, global = true)]
    pub user: Option<String>,
    /// Password (prefer the environment variable: command lines are visible to other users).
    #[arg(long, global = true, env = "QUIBBLE_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// PEM file of CA certificates to trust besides the system's roots, for HTTPS, WSS and
    /// WebTransport (without it, an http:// server's WebTransport certificate is pinned by the
    /// hash from /api/cert).
    #[arg(long, global = true)]
    pub ca_cert: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand, PartialEq, Eq)]
pub enum Command {
    /// Create the account given by --user and --password.
    Signup,
    /// List every room, in creation order, one per line: ID<TAB>NAME<TAB>HEAD_SEQ.
    Rooms,
    /// Create a room; prints ID<TAB>NAME.
    CreateRoom {
        /// The room's name.
        name: String,
    },
    /// Send a message and wait until the server has stored it; prints `sent SEQ`.
    Send {
        /// Room name (case-insensitive).
        room: String,
        /// The message; several words are joined with spaces.
        #[arg(required = true, num_args = 1.., allow_hyphen_values = true)]
        text: Vec<String>,
    },
    /// Print a room's last messages, oldest first: SEQ<TAB>AUTHOR<TAB>TEXT.
    History {
        /// Room name (case-insensitive).
        room: String,
        /// How many messages.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Print new messages as they arrive: AUTHOR<TAB>TEXT (until Ctrl-C or --count). Once
    /// listening, it says so on stderr.
    Tail {
        /// Room name (case-insensitive).
        room: String,
        /// Exit after this many messages.
        #[arg(long)]
        count: Option<usize>,
    },
    /// List friends and friend requests: friend|incoming|outgoing<TAB>USERNAME.
    Friends,
    /// Ask USER to be friends, or accept their request; prints OUTCOME<TAB>USERNAME.
    Add {
        /// The other user's username.
        #[arg(value_name = "USER")]
        username: String,
    },
    /// Decline USER's request, cancel yours, or unfriend; prints OUTCOME<TAB>USERNAME.
    Remove {
        /// The other user's username.
        #[arg(value_name = "USER")]
        username: String,
    },
    /// Send a direct message to a friend and wait until it is stored; prints `sent SEQ`.
    Dm {
        /// The friend's username.
        #[arg(value_name = "USER")]
        username: String,
        /// The message; several words are joined with spaces.
        #[arg(required = true, num_args = 1.., allow_hyphen_values = true)]
        text: Vec<String>,
    },
    /// List your rooms and DMs, most recent first: ID<TAB>room|dm<TAB>TITLE<TAB>UNREAD.
    Conversations,
    /// Become a member of a room; prints `joined NAME` (or `already in NAME`).
    Join {
        /// Room name (case-insensitive).
        room: String,
    },
    /// Stop being a member of a room; prints `left NAME` (or `not in NAME`).
    Leave {
        /// Room name (case-insensitive).
        room: String,
    },
    /// Delete a message (your own; an admin: anyone's); prints `deleted SEQ`.
    Delete {
        /// Room name (case-insensitive).
        room: String,
        /// The message's seq (as `history` prints it).
        seq: u64,
    },
    /// Stop seeing anything from USER (ends a friendship; they cannot DM or befriend you);
    /// prints `blocked|already_blocked<TAB>USERNAME`.
    Block {
        /// The other user's username.
        #[arg(value_name = "USER")]
        username: String,
    },
    /// See USER again from now on; prints `unblocked|not_blocked<TAB>USERNAME`.
    Unblock {
        /// The other user's username.
        #[arg(value_name = "USER")]
        username: String,
    },
    /// List the users you block: USERNAME<TAB>SINCE_MS.
    Blocks,
    // Moderation (admins only).
    /// Make USER an admin; prints admin<TAB>USER.
    Promote {
        #[arg(value_name = "USER")]
        username: String,
    },
    /// Make USER a user again; prints user<TAB>USER.
    Demote {
        #[arg(value_name = "USER")]
        username: String,
    },
    /// Ban USER (their sessions end, logins are refused); prints
    /// banned<TAB>USER<TAB>UNTIL|-<TAB>REASON.
    Ban {
        #[arg(value_name = "USER")]
        username: String,
        /// Why (shown to them).
        #[arg(long)]
        reason: String,
        /// How long, e.g. 30m, 1h, 7d [default: until unbanned].
        #[arg(long = "for", value_name = "DURATION", value_parser = parse_duration)]
        duration: Option<u64>,
    },
    /// Lift USER's ban; prints `unbanned<TAB>USER` (or `not banned<TAB>USER`).
    Unban {
        #[arg(value_name = "USER")]
        username: String,
    },
    /// List the active bans: USER<TAB>UNTIL|-<TAB>BY<TAB>REASON.
    Bans,
    /// Ban, list or unban addresses and CIDR ranges.
    #[command(subcommand)]
    IpBan(IpBanCommand),
    /// Show the audit log, newest first: ID<TAB>TIME<TAB>ACTOR<TAB>ACTION<TAB>TARGET<TAB>REASON|-.
    Audit {
        /// How many entries (1-500).
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
}

#[derive(Debug, Subcommand, PartialEq, Eq)]
pub enum IpBanCommand {
    /// Ban an address (203.0.113.7, ::1) or a range (198.51.100.0/24); prints
    /// banned<TAB>NETWORK<TAB>UNTIL|-<TAB>REASON.
    Add {
        network: String,
        /// Why.
        #[arg(long)]
        reason: String,
        /// How long, e.g. 30m, 1h, 7d [default: until removed].
        #[arg(long = "for", value_name = "DURATION", value_parser = parse_duration)]
        duration: Option<u64>,
    },
    /// List the active IP bans: NETWORK<TAB>UNTIL|-<TAB>BY<TAB>REASON.
    List,
    /// Remove a ban; prints `removed<TAB>NETWORK` (or `not banned<TAB>NETWORK`).
    Remove { network: String },
}

/// Seconds in a duration such as `30m`, `1h`, `7d` or `1h 30m` (whole seconds, at least one).
fn parse_duration(text: &str) -> Result<u64, String> {
    let duration = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if duration.as_secs() == 0 || duration.subsec_nanos() != 0 {
        return Err("a duration is whole seconds, at least 1s".into());
    }
    Ok(duration.as_secs())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("quibble-chat").chain(args.iter().copied()))
    }

    #[test]
    fn the_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults() {
        let cli = parse(&[]).unwrap();
        assert_eq!(cli.server, "http://127.0.0.1:4433");
        assert_eq!(cli.transport, TransportChoice::Auto);
        assert_eq!(cli.command, None);
        assert_eq!(cli.ca_cert, None);
    }

    #[test]
    fn global_options_go_before_or_after_the_command() {
        let cli = parse(&[
            "--server",
            "http://h:1",
            "history",
            "General",
            "--limit",
            "5",
            "--transport",
            "websocket",
            "--user",
            "ann",
        ])
        .unwrap();
        assert_eq!(cli.server, "http://h:1");
        assert_eq!(cli.transport, TransportChoice::WebSocket);
        assert_eq!(cli.user.as_deref(), Some("ann"));
        assert_eq!(
            cli.command,
            Some(Command::History {
                room: "General".into(),
                limit: 5
            })
        );
        let cli = parse(&["--transport", "webtransport", "rooms"]).unwrap();
        assert_eq!(cli.transport, TransportChoice::WebTransport);
        assert!(parse(&["--transport", "carrier-pigeon", "rooms"]).is_err());
    }

    #[test]
    fn commands_and_their_arguments() {
        let cli = parse(&["send", "general", "hello", "-1", "world"]).unwrap();
        assert_eq!(
            cli.command,
            Some(Command::Send {
                room: "general".into(),
                text: vec!["hello".into(), "-1".into(), "world".into()],
            })
        );
        assert!(parse(&["send", "general"]).is_err());
        let cli = parse(&["history", "general"]).unwrap();
        assert_eq!(
            cli.command,
            Some(Command::History {
                room: "general".into(),
                limit: 20
            })
        );
        let cli = parse(&["tail", "general", "--count", "3"]).unwrap();
        assert_eq!(
            cli.command,
            Some(Command::Tail {
                room: "general".into(),
                count: Some(3)
            })
        );
        let cli = parse(&["create-room", "Book club"]).unwrap();
        assert_eq!(
            cli.command,
            Some(Command::CreateRoom {
                name: "Book club".into()
            })
        );
        assert_eq!(parse(&["signup"]).unwrap().command, Some(Command::Signup));
        assert_eq!(
            parse(&["dm", "bob", "hi", "there"]).unwrap().command,
            Some(Command::Dm {
                username: "bob".into(),
                text: vec!["hi".into(), "there".into()]
            })
        );
        assert!(parse(&["dm", "bob"]).is_err());
        assert!(parse(&["add"]).is_err());
        assert_eq!(
            parse(&["leave", "general"]).unwrap().command,
            Some(Command::Leave {
                room: "general".into()
            })
        );
        assert_eq!(
            parse(&["conversations"]).unwrap().command,
            Some(Command::Conversations)
        );
        assert!(parse(&["history", "general", "--limit", "many"]).is_err());
        assert_eq!(
            parse(&["block", "bob"]).unwrap().command,
            Some(Command::Block {
                username: "bob".into()
            })
        );
        assert_eq!(
            parse(&["unblock", "bob"]).unwrap().command,
            Some(Command::Unblock {
                username: "bob".into()
            })
        );
        assert_eq!(parse(&["blocks"]).unwrap().command, Some(Command::Blocks));
        assert!(parse(&["block"]).is_err());
        assert!(parse(&["frobnicate"]).is_err());
    }

    #[test]
    fn moderation_commands() {
        assert_eq!(
            parse(&["ban", "mal", "--reason", "spam", "--for", "1h"])
                .unwrap()
                .command,
            Some(Command::Ban {
                username: "mal".into(),
                reason: "spam".into(),
                duration: Some(3600),
            })
        );
        assert!(parse(&["ban", "mal"]).is_err(), "a reason is required");
        assert!(parse(&["ban", "mal", "--reason", "x", "--for", "0s"]).is_err());
        assert!(parse(&["ban", "mal", "--reason", "x", "--for", "soon"]).is_err());
        assert_eq!(
            parse(&["ip-ban", "add", "::1", "--reason", "x", "--for", "7d"])
                .unwrap()
                .command,
            Some(Command::IpBan(IpBanCommand::Add {
                network: "::1".into(),
                reason: "x".into(),
                duration: Some(7 * 86_400),
            }))
        );
        assert_eq!(
            parse(&["ip-ban", "list"]).unwrap().command,
            Some(Command::IpBan(IpBanCommand::List))
        );
        assert_eq!(
            parse(&["audit"]).unwrap().command,
            Some(Command::Audit { limit: 50 })
        );
        assert_eq!(
            parse(&["promote", "ann"]).unwrap().command,
            Some(Command::Promote {
                username: "ann".into()
            })
        );
    }
}
