//! The benchmark's result: the command line, the scenario, one result per transport and, when
//! both ran, WebTransport's key figures over WebSocket's; rendered as compact tables for people
//! or as JSON (`--json`) for scripts.

use std::fmt::Write;

use clap::ValueEnum;
use serde::Serialize;

use crate::accounts::AccountsSummary;
use crate::args::{ChatArgs, ScenarioKind};
use crate::compare::{Ratios, SummaryRatios};
use crate::plan::Plan;
use crate::run::{RunResult, Status};
use crate::server_cpu::ServerCost;
use crate::stats::{RunStats, Summary};
use crate::table::Table;

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The command line, quoted for a shell.
    pub command: String,
    pub scenario: Scenario,
    /// How the bots' accounts (of every run) were obtained, before the first run.
    pub accounts: AccountsSummary,
    pub runs: Vec<RunResult>,
    /// WebTransport's figures divided by WebSocket's, when both runs have figures.
    pub webtransport_over_websocket: Option<Ratios>,
    /// Every run complete and clean: the exit status is 0.
    pub ok: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Scenario {
    /// The `--server` URLs, comma-separated.
    pub server: String,
    /// How many: above 1, the nodes of a fleet (bot i on node i mod nodes).
    pub nodes: usize,
    pub transport: String,
    /// The `--scenario` preset.
    pub kind: ScenarioKind,
    pub rooms: u32,
    pub users_per_room: u32,
    /// Members of each room that join late (they send nothing).
    pub late_per_room: u32,
    /// Messages per user (from --duration x --rate when a duration was given).
    pub messages: u32,
    /// The `--duration`, if one was given instead of --messages.
    pub duration_s: Option<u32>,
    pub warmup: u32,
    /// Messages per second per user; 0: window of `in_flight`.
    pub rate: f64,
    /// Bytes of each message's text.
    pub message_size: u32,
    pub in_flight: u32,
    pub timeout_s: u64,
    /// Per transport.
    pub bots: u64,
    pub planned_sends: u64,
    pub expected_deliveries: u64,
}

impl Report {
    pub fn new(
        command: String,
        args: &ChatArgs,
        plan: &Plan,
        accounts: AccountsSummary,
        runs: Vec<RunResult>,
    ) -> Report {
        let transport = args
            .transport
            .to_possible_value()
            .map(|value| value.get_name().to_owned())
            .unwrap_or_default();
        let stats_of = |name: &str| {
            runs.iter()
                .find(|run| run.transport == name)
                .and_then(|run| run.stats.as_ref())
        };
        let webtransport_over_websocket = match (stats_of("webtransport"), stats_of("websocket")) {
            (Some(wt), Some(ws)) => Some(Ratios::of(wt, ws)),
            _ => None,
        };
        let ok = !runs.is_empty() && runs.iter().all(RunResult::ok);
        Report {
            command,
            scenario: Scenario {
                server: args.server.join(","),
                nodes: args.server.len(),
                transport,
                kind: args.scenario,
                rooms: plan.rooms,
                users_per_room: plan.users_per_room,
                late_per_room: plan.late_per_room,
                messages: plan.messages,
                duration_s: args.duration,
                warmup: args.warmup,
                rate: args.rate,
                message_size: args.message_size,
                in_flight: args.in_flight,
                timeout_s: args.timeout(),
                bots: plan.bots(),
                planned_sends: plan.sends(),
                expected_deliveries: plan.deliveries(),
            },
            accounts,
            runs,
            webtransport_over_websocket,
            ok,
        }
    }

    pub fn json(&self) -> serde_json::Result<String> {
        serde_json::to_string_pretty(self)
    }

