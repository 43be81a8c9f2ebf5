//! The result of `quibble-bench idle`: the scenario, how many connections were opened and
//! stayed up, the server's resident memory at each reading and what one idle connection
//! costs, judged against the optional budget; rendered as text for people or as JSON
//! (`--json`) for scripts.

use std::fmt::Write;

use serde::Serialize;

use crate::accounts::AccountsSummary;
use crate::args::{IdleArgs, transport_name};
use crate::stats::Summary;
use crate::table::Table;

#[derive(Debug, Clone, Serialize)]
pub struct IdleReport {
    /// The command line, quoted for a shell.
    pub command: String,
    pub server: String,
    pub transport: &'static str,
    pub connections: u64,
    pub users: u32,
    pub hold_s: u64,
    /// The soft open-file limit of the bench (`None`: unlimited).
    pub open_file_limit: Option<u64>,
    pub server_pid: Option<u32>,
    /// How the users' accounts were obtained (before the first reading).
    pub accounts: AccountsSummary,
    /// Connections welcomed and joined.
    pub opened: u64,
    /// Handshakes in flight at once (`--at-once`).
    pub at_once: u32,
    /// Seconds to open and join them all.
    pub connect_s: f64,
    /// Connections opened per second over those seconds.
    pub handshakes_per_s: f64,
    /// Per connection: connect, Hello -> Welcome, Join -> Joined (µs).
    pub connect_join_us: Summary,
    /// UDP sockets the WebTransport sessions shared (0 for WebSocket).
    pub udp_sockets: u64,
    /// The ramp in steps (quarters of the connections, in the order they were joined).
    pub ramp: Vec<RampStep>,
    /// Connections up after the hold.
    pub alive: u64,
    /// Connections lost (and reconnected by the client) during the hold.
    pub disconnects: u64,
    /// Server RSS readings, KiB (with `--server-pid`).
    pub memory: Memory,
    /// Bytes one connection costs the server (with `--server-pid`).
    pub per_connection: PerConnection,
    pub max_bytes_per_connection: Option<u64>,
    /// Why the run did not complete, if it did not.
    pub error: Option<String>,
    /// Every connection opened and stayed up, within the budget if one was given.
    pub ok: bool,
}

/// One step of the ramp: the connections joined in it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RampStep {
    /// Connections joined by the end of the step.
    pub connections: u64,
    /// Seconds from the first connect to the step's last Joined.
    pub at_s: f64,
    /// The step's connections per second (from the previous step's end to this one's).
    pub handshakes_per_s: f64,
    /// Connect+join of the step's connections (µs).
    pub connect_join_us: Summary,
}

/// The server's VmRSS in KiB at each reading.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Memory {
    pub before_kib: Option<u64>,
    pub joined_kib: Option<u64>,
    pub held_kib: Option<u64>,
    pub closed_kib: Option<u64>,
}

/// Growth over the first reading per connection opened, in bytes.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct PerConnection {
    pub joined_bytes: Option<u64>,
    pub held_bytes: Option<u64>,
}

impl IdleReport {
    /// A report of nothing done yet.
    pub fn new(args: &IdleArgs, open_file_limit: Option<u64>, server_pid: Option<u32>) -> Self {
        IdleReport {
            command: crate::args::command_line(),
            server: args.server.clone(),
            transport: transport_name(args.transport.kind()),
            connections: u64::from(args.connections),
            users: args.users,
            hold_s: args.hold,
            open_file_limit,
            server_pid,
            accounts: AccountsSummary::default(),
            opened: 0,
            at_once: args.at_once,
            connect_s: 0.0,
            handshakes_per_s: 0.0,
            connect_join_us: Summary::default(),
            udp_sockets: 0,
            ramp: Vec::new(),
            alive: 0,
            disconnects: 0,
            memory: Memory::default(),
            per_connection: PerConnection::default(),
            max_bytes_per_connection: args.max_bytes_per_connection,
            error: None,
            ok: false,
        }
    }

    /// Record the readings, derive the per-connection costs and the verdict.
    pub fn set_memory(&mut self, memory: Memory) {
        self.memory = memory;
        let per = |after: Option<u64>| match (memory.before_kib, after) {
            (Some(before), Some(after)) if self.opened > 0 => {
                Some(after.saturating_sub(before) * 1024 / self.opened)
            }
            _ => None,
        };
        self.per_connection = PerConnection {
            joined_bytes: per(memory.joined_kib),
            held_bytes: per(memory.held_kib),
        };
        let within_budget = match self.max_bytes_per_connection {
            Some(max) => self.per_connection.held_bytes.is_some_and(|b| b <= max),
            None => true,
        };
        self.ok = self.error.is_none()
            && self.opened == self.connections
            && self.alive == self.opened
            && self.disconnects == 0
            && within_budget;
    }

    pub fn json(&self) -> serde_json::Result<String> {
        serde_json::to_string_pretty(self)
    }

