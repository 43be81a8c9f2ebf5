//! The figures of `quibble-bench ingest` and how they are shown: one [`IngestRun`] per
//! transport, the store's group-commit counters read from the server's `/metrics`
//! ([`StoreReading`], [`StoreStats`]), and the whole [`IngestReport`] as a text table (one
//! column per transport) or JSON.

use std::collections::BTreeMap;
use std::time::Instant;

use serde::Serialize;

use crate::accounts::AccountsSummary;
use crate::args::command_line;
use crate::ingest::IngestArgs;
use crate::server_cpu::ServerCost;
use crate::stats::Summary;
use crate::table::Table;

/// `/metrics` counter: store write transactions committed (each one fsync).
const COMMITS: &str = "quibble_store_commits_total";
/// `/metrics` counter: messages those commits appended.
const COMMITTED_MESSAGES: &str = "quibble_store_committed_messages_total";

/// The store's counters at one moment.
#[derive(Debug, Clone, Copy)]
pub struct StoreReading {
    at: Instant,
    commits: u64,
    messages: u64,
}

impl StoreReading {
    /// The counters in a Prometheus text exposition; an error names what is missing (a server
    /// older than these counters has none).
    pub fn parse(text: &str, at: Instant) -> Result<StoreReading, String> {
        let value = |name: &str| {
            text.lines()
                .filter_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
                .find_map(|value| value.trim().parse::<f64>().ok())
                .map(|value| value as u64)
                .ok_or_else(|| format!("the server's /metrics has no {name}"))
        };
        Ok(StoreReading {
            at,
            commits: value(COMMITS)?,
            messages: value(COMMITTED_MESSAGES)?,
        })
    }
}

/// The store's group commit over the window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoreStats {
    pub commits: Option<u64>,
    pub commits_per_s: Option<f64>,
    /// Messages committed in the window.
    pub messages: Option<u64>,
    pub messages_per_commit: Option<f64>,
    /// Why the figures are missing.
    pub error: Option<String>,
}

impl StoreStats {
    /// The figures between two readings (missing, with the reason, if either failed).
    pub fn between(
        start: Result<StoreReading, String>,
        end: Result<StoreReading, String>,
    ) -> StoreStats {
        match (start, end) {
            (Ok(start), Ok(end)) => {
                let commits = end.commits.saturating_sub(start.commits);
                let messages = end.messages.saturating_sub(start.messages);
                let seconds = end.at.saturating_duration_since(start.at).as_secs_f64();
                StoreStats {
                    commits: Some(commits),
                    commits_per_s: (seconds > 0.0).then(|| commits as f64 / seconds),
                    messages: Some(messages),
                    messages_per_commit: (commits > 0).then(|| messages as f64 / commits as f64),
                    error: None,
                }
            }
            (Err(error), _) | (_, Err(error)) => StoreStats {
                commits: None,
                commits_per_s: None,
                messages: None,
                messages_per_commit: None,
                error: Some(error),
            },
        }
    }
}

/// One transport's run.
#[derive(Debug, Clone, Serialize)]
pub struct IngestRun {
    pub transport: &'static str,
    /// Why it failed (the figures are then zero).
    pub error: Option<String>,
    pub window_s: f64,
    /// Acks inside the window per second.
    pub acked_per_s: f64,
    /// Send -> ack of those acks, µs.
    pub ack_us: Summary,
    pub sent: u64,
    pub acked: u64,
    pub rejected: u64,
    pub rejected_by_code: BTreeMap<String, u64>,
    pub unanswered: u64,
    pub errors: u64,
    /// Each distinct error with its count.
    pub error_samples: Vec<(String, u64)>,
    pub store: StoreStats,
    /// With `--server-pid`: the server's CPU over the window.
    pub server: Option<ServerCost>,
}

impl IngestRun {
    /// A run that could not be set up or was stopped.
    pub fn failed(transport: &'static str, error: &anyhow::Error) -> IngestRun {
        IngestRun {
            transport,
            error: Some(format!("{error:#}")),
            window_s: 0.0,
            acked_per_s: 0.0,
            ack_us: Summary::default(),
            sent: 0,
            acked: 0,
            rejected: 0,
            rejected_by_code: BTreeMap::new(),
            unanswered: 0,
            errors: 0,
            error_samples: Vec::new(),
            store: StoreStats::between(Err("not run".into()), Err("not run".into())),
            server: None,
        }
    }