    /// The human report.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let s = &self.scenario;
        let _ = writeln!(out, "$ {}", self.command);
        if s.nodes > 1 {
            let _ = writeln!(
                out,
                "{}; {} nodes {} (bot i on node i mod {})\n",
                s.summary(),
                s.nodes,
                s.server,
                s.nodes
            );
        } else {
            let _ = writeln!(out, "{}; server {}\n", s.summary(), s.server);
        }
        let _ = writeln!(out, "{}\n", self.accounts.text());
        out.push_str(&self.counts_table().render());
        out.push('\n');
        out.push_str(&self.latency_table().render());
        out.push_str(&self.notes());
        let _ = writeln!(out, "\nresult: {}", self.verdict());
        out
    }

    /// Counts and throughput, one column per transport (and WT/WS).
    fn counts_table(&self) -> Table {
        let ratios = self.webtransport_over_websocket.as_ref();
        let mut table = Table::default();
        let mut header = vec![String::new()];
        header.extend(self.runs.iter().map(|run| run.transport.to_owned()));
        if ratios.is_some() {
            header.push("WT/WS".into());
        }
        table.row(header);
        let status: Vec<String> = self
            .runs
            .iter()
            .map(|run| status_name(run.status).into())
            .collect();
        table.row(std::iter::once("status".to_owned()).chain(status));
        type Figure = fn(&RunStats) -> String;
        let figures: [(&str, Figure); 10] = [
            ("sent / planned", |s| format!("{} / {}", s.sent, s.planned)),
            ("acked", |s| s.acked.to_string()),
            ("rejected", |s| s.rejected.to_string()),
            ("unanswered", |s| s.unanswered.to_string()),
            ("delivered / expected", |s| {
                format!("{} / {}", s.delivered, s.expected)
            }),
            ("lost", |s| s.lost.to_string()),
            ("duplicated", |s| s.duplicated.to_string()),
            ("out of order", |s| s.out_of_order.to_string()),
            ("unexpected", |s| s.unexpected.to_string()),
            ("errors", |s| s.errors.to_string()),
        ];
        for (label, figure) in figures {
            table.row(std::iter::once(label.to_owned()).chain(self.cells(figure)));
        }
        let mut rates: Vec<FigureRow> = vec![
            (
                "acked msgs/s",
                |s| format!("{:.1}", s.throughput.acked_per_s),
                ratios.and_then(|r| r.acked_per_s),
            ),
            (
                "delivered msgs/s",
                |s| format!("{:.1}", s.throughput.delivered_per_s),
                ratios.and_then(|r| r.delivered_per_s),
            ),
        ];
        if self.runs.iter().any(has_server_cost) {
            rates.extend(server_rows(ratios));
        }
        for (label, figure, ratio) in rates {
            let mut row: Vec<String> = std::iter::once(label.to_owned())
                .chain(self.cells(figure))
                .collect();
            if ratios.is_some() {
                row.push(format_ratio(ratio));
            }
            table.row(row);
        }
        table
    }

    /// One cell per run: the figure, or a dash for a run without figures.
    fn cells(&self, figure: fn(&RunStats) -> String) -> Vec<String> {
        self.runs
            .iter()
            .map(|run| run.stats.as_ref().map_or_else(|| "-".to_owned(), figure))
            .collect()
    }

    /// Latency percentiles per figure and transport, with the WT/WS ratio row.
    fn latency_table(&self) -> Table {
        let mut table = Table::default();
        table.row([
            "latency (ms)",
            "",
            "p50",
            "p90",
            "p99",
            "p99.9",
            "max",
            "count",
        ]);
        type Pick = fn(&RunStats) -> &Summary;
        type PickRatio = fn(&Ratios) -> &SummaryRatios;
        let figures: [(&str, Pick, PickRatio); 4] = [
            ("ack", |s| &s.latency_us.ack, |r| &r.ack),
            ("fan-out", |s| &s.latency_us.fanout, |r| &r.fanout),
            (
                "connect+join",
                |s| &s.latency_us.connect_join,
                |r| &r.connect_join,
            ),
            (
                "late connect+join",
                |s| &s.latency_us.late_connect_join,
                |r| &r.late_connect_join,
            ),
        ];
        let late = self.scenario.late_per_room > 0;
        for (label, pick, pick_ratio) in figures {
            if label.starts_with("late") && !late {
                continue;
            }
            let mut first = true;
            for run in &self.runs {
                let Some(stats) = &run.stats else { continue };
                let name = if first { label } else { "" };
                first = false;
                let summary = pick(stats);
                let mut row = vec![name.to_owned(), short_name(run.transport).to_owned()];
                if summary.count == 0 {
                    row.extend(["-", "-", "-", "-", "-", "0"].map(String::from));
                } else {
                    row.extend(
                        [
                            summary.p50,
                            summary.p90,
                            summary.p99,
                            summary.p99_9,
                            summary.max,
                        ]
                        .map(format_ms),
                    );
                    row.push(summary.count.to_string());
                }
                table.row(row);
            }
            if let Some(ratios) = &self.webtransport_over_websocket {
                let r = pick_ratio(ratios);
                let mut row = vec![String::new(), "WT/WS".to_owned()];
                row.extend([r.p50, r.p90, r.p99, r.p99_9, r.max].map(format_ratio));
                table.row(row);
            }
        }
        table
    }

    /// Errors of failed runs, rejection codes and error samples.
    fn notes(&self) -> String {
        let mut out = String::new();
        let summed = self
            .runs
            .iter()
            .filter_map(|run| run.stats.as_ref()?.server.as_ref())
            .find(|cost| cost.pids.len() > 1);
        if let Some(cost) = summed {
            let pids: Vec<String> = cost.pids.iter().map(u32::to_string).collect();
            let _ = writeln!(
                out,
                "\nserver figures: the sum of processes {}",
                pids.join(", ")
            );
        }
        for run in &self.runs {
            write_notes(&mut out, run.transport, run);
        }
        out
    }

    /// "OK", or what went wrong.
    pub fn verdict(&self) -> String {
        if self.ok {
            return "OK".into();
        }
        let problems: Vec<String> = self
            .runs
            .iter()
            .filter(|run| !run.ok())
            .map(|run| format!("{}: {}", run.transport, problems(run).join(", ")))
            .collect();
        if problems.is_empty() {
            return "FAILED".into();
        }
        format!("FAILED ({})", problems.join("; "))
    }
}

