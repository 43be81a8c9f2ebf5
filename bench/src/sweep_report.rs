//! How `versus --sweep`'s report is shown: a table per server (a row per step: offered and
//! delivered rates, what was lost, late, duplicated, cut or refused, latencies, the server's
//! and the bench's CPU), a summary row per server (saturation, over `ws`, peak, the top step)
//! and issue 9's saturation targets, met or not. The JSON is the report's own serialisation.

use std::fmt::Write;

use crate::compare::ratio;
use crate::server_cpu::ServerCost;
use crate::stats::Summary;
use crate::sweep::{GRACE, SUSTAINED_SHARE, ServerSweep, StepRow, SweepReport};
use crate::table::Table;
use crate::versus::Contender;

impl SweepReport {
    /// The human report.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "$ {}", self.command);
        let _ = writeln!(
            out,
            "saturation sweep: {} room(s) x {} users, {}-byte messages; per step {} s of sending \
             ({} s more before, not measured), at most {} s more for what is owed, then a fresh \
             process for the next; sustained: delivered >= {:.0} % of offered, nothing lost or \
             duplicated, fan-out p99 <= {} ms",
            self.rooms,
            self.users_per_room,
            self.message_size,
            self.step_secs,
            self.step_warmup_secs,
            GRACE.as_secs(),
            SUSTAINED_SHARE * 100.0,
            self.p99_bound_ms
        );
        let _ = writeln!(out, "bounded by --timeout {} s", self.timeout_s);
        if let Some(pinning) = &self.pinning {
            let _ = writeln!(out, "{}", pinning.describe());
        }
        if let Some(accounts) = &self.quibble_accounts {
            let _ = writeln!(out, "Quibble's {}", accounts.text());
        }
        for server in &self.servers {
            let _ = writeln!(out, "\n{} (acks: {})", server.label, server.acks);
            out.push_str(&server.table().render());
        }
        out.push('\n');
        out.push_str(&self.summary().render());
        if !self.targets.is_empty() {
            let _ = writeln!(out, "\nissue 9's targets (measured in this one sweep):");
            for target in &self.targets {
                let verdict = match target.met {
                    Some(true) => "met",
                    Some(false) => "NOT MET",
                    None if target.lower_bound => {
                        "not shown yet (Quibble sustained the top step: sweep higher)"
                    }
                    None => "not measured",
                };
                let _ = writeln!(
                    out,
                    "  {} >= {:.1}: {}{} {verdict}",
                    target.what,
                    target.at_least,
                    if target.lower_bound { ">= " } else { "" },
                    target
                        .ratio
                        .map_or_else(|| "-".to_owned(), |r| format!("{r:.2}"))
                );
            }
        }
        let _ = writeln!(
            out,
            "\nresult: {}",
            if self.ok {
                "every step ran"
            } else {
                "FAILED: some step did not run"
            }
        );
        out
    }

    /// A row per server: saturation, over ws, peak, and the top step it ran.
    fn summary(&self) -> Table {
        let mut table = Table::default();
        table.row([
            "",
            "saturation deliveries/s",
            "over ws",
            "peak delivered/s",
            "top step: offered/s",
            "delivered/s (of peak)",
            "fan-out p99 ms",
        ]);
        let ws = self
            .servers
            .iter()
            .find(|s| s.server == Contender::Ws.name())
            .and_then(|s| s.saturation_per_s);
        for server in &self.servers {
            let saturation = server.saturation_per_s.map_or_else(
                || "below the first step".to_owned(),
                |s| {
                    let bound = if server.saturation_is_lower_bound {
                        ">= "
                    } else {
                        ""
                    };
                    format!("{bound}{s:.0}")
                },
            );
            let over = server
                .saturation_per_s
                .zip(ws)
                .and_then(|(q, w)| ratio(q, w))
                .map_or_else(|| "-".to_owned(), |r| format!("{r:.2}"));
            let top = server.steps.last();
            let top_delivered = top.map_or(0.0, StepRow::delivered_per_s);
            let of_peak = ratio(top_delivered, server.peak_per_s)
                .map_or_else(|| "-".to_owned(), |r| format!("{:.0} %", r * 100.0));
            table.row([
                server.label.to_owned(),
                saturation,
                over,
                format!("{:.0}", server.peak_per_s),
                top.map_or_else(|| "-".to_owned(), |r| format!("{:.0}", r.offered_per_s)),
                format!("{top_delivered:.0} ({of_peak})"),
                top.and_then(|r| r.run.stats.as_ref()).map_or_else(
                    || "-".to_owned(),
                    |s| ms(&s.latency_us.fanout, s.latency_us.fanout.p99),
                ),
            ]);
        }
        table
    }
}