    /// Finished, and nothing refused, unanswered or wrong.
    pub fn ok(&self) -> bool {
        self.error.is_none() && self.rejected == 0 && self.unanswered == 0 && self.errors == 0
    }
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct IngestReport {
    pub command: String,
    pub senders: u32,
    pub one_room: bool,
    pub in_flight: u32,
    pub message_size: u32,
    pub accounts: AccountsSummary,
    pub runs: Vec<IngestRun>,
    pub ok: bool,
}

impl IngestReport {
    pub fn new(args: &IngestArgs, accounts: AccountsSummary, runs: Vec<IngestRun>) -> Self {
        IngestReport {
            command: command_line(),
            senders: args.senders,
            one_room: args.one_room,
            in_flight: args.in_flight,
            message_size: args.message_size,
            accounts,
            ok: !runs.is_empty() && runs.iter().all(IngestRun::ok),
            runs,
        }
    }

    pub fn json(&self) -> serde_json::Result<String> {
        serde_json::to_string_pretty(self)
    }

    pub fn text(&self) -> String {
        let mut out = format!("{}\n", self.command);
        let rooms = if self.one_room {
            "all in one room"
        } else {
            "a room each"
        };
        out.push_str(&format!(
            "ingest: {} senders ({rooms}), {} in flight each, {}-byte messages\n{}\n\n",
            self.senders,
            self.in_flight,
            self.message_size,
            self.accounts.text()
        ));
        let mut table = Table::default();
        let column =
            |f: &dyn Fn(&IngestRun) -> String| -> Vec<String> { self.runs.iter().map(f).collect() };
        let row = |table: &mut Table, label: &str, f: &dyn Fn(&IngestRun) -> String| {
            table.row(std::iter::once(label.to_owned()).chain(column(f)));
        };
        let ms = |us: u64| format!("{:.2}", us as f64 / 1000.0);
        let or_dash = |v: Option<f64>, digits: usize| {
            v.map_or_else(|| "-".to_owned(), |v| format!("{v:.digits$}"))
        };
        row(&mut table, "", &|r| r.transport.to_owned());
        row(&mut table, "acked msgs/s", &|r| {
            format!("{:.0}", r.acked_per_s)
        });
        row(&mut table, "ack p50 ms", &|r| ms(r.ack_us.p50));
        row(&mut table, "ack p99 ms", &|r| ms(r.ack_us.p99));
        row(&mut table, "ack max ms", &|r| ms(r.ack_us.max));
        row(&mut table, "commits/s", &|r| {
            or_dash(r.store.commits_per_s, 0)
        });
        row(&mut table, "msgs/commit", &|r| {
            or_dash(r.store.messages_per_commit, 1)
        });
        row(&mut table, "server CPU-us/ack", &|r| {
            or_dash(r.server.as_ref().and_then(|s| s.cpu_us_per_ack), 1)
        });
        row(&mut table, "server CPU %", &|r| {
            or_dash(r.server.as_ref().and_then(|s| s.cpu_percent_of_core), 0)
        });
        row(&mut table, "sent", &|r| r.sent.to_string());
        row(&mut table, "acked", &|r| r.acked.to_string());
        row(&mut table, "rejected", &|r| r.rejected.to_string());
        row(&mut table, "unanswered", &|r| r.unanswered.to_string());
        row(&mut table, "errors", &|r| r.errors.to_string());
        out.push_str(&table.render());
        for run in &self.runs {
            let notes = run
                .error
                .iter()
                .map(|e| format!("failed: {e}"))
                .chain(
                    run.store
                        .error
                        .iter()
                        .map(|e| format!("store figures: {e}")),
                )
                .chain(run.server.iter().filter_map(|s| s.error.clone()))
                .chain(
                    run.rejected_by_code
                        .iter()
                        .map(|(c, n)| format!("rejected {c}: {n}")),
                )
                .chain(run.error_samples.iter().map(|(e, n)| format!("{n}x {e}")));
            for note in notes {
                out.push_str(&format!("{}: {note}\n", run.transport));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn store_counters_are_read_and_turned_into_rates() {
        let t0 = Instant::now();
        let text = "# TYPE quibble_store_commits_total counter\n\
                    quibble_store_commits_total 10\n\
                    quibble_store_committed_messages_total 1000\n";
        let start = StoreReading::parse(text, t0).unwrap();
        let later = "quibble_store_commits_total 30\n\
                     quibble_store_committed_messages_total 5000\n";
        let end = StoreReading::parse(later, t0 + Duration::from_secs(2)).unwrap();
        let stats = StoreStats::between(Ok(start), Ok(end));
        assert_eq!((stats.commits, stats.messages), (Some(20), Some(4000)));
        assert_eq!(stats.commits_per_s, Some(10.0));
        assert_eq!(stats.messages_per_commit, Some(200.0));
        let old = StoreReading::parse("quibble_store_commits_total_x 3\n", t0).unwrap_err();
        assert!(old.contains(COMMITS), "{old}");
        let missing = StoreStats::between(Err(old.clone()), Ok(end));
        assert_eq!((missing.commits, missing.error), (None, Some(old)));
    }
}
