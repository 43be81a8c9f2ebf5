//! `quibble admin`: the operator's moderation commands on the server's machine.
//!
//! Each command becomes one [`Operation`]. If a server is running on the data directory, it
//! goes through that server's admin socket (so its live effects apply at once); if none is
//! (no socket, or a stale one nobody listens on), the store file is opened directly and the
//! operation runs on it. The store's lock decides between the two: a server that holds the
//! file but cannot be reached is reported, never worked around. Either way the action is
//! audited as the operator. Results print as tab-separated lines.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use clap::{Args, Subcommand};

use super::ops::{self, OpError, Operation, Outcome};
use super::socket::{self, SOCKET_NAME, SocketError};
use crate::config::Loaded;
use crate::store::{Actor, Role, Store, StoreError};
use crate::tls::unix_ms;

/// The store file's name in the data directory.
pub const STORE_FILE: &str = "quibble.redb";
/// The page cache for a one-off command.
const CACHE_BYTES: usize = 16 * 1024 * 1024;

#[derive(Args, Debug)]
pub struct AdminArgs {
    /// TOML config file (its `data_dir` is used).
    #[arg(long, env = "QUIBBLE_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// The server's data directory [default: ./quibble-data].
    #[arg(long, env = "QUIBBLE_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: AdminCommand,
}

#[derive(Subcommand, Debug)]
pub enum AdminCommand {
    /// Make NAME an admin.
    Promote { username: String },
    /// Make NAME a user again.
    Demote { username: String },
    /// Ban NAME: close their connections, revoke their sessions, refuse their logins.
    Ban {
        username: String,
        /// Why (shown to them).
        #[arg(long)]
        reason: String,
        /// How long, e.g. 30m, 1h, 7d [default: until unbanned].
        #[arg(long = "for", value_parser = parse_duration)]
        duration: Option<u64>,
    },
    /// Lift NAME's ban.
    Unban { username: String },
    /// List the active bans.
    Bans,
    /// Ban, list or unban addresses and CIDR ranges.
    #[command(subcommand)]
    IpBan(IpBanCommand),
    /// Set the retention of room ROOM (its id); with neither option, turn it off.
    Retention {
        room: u64,
        /// Retain away messages older than this, e.g. 30d, 12h.
        #[arg(long = "max-age", value_parser = parse_duration)]
        max_age: Option<u64>,
        /// Keep only this many of the newest messages.
        #[arg(long = "max-messages")]
        max_messages: Option<u64>,
    },
    /// Show the audit log, newest first.
    Audit {
        /// How many entries (1-500).
        #[arg(long, default_value_t = ops::DEFAULT_AUDIT_PAGE)]
        limit: usize,
    },
}

#[derive(Subcommand, Debug)]
pub enum IpBanCommand {
    /// Ban an address (e.g. 203.0.113.7, ::1) or a range (e.g. 198.51.100.0/24).
    Add {
        network: String,
        #[arg(long)]
        reason: String,
        /// How long, e.g. 30m, 1h, 7d [default: until removed].
        #[arg(long = "for", value_parser = parse_duration)]
        duration: Option<u64>,
    },
    /// List the active IP bans.
    List,
    /// Remove the ban of an address or range.
    Remove { network: String },
}

/// Why `quibble admin` failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("cannot read the config file: {0}")]
    Config(String),
    #[error("no store at {0}: is --data-dir right?")]
    NoStore(PathBuf),
    #[error(
        "a server holds the store in {0} but its admin socket does not answer; \
         retry, or stop the server"
    )]
    Unreachable(PathBuf),
    #[error("cannot open the store: {0}")]
    Store(StoreError),
    #[error(transparent)]
    Socket(SocketError),
    #[error("{0}")]
    Refused(OpError),
    #[error("cannot print: {0}")]
    Output(#[from] std::io::Error),
}

/// Seconds in a duration such as `30m`, `1h`, `7d` or `1h 30m` (whole seconds, at least one).
fn parse_duration(text: &str) -> Result<u64, String> {
    let duration = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if duration < Duration::from_secs(1) || duration.subsec_nanos() != 0 {
        return Err("a duration is whole seconds, at least 1s".into());
    }
    Ok(duration.as_secs())
}

/// Runs one `quibble admin` command; prints its result on stdout.
pub async fn run(args: AdminArgs) -> Result<(), AdminError> {
    let data_dir = data_dir(&args)?;
    let op = operation(args.command);
    let outcome = match socket::request(&data_dir.join(SOCKET_NAME), &op).await {
        Ok(outcome) => outcome,
        Err(SocketError::NotRunning(_)) => offline(&data_dir, op).await?,
        Err(e) => return Err(AdminError::Socket(e)),
    };
    print(&outcome)
}

fn data_dir(args: &AdminArgs) -> Result<PathBuf, AdminError> {
    if let Some(dir) = &args.data_dir {
        return Ok(dir.clone());
    }
    let from_file = match &args.config {
        Some(path) => Some(
            Loaded::from_file(path)
                .map_err(|e| AdminError::Config(e.to_string()))?
                .settings
                .data_dir,
        ),
        None => None,
    };
    Ok(from_file.unwrap_or_else(|| PathBuf::from("quibble-data")))
}