impl Scenario {
    /// One line: the preset, its rooms and bots, messages and pace.
    pub fn summary(&self) -> String {
        let kind = self
            .kind
            .to_possible_value()
            .map(|value| value.get_name().to_owned())
            .unwrap_or_default();
        let pace = if self.rate <= 0.0 {
            format!("as fast as acks allow ({} in flight)", self.in_flight)
        } else {
            format!("at {}/s", self.rate)
        };
        let late = if self.late_per_room > 0 {
            format!(" ({} joining late)", self.late_per_room)
        } else {
            String::new()
        };
        let messages = match self.duration_s {
            Some(secs) => format!("{} messages per user ({secs} s)", self.messages),
            None => format!("{} messages per user", self.messages),
        };
        format!(
            "{kind}: {} rooms x {} users{late} = {} bots per transport; {messages} (+{} warmup) {pace}",
            self.rooms, self.users_per_room, self.bots, self.warmup
        )
    }
}

/// Whether `run` has server-cost figures (`--server-pid`).
fn has_server_cost(run: &RunResult) -> bool {
    run.stats.as_ref().is_some_and(|s| s.server.is_some())
}

/// A row of figures: its label, the figure of one run, the WT/WS ratio.
type FigureRow = (&'static str, fn(&RunStats) -> String, Option<f64>);

/// The server-cost rows of the counts table (a dash where a figure is missing).
fn server_rows(ratios: Option<&Ratios>) -> [FigureRow; 5] {
    fn cost(stats: &RunStats, figure: fn(&ServerCost) -> Option<String>) -> String {
        stats
            .server
            .as_ref()
            .and_then(figure)
            .unwrap_or_else(|| "-".to_owned())
    }
    [
        (
            "server CPU-us/delivery",
            |s| cost(s, |c| c.cpu_us_per_delivery.map(|v| format!("{v:.2}"))),
            ratios.and_then(|r| r.server_cpu_us_per_delivery),
        ),
        (
            "server CPU-us/ack",
            |s| cost(s, |c| c.cpu_us_per_ack.map(|v| format!("{v:.1}"))),
            ratios.and_then(|r| r.server_cpu_us_per_ack),
        ),
        (
            "server CPU % of a core",
            |s| cost(s, |c| c.cpu_percent_of_core.map(|v| format!("{v:.1}"))),
            None,
        ),
        (
            "server RSS MiB (end)",
            |s| {
                cost(s, |c| {
                    c.rss_end_kib.map(|v| format!("{:.1}", v as f64 / 1024.0))
                })
            },
            None,
        ),
        (
            "server RSS KiB/conn",
            |s| {
                cost(s, |c| {
                    c.rss_per_connection_bytes
                        .map(|v| format!("{:.1}", v as f64 / 1024.0))
                })
            },
            None,
        ),
    ]
}

/// What is wrong with a run, in a few words each.
pub fn problems(run: &RunResult) -> Vec<String> {
    let mut problems = Vec::new();
    if run.status != Status::Complete {
        problems.push(status_name(run.status).to_owned());
    }
    if let Some(s) = &run.stats {
        let counts = [
            (s.planned.saturating_sub(s.sent), "not sent"),
            (s.lost, "lost"),
            (s.duplicated, "duplicated"),
            (s.out_of_order, "out of order"),
            (s.unexpected, "unexpected"),
            (s.rejected, "rejected"),
            (s.unanswered, "unanswered"),
            (s.errors, "errors"),
        ];
        problems.extend(
            counts
                .into_iter()
                .filter(|(n, _)| *n > 0)
                .map(|(n, what)| format!("{n} {what}")),
        );
    }
    problems
}

pub fn status_name(status: Status) -> &'static str {
    match status {
        Status::Complete => "complete",
        Status::TimedOut => "timed out",
        Status::Interrupted => "interrupted",
        Status::Failed => "failed",
        Status::Cut => "cut at the step's end",
    }
}