    pub fn text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "{}", self.command);
        let _ = writeln!(
            out,
            "idle {} connections: {} over {} users, held {} s",
            self.transport, self.connections, self.users, self.hold_s
        );
        if let Some(error) = &self.error {
            let _ = writeln!(out, "error: {error}");
        }
        let _ = writeln!(out, "{}", self.accounts.text());
        let _ = writeln!(
            out,
            "opened {}/{} in {:.1} s ({:.0} handshakes/s, {} at once{}); alive after the hold {}; \
             disconnects {}",
            self.opened,
            self.connections,
            self.connect_s,
            self.handshakes_per_s,
            self.at_once,
            if self.udp_sockets > 0 {
                format!(", {} UDP sockets", self.udp_sockets)
            } else {
                String::new()
            },
            self.alive,
            self.disconnects
        );
        let j = &self.connect_join_us;
        if j.count > 0 {
            let _ = writeln!(
                out,
                "connect+join ms: p50 {}, p90 {}, p99 {}, p99.9 {}, max {}",
                ms(j.p50),
                ms(j.p90),
                ms(j.p99),
                ms(j.p99_9),
                ms(j.max)
            );
        }
        if self.ramp.len() > 1 {
            let mut table = Table::default();
            table.row(["ramp", "at s", "handshakes/s", "p50 ms", "p99 ms", "max ms"]);
            for step in &self.ramp {
                let j = &step.connect_join_us;
                table.row([
                    step.connections.to_string(),
                    format!("{:.1}", step.at_s),
                    format!("{:.0}", step.handshakes_per_s),
                    ms(j.p50),
                    ms(j.p99),
                    ms(j.max),
                ]);
            }
            out.push_str(&table.render());
        }
        if let Some(pid) = self.server_pid {
            let m = &self.memory;
            let _ = writeln!(
                out,
                "server RSS (pid {pid}): before {}, joined {}, after the hold {}, closed {}",
                mib(m.before_kib),
                mib(m.joined_kib),
                mib(m.held_kib),
                mib(m.closed_kib)
            );
            let p = &self.per_connection;
            let _ = write!(
                out,
                "per idle connection: {} joined, {} after the hold",
                bytes(p.joined_bytes),
                bytes(p.held_bytes)
            );
            match self.max_bytes_per_connection {
                Some(max) => {
                    let verdict = if self.ok { "ok" } else { "NOT MET" };
                    let _ = writeln!(out, " (budget {max} B: {verdict})");
                }
                None => out.push('\n'),
            }
        }
        let _ = writeln!(out, "{}", if self.ok { "ok" } else { "FAILED" });
        out
    }
}

fn ms(us: u64) -> String {
    format!("{:.2}", us as f64 / 1000.0)
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or_else(|| "-".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0))
}

fn bytes(b: Option<u64>) -> String {
    b.map_or_else(
        || "-".into(),
        |b| format!("{b} B ({:.1} KiB)", b as f64 / 1024.0),
    )
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::args::{Cli, Command};

    fn report(extra: &[&str]) -> IdleReport {
        let args = ["quibble-bench", "idle", "--transport", "websocket"]
            .iter()
            .chain(["--connections", "100"].iter())
            .chain(extra);
        let Ok(Cli {
            command: Command::Idle(args),
        }) = Cli::try_parse_from(args)
        else {
            panic!("idle arguments")
        };
        IdleReport::new(&args, Some(20_000), args.server_pid)
    }

    #[test]
    fn per_connection_cost_and_budget() {
        let mut r = report(&["--server-pid", "1", "--max-bytes-per-connection", "8192"]);
        r.opened = 100;
        r.alive = 100;
        r.set_memory(Memory {
            before_kib: Some(10_000),
            joined_kib: Some(10_500),
            held_kib: Some(10_700),
            closed_kib: Some(10_100),
        });
        assert_eq!(r.per_connection.joined_bytes, Some(5_120));
        assert_eq!(r.per_connection.held_bytes, Some(7_168));
        assert!(r.ok);
        assert!(r.text().contains("budget 8192 B: ok"), "{}", r.text());

        r.set_memory(Memory {
            held_kib: Some(11_000),
            ..r.memory
        });
        assert_eq!(r.per_connection.held_bytes, Some(10_240));
        assert!(!r.ok);
        assert!(r.text().contains("NOT MET"));
    }

    #[test]
    fn a_dropped_or_missing_connection_fails_the_run() {
        let mut r = report(&[]);
        r.opened = 100;
        r.alive = 100;
        r.set_memory(Memory::default());
        assert!(r.ok, "without a pid only the connections count");
        assert_eq!(r.per_connection.held_bytes, None);
        r.disconnects = 1;
        r.set_memory(Memory::default());
        assert!(!r.ok);
        r.disconnects = 0;
        r.opened = 99;
        r.alive = 99;
        r.set_memory(Memory::default());
        assert!(!r.ok);
        let json: serde_json::Value = serde_json::from_str(&r.json().unwrap()).unwrap();
        assert_eq!(json["transport"], "websocket");
        assert_eq!(json["opened"], 99);
    }
}
