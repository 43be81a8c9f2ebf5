//! The results of an invocation: a human table (the command line first, one column per
//! transport and, with both, their WebSocket/WebTransport ratio) or JSON.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;

use crate::args::ChatArgs;
use crate::stats::{LatencySummary, RunStats};

/// Everything an invocation reports.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub command: String,
    pub config: Config,
    /// Every run was ok.
    pub ok: bool,
    pub runs: Vec<RunStats>,
    /// With two runs: the second's key figures over the first's (WebSocket / WebTransport for
    /// `--transport both`); null where the first is zero.
    pub ratios: Option<BTreeMap<&'static str, Option<f64>>>,
}

/// The options the runs used.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    pub server: String,
    pub transport: &'static str,
    pub rooms: u32,
    pub users_per_room: u32,
    pub messages: u32,
    pub rate: u32,
    pub timeout_s: u64,
}

impl Report {
    pub fn new(command: String, args: &ChatArgs, runs: Vec<RunStats>) -> Report {
        let ratios = match runs.as_slice() {
            [first, second] => Some(
                key_figures(first)
                    .into_iter()
                    .zip(key_figures(second))
                    .map(|((name, a), (_, b))| (name, ratio(b, a)))
                    .collect(),
            ),
            _ => None,
        };
        Report {
            command,
            config: Config {
                server: args.server.clone(),
                transport: args.transport.name(),
                rooms: args.rooms,
                users_per_room: args.users_per_room,
                messages: args.messages,
                rate: args.rate,
                timeout_s: args.timeout,
            },
            ok: !runs.is_empty() && runs.iter().all(|run| run.ok),
            runs,
            ratios,
        }
    }

    pub fn json(&self) -> serde_json::Result<String> {
        serde_json::to_string_pretty(self)
    }

    /// The human table.
    pub fn table(&self) -> String {
        let mut header = vec!["".to_owned()];
        header.extend(self.runs.iter().map(|run| run.transport.clone()));
        if self.ratios.is_some() {
            header.push(format!(
                "{}/{}",
                short(&self.runs[1].transport),
                short(&self.runs[0].transport)
            ));
        }
        let mut rows = vec![header];
        let counts: [(&str, Cell); 9] = [
            ("result", |r| if r.ok { "ok" } else { "FAILED" }.to_owned()),
            ("sent / planned", |r| {
                format!("{} / {}", r.sent, r.planned_sends)
            }),
            ("acked", |r| r.acked.to_string()),
            ("rejected", |r| r.rejected.to_string()),
            ("delivered / expected", |r| {
                format!("{} / {}", r.delivered, r.expected_deliveries)
            }),
            ("lost", |r| r.lost.to_string()),
            ("duplicated", |r| r.duplicated.to_string()),
            ("errors", |r| errors(r)),
            ("timed out", |r| r.timed_out.to_string()),
        ];
        for (label, value) in counts {
            let mut row = vec![label.to_owned()];
            row.extend(self.runs.iter().map(value));
            rows.push(row);
        }
        let figures: Vec<Vec<(&str, f64)>> = self.runs.iter().map(key_figures).collect();
        for (i, (label, _)) in figures.first().into_iter().flatten().enumerate() {
            let mut row = vec![(*label).to_owned()];
            row.extend(figures.iter().map(|run| format_figure(label, run[i].1)));
            if let Some(ratios) = &self.ratios {
                row.push(match ratios.get(label).copied().flatten() {
                    Some(r) => format!("{r:.2}"),
                    None => "-".to_owned(),
                });
            }
            rows.push(row);
        }
        let mut out = format!("{}\n\n", self.command);
        out.push_str(&render(&rows));
        out
    }
}

/// Renders one count of a run for the table.
type Cell = fn(&RunStats) -> String;