fn short_name(transport: &str) -> &'static str {
    match transport {
        "webtransport" => "WT",
        "websocket" => "WS",
        _ => "?",
    }
}

pub fn format_ms(us: u64) -> String {
    format!("{:.2}", us as f64 / 1000.0)
}

pub fn format_ratio(ratio: Option<f64>) -> String {
    ratio.map_or_else(|| "-".to_owned(), |r| format!("{r:.2}"))
}

/// What went wrong in `run` (labelled `label`): its error, why it has no server cost, its
/// rejection codes and error samples, each after a blank line.
pub fn write_notes(out: &mut String, label: &str, run: &RunResult) {
    if let Some(error) = &run.error {
        let _ = writeln!(out, "\n{label}: {error}");
    }
    let Some(stats) = &run.stats else { return };
    if let Some(error) = stats.server.as_ref().and_then(|c| c.error.as_ref()) {
        let _ = writeln!(out, "\n{label}: no server cost: {error}");
    }
    for (code, n) in &stats.rejected_by_code {
        let _ = writeln!(out, "\n{label}: {n} rejected with {code}");
    }
    if !stats.error_samples.is_empty() {
        let _ = writeln!(out, "\n{label} errors ({} in all):", stats.errors);
        for (error, n) in &stats.error_samples {
            let _ = writeln!(out, "  {n} x {error}");
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::args::{Cli, Command};
    use crate::stats::aggregate;

    fn args(extra: &[&str]) -> ChatArgs {
        let cli = Cli::try_parse_from(["quibble-bench", "chat"].iter().chain(extra)).unwrap();
        let Command::Chat(args) = cli.command else {
            panic!("parsed `chat`")
        };
        args
    }

    fn run(transport: &'static str, status: Status, stats: Option<RunStats>) -> RunResult {
        RunResult {
            transport,
            status,
            error: stats.is_none().then(|| "cannot connect".to_owned()),
            stats,
        }
    }

    #[test]
    fn a_failed_run_fails_the_report_and_says_why() {
        let plan = Plan::new(1, 1, 0, 1).unwrap();
        let empty = aggregate(&[], 1).unwrap();
        let report = Report::new(
            "quibble-bench chat".into(),
            &args(&[]),
            &plan,
            AccountsSummary::default(),
            vec![
                run("webtransport", Status::TimedOut, Some(empty)),
                run("websocket", Status::Failed, None),
            ],
        );
        assert!(!report.ok);
        assert_eq!(
            report.verdict(),
            "FAILED (webtransport: timed out, 1 not sent; websocket: failed)"
        );
        let text = report.text();
        assert!(text.starts_with("$ quibble-bench chat\n"), "{text}");
        assert!(text.contains("websocket: cannot connect"), "{text}");
        let json: serde_json::Value = serde_json::from_str(&report.json().unwrap()).unwrap();
        assert_eq!(json["runs"][1]["status"], "failed");
        assert_eq!(json["scenario"]["expected_deliveries"], 1);
        assert!(json["webtransport_over_websocket"].is_null());
    }

    #[test]
    fn server_cost_rows_show_figures_dashes_and_why_one_is_missing() {
        let plan = Plan::new(1, 1, 0, 1).unwrap();
        let mut measured = aggregate(&[], 1).unwrap();
        measured.server = Some(ServerCost {
            pid: 7,
            pids: Vec::new(),
            window_s: Some(2.0),
            cpu_us: Some(500_000),
            cpu_us_per_delivery: Some(12.5),
            cpu_us_per_ack: Some(125.0),
            cpu_percent_of_core: Some(25.0),
            rss_start_kib: Some(10_240),
            rss_end_kib: Some(20_480),
            rss_per_connection_bytes: Some(524_288),
            error: None,
        });
        let mut gone = aggregate(&[], 1).unwrap();
        gone.server = Some(ServerCost::missing(7, "cannot read /proc/7/stat".into()));
        let report = Report::new(
            "quibble-bench chat".into(),
            &args(&["--server-pid", "7"]),
            &plan,
            AccountsSummary::default(),
            vec![
                run("webtransport", Status::Complete, Some(measured)),
                run("websocket", Status::Complete, Some(gone)),
            ],
        );
        let text = report.text();
        let row = |label: &str| {
            text.lines()
                .find(|line| line.starts_with(label))
                .map(|line| line.split_whitespace().collect::<Vec<_>>())
                .unwrap_or_default()
        };
        assert_eq!(row("server CPU-us/delivery")[2..], ["12.50", "-", "-"]);
        assert_eq!(row("server RSS MiB (end)")[4..], ["20.0", "-", "-"]);
        assert_eq!(row("server RSS KiB/conn")[3..], ["512.0", "-", "-"]);
        assert!(
            text.contains("websocket: no server cost: cannot read /proc/7/stat"),
            "{text}"
        );
        let json: serde_json::Value = serde_json::from_str(&report.json().unwrap()).unwrap();
        assert_eq!(
            json["runs"][0]["stats"]["server"]["cpu_us_per_delivery"],
            12.5
        );
        assert!(json["runs"][1]["stats"]["server"]["cpu_us"].is_null());
        assert!(json["webtransport_over_websocket"]["server_cpu_us_per_delivery"].is_null());
        assert!(json["runs"][0]["stats"]["server"].get("pids").is_none());
        assert!(!text.contains("sum of processes"), "{text}");
        assert_eq!(json["scenario"]["nodes"], 1);
    }

    #[test]
    fn a_fleet_report_names_its_nodes_and_sums_their_processes() {
        let plan = Plan::new(1, 1, 0, 1).unwrap();
        let mut measured = aggregate(&[], 1).unwrap();
        measured.server = Some(ServerCost {
            pids: vec![7, 8, 9],
            ..ServerCost::missing(7, "not read".into())
        });
        let report = Report::new(
            "quibble-bench chat".into(),
            &args(&[
                "--server",
                "http://a:1,http://b:2",
                "--server",
                "http://c:3",
            ]),
            &plan,
            AccountsSummary::default(),
            vec![run("websocket", Status::Complete, Some(measured))],
        );
        let text = report.text();
        assert!(
            text.contains("; 3 nodes http://a:1,http://b:2,http://c:3 (bot i on node i mod 3)"),
            "{text}"
        );
        assert!(
            text.contains("server figures: the sum of processes 7, 8, 9"),
            "{text}"
        );
        let json: serde_json::Value = serde_json::from_str(&report.json().unwrap()).unwrap();
        assert_eq!(json["scenario"]["nodes"], 3);
        assert_eq!(
            json["runs"][0]["stats"]["server"]["pids"],
            serde_json::json!([7, 8, 9])
        );
    }
}