fn operation(command: AdminCommand) -> Operation {
    match command {
        AdminCommand::Promote { username } => Operation::Promote { username },
        AdminCommand::Demote { username } => Operation::Demote { username },
        AdminCommand::Ban {
            username,
            reason,
            duration,
        } => Operation::Ban {
            username,
            reason,
            duration_secs: duration,
        },
        AdminCommand::Unban { username } => Operation::Unban { username },
        AdminCommand::Bans => Operation::Bans,
        AdminCommand::IpBan(IpBanCommand::Add {
            network,
            reason,
            duration,
        }) => Operation::IpBanAdd {
            network,
            reason,
            duration_secs: duration,
        },
        AdminCommand::IpBan(IpBanCommand::List) => Operation::IpBans,
        AdminCommand::IpBan(IpBanCommand::Remove { network }) => Operation::IpBanRemove { network },
        AdminCommand::Audit { limit } => Operation::Audit {
            limit: Some(limit),
            before: None,
        },
        AdminCommand::Retention {
            room,
            max_age,
            max_messages,
        } => Operation::SetRetention {
            room,
            max_age_seconds: max_age,
            max_messages,
        },
    }
}

/// Runs `op` on the store of a stopped server.
async fn offline(data_dir: &Path, op: Operation) -> Result<Outcome, AdminError> {
    let path = data_dir.join(STORE_FILE);
    if !path.is_file() {
        return Err(AdminError::NoStore(path));
    }
    let store = match Store::open(&path, CACHE_BYTES, Box::new(|_| {})) {
        Ok(store) => store,
        Err(StoreError::InUse) => return Err(AdminError::Unreachable(data_dir.to_owned())),
        Err(e) => return Err(AdminError::Store(e)),
    };
    let outcome = ops::execute(&store, Actor::Operator, op, unix_ms(SystemTime::now())).await;
    store.close().await;
    outcome.map_err(AdminError::Refused)
}

fn print(outcome: &Outcome) -> Result<(), AdminError> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    for line in lines(outcome) {
        writeln!(out, "{line}")?;
    }
    out.flush()?;
    Ok(())
}

/// An end time as text: RFC 3339, or `-` for none.
fn until(until_ms: Option<u64>) -> String {
    until_ms.map_or_else(|| "-".to_owned(), ops::rfc3339)
}

/// The lines an outcome prints as.
fn lines(outcome: &Outcome) -> Vec<String> {
    match outcome {
        Outcome::User(user) => {
            let role = match user.role {
                Role::Admin => "admin",
                Role::User => "user",
            };
            vec![format!("{role}\t{}", user.username)]
        }
        Outcome::Ban(ban) => vec![format!(
            "banned\t{}\t{}\t{}",
            ban.user.username,
            until(ban.until_ms),
            ban.reason
        )],
        Outcome::Unbanned(unban) => {
            let word = if unban.changed {
                "unbanned"
            } else {
                "not banned"
            };
            vec![format!("{word}\t{}", unban.user.username)]
        }
        Outcome::Bans(bans) => bans
            .bans
            .iter()
            .map(|ban| {
                format!(
                    "{}\t{}\t{}\t{}",
                    ban.user.username,
                    until(ban.until_ms),
                    ban.by,
                    ban.reason
                )
            })
            .collect(),
        Outcome::IpBan(ban) => vec![format!(
            "banned\t{}\t{}\t{}",
            ban.network,
            until(ban.until_ms),
            ban.reason
        )],
        Outcome::IpBanRemoved(removed) => {
            let word = if removed.changed {
                "removed"
            } else {
                "not banned"
            };
            vec![format!("{word}\t{}", removed.network)]
        }
        Outcome::IpBans(bans) => bans
            .ip_bans
            .iter()
            .map(|ban| {
                format!(
                    "{}\t{}\t{}\t{}",
                    ban.network,
                    until(ban.until_ms),
                    ban.by,
                    ban.reason
                )
            })
            .collect(),
        Outcome::Audit(page) => page
            .entries
            .iter()
            .map(|entry| {
                format!(
                    "{}\t{}\t{}\t{}\t{}\t{}",
                    entry.id,
                    ops::rfc3339(entry.at_ms),
                    entry.actor,
                    entry.action,
                    entry.target,
                    entry.reason.as_deref().unwrap_or("-")
                )
            })
            .collect(),
        Outcome::Retention(set) => {
            let show = |rule: Option<u64>| rule.map_or_else(|| "-".to_owned(), |n| n.to_string());
            vec![format!(
                "retention\t{}\t{}\t{}",
                set.room,
                show(set.max_age_seconds),
                show(set.max_messages)
            )]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_whole_seconds() {
        assert_eq!(parse_duration("30m"), Ok(1800));
        assert_eq!(parse_duration("1h"), Ok(3600));
        assert_eq!(parse_duration("7d"), Ok(7 * 86_400));
        assert_eq!(parse_duration("1h 30m"), Ok(5400));
        for bad in ["", "0s", "soon", "1.5s", "-1h"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }
}