/// The figures compared between transports, by name (latencies in ms).
fn key_figures(run: &RunStats) -> Vec<(&'static str, f64)> {
    let ms = |us: u64| us as f64 / 1000.0;
    let latency = |s: &LatencySummary| [ms(s.p50_us), ms(s.p90_us), ms(s.p99_us), ms(s.max_us)];
    let [c50, c90, c99, cmax] = latency(&run.connect_join_us);
    let [a50, a90, a99, amax] = latency(&run.ack_latency_us);
    let [f50, f90, f99, fmax] = latency(&run.fanout_latency_us);
    vec![
        ("connect+join p50 ms", c50),
        ("connect+join p90 ms", c90),
        ("connect+join p99 ms", c99),
        ("connect+join max ms", cmax),
        ("ack p50 ms", a50),
        ("ack p90 ms", a90),
        ("ack p99 ms", a99),
        ("ack max ms", amax),
        ("fan-out p50 ms", f50),
        ("fan-out p90 ms", f90),
        ("fan-out p99 ms", f99),
        ("fan-out max ms", fmax),
        ("acked/s", run.acked_per_s),
        ("delivered/s", run.delivered_per_s),
    ]
}

fn format_figure(label: &str, value: f64) -> String {
    if label.ends_with("/s") {
        format!("{value:.1}")
    } else {
        format!("{value:.3}")
    }
}

fn ratio(numerator: f64, denominator: f64) -> Option<f64> {
    (denominator > 0.0).then(|| numerator / denominator)
}

fn short(transport: &str) -> &str {
    match transport {
        "webtransport" => "WT",
        "websocket" => "WS",
        other => other,
    }
}

fn errors(run: &RunStats) -> String {
    if run.errors.is_empty() {
        return "0".to_owned();
    }
    run.errors
        .iter()
        .map(|(kind, n)| format!("{kind}={n}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Align `rows` in columns: the first left-aligned, the others right-aligned.
fn render(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|row| row.get(c))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            let width = widths[c];
            let _ = if c == 0 {
                write!(line, "{cell:<width$}")
            } else {
                write!(line, "  {cell:>width$}")
            };
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::TransportArg;

    fn run(transport: &str, p50_us: u64, per_s: f64) -> RunStats {
        let latency = LatencySummary {
            count: 1,
            p50_us,
            p90_us: p50_us,
            p99_us: p50_us,
            max_us: p50_us,
        };
        RunStats {
            transport: transport.to_owned(),
            ok: true,
            timed_out: false,
            planned_sends: 1,
            sent: 1,
            acked: 1,
            rejected: 0,
            unacked: 0,
            expected_deliveries: 1,
            expected_fanouts: 0,
            delivered: 1,
            lost: 0,
            duplicated: 0,
            errors: BTreeMap::new(),
            connect_join_us: latency,
            ack_latency_us: latency,
            fanout_latency_us: LatencySummary::default(),
            acked_per_s: per_s,
            delivered_per_s: per_s,
        }
    }

    fn args() -> ChatArgs {
        ChatArgs {
            server: "http://127.0.0.1:1".to_owned(),
            transport: TransportArg::Both,
            rooms: 1,
            users_per_room: 1,
            messages: 1,
            rate: 1,
            json: false,
            timeout: 1,
        }
    }

    #[test]
    fn two_runs_are_compared_second_over_first() {
        let report = Report::new(
            "quibble-bench chat".to_owned(),
            &args(),
            vec![run("webtransport", 1000, 10.0), run("websocket", 3000, 5.0)],
        );
        assert!(report.ok);
        let ratios = report
            .ratios
            .as_ref()
            .unwrap_or_else(|| panic!("no ratios"));
        assert_eq!(ratios["ack p50 ms"], Some(3.0));
        assert_eq!(ratios["acked/s"], Some(0.5));
        assert_eq!(ratios["fan-out p50 ms"], None);
        let table = report.table();
        assert!(table.starts_with("quibble-bench chat\n"), "{table}");
        assert!(table.contains("WS/WT"), "{table}");
        assert!(table.contains("3.00"), "{table}");
    }

    #[test]
    fn one_failed_run_fails_the_report() {
        let mut failed = run("websocket", 1000, 1.0);
        failed.ok = false;
        failed.errors.insert("disconnected".to_owned(), 2);
        let report = Report::new("x".to_owned(), &args(), vec![failed]);
        assert!(!report.ok);
        assert!(report.ratios.is_none());
        assert!(report.table().contains("disconnected=2"));
    }
}