impl ServerSweep {
    /// A row per step.
    fn table(&self) -> Table {
        let mut table = Table::default();
        table.row([
            "offered/s",
            "delivered/s",
            "%",
            "lost",
            "late",
            "dup",
            "cut",
            "refused+resent",
            "fan-out p50",
            "p99 ms",
            "ack p99 ms",
            "server CPU %",
            "bench CPU %",
            "bench us/deliv",
            "",
        ]);
        for row in &self.steps {
            let Some(stats) = &row.run.stats else {
                table.row([
                    format!("{:.0}", row.offered_per_s),
                    format!("did not run: {}", row.why_not.join(", ")),
                ]);
                continue;
            };
            let step = stats.step;
            let delivered = row.delivered_per_s();
            let cost = |c: &Option<ServerCost>, pick: fn(&ServerCost) -> Option<f64>| {
                c.as_ref()
                    .and_then(pick)
                    .map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"))
            };
            table.row([
                format!("{:.0}", row.offered_per_s),
                format!("{delivered:.0}"),
                format!("{:.0}", 100.0 * delivered / row.offered_per_s),
                step.map_or(0, |s| s.lost).to_string(),
                step.map_or(0, |s| s.late).to_string(),
                stats.duplicated.to_string(),
                step.map_or(0, |s| s.cut_streams).to_string(),
                step.map_or(0, |s| s.throttled).to_string(),
                ms(&stats.latency_us.fanout, stats.latency_us.fanout.p50),
                ms(&stats.latency_us.fanout, stats.latency_us.fanout.p99),
                ms(&stats.latency_us.ack, stats.latency_us.ack.p99),
                cost(&stats.server, |c| c.cpu_percent_of_core),
                cost(&stats.bench, |c| c.cpu_percent_of_core),
                cost(&stats.bench, |c| c.cpu_us_per_delivery),
                if row.sustained {
                    "sustained".to_owned()
                } else {
                    row.why_not.join(", ")
                },
            ]);
        }
        table
    }
}

/// `us` (a figure of `summary`) as milliseconds, whole past 100; `-` for an empty summary.
fn ms(summary: &Summary, us: u64) -> String {
    if summary.count == 0 {
        "-".to_owned()
    } else if us >= 100_000 {
        format!("{}", us / 1000)
    } else {
        format!("{:.1}", us as f64 / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pin::Pinning;
    use crate::run::{RunResult, Status};
    use crate::sweep::SaturationTarget;

    #[test]
    fn the_text_shows_each_step_the_saturation_and_the_verdicts() {
        let step = StepRow {
            rate: 1.0,
            offered_per_s: 10_000.0,
            sustained: false,
            why_not: vec!["cannot start node".into()],
            run: RunResult {
                transport: "ws",
                status: Status::Failed,
                error: Some("cannot start node".into()),
                stats: None,
            },
        };
        let server = |contender: Contender, saturation| ServerSweep {
            server: contender.name(),
            label: contender.label(),
            acks: contender.acks(),
            steps: vec![step.clone()],
            saturation_per_s: saturation,
            saturation_is_lower_bound: false,
            peak_per_s: 0.0,
        };
        let report = SweepReport {
            command: "quibble-bench versus --sweep".into(),
            rooms: 1,
            users_per_room: 100,
            message_size: 100,
            step_secs: 3,
            step_warmup_secs: 1,
            p99_bound_ms: 1000,
            rates: vec![1.0],
            timeout_s: 900,
            pinning: Some(Pinning {
                bench_cpu: 0,
                server_cpu: 1,
            }),
            quibble_accounts: None,
            servers: vec![
                server(Contender::QuibbleWs, Some(20_000.0)),
                server(Contender::Ws, None),
            ],
            targets: vec![SaturationTarget {
                what: "Quibble WS saturation over ws's".into(),
                ratio: Some(2.0),
                at_least: 4.0,
                lower_bound: false,
                met: Some(false),
            }],
            ok: false,
        };
        let text = report.text();
        for expected in [
            "did not run: cannot start node",
            "below the first step",
            "20000",
            "Quibble WS saturation over ws's >= 4.0: 2.00 NOT MET",
            "FAILED: some step did not run",
            "bounded by --timeout 900 s",
            "the load generator on CPU 0, the server under test on CPU 1",
        ] {
            assert!(text.contains(expected), "{expected:?} in:\n{text}");
        }
    }
}
