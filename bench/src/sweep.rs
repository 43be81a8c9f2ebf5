//! `quibble-bench versus --sweep`: saturation, side by side. For each step the offered load
//! (`--rate` per bot, times `--sweep-factor` per step) runs against every server of `versus`,
//! one fresh process at a time and the servers interleaved within a step, so that the
//! machine's noise falls on all alike. A step sends for `--step-warmup-secs` (not measured)
//! plus `--step-secs`, then waits at most [`GRACE`] for what it is still owed and stops
//! (the bots keep listening for [`DRAIN`] more, so that an acknowledged message that never
//! arrives is told from a late one): every step is bounded in time.
//!
//! A step is sustained when the deliveries that arrived by its end came at ≥ 95 % of the
//! offered rate, nothing acknowledged was lost or duplicated, and the fan-out p99 stayed under
//! `--p99-bound-ms`. A server's saturation is its delivered rate at its highest sustained step;
//! past it the sweep goes on for `--past-saturation-steps` more steps (to see whether
//! throughput holds near its peak and latency stays bounded), then stops raising that server's
//! load. The report gives a table per server, the saturation of each over `ws`'s against issue
//! 9's targets (Quibble WS ≥ 4×, WT ≥ 3×), and for each step the load generator's own CPU, so
//! that a bench that saturates before the server shows as such ([`crate::sweep_report`]).

use std::time::Duration;

use anyhow::bail;
use clap::Args;
use serde::Serialize;

use crate::accounts::AccountsSummary;
use crate::args::{ChatArgs, command_line};
use crate::compare::ratio;
use crate::pin::Pinning;
use crate::plan::Plan;
use crate::run::{RunResult, StepLimit};
use crate::versus::{Contender, Step, Versus, VersusArgs};

/// How long past its last scheduled send a step waits for what it is owed.
pub const GRACE: Duration = Duration::from_secs(1);
/// How long the bots keep listening after a step was cut.
pub const DRAIN: Duration = Duration::from_secs(3);
/// A sustained step delivers at least this share of the offered rate.
pub const SUSTAINED_SHARE: f64 = 0.95;
/// Issue 9's targets: saturation over the `ws` server's, at least.
const TARGETS: [(Contender, f64); 2] = [(Contender::QuibbleWs, 4.0), (Contender::QuibbleWt, 3.0)];

/// The sweep's flags (with `versus`).
#[derive(Debug, Clone, Args)]
pub struct SweepArgs {
    /// Sweep the offered load step by step (from --rate per bot) and report each server's
    /// saturation instead of one run; --messages and --warmup then do not apply.
    #[arg(long)]
    pub sweep: bool,
    /// Steps of the sweep.
    #[arg(long, value_name = "N", default_value_t = 7, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub sweep_steps: u32,
    /// The rate's factor from one step to the next.
    #[arg(long, value_name = "X", default_value_t = 2.0)]
    pub sweep_factor: f64,
    /// Measured seconds of sending per step.
    #[arg(long, value_name = "SECS", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=60))]
    pub step_secs: u32,
    /// Seconds of sending before each step's measured part.
    #[arg(long, value_name = "SECS", default_value_t = 1, value_parser = clap::value_parser!(u32).range(0..=60))]
    pub step_warmup_secs: u32,
    /// A sustained step's fan-out p99 is at most this.
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    pub p99_bound_ms: u64,
    /// Steps run past a server's saturation before its load stops rising.
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub past_saturation_steps: u32,
}

/// The sweep's result.
#[derive(Debug, Clone, Serialize)]
pub struct SweepReport {
    pub command: String,
    pub rooms: u32,
    pub users_per_room: u32,
    pub message_size: u32,
    pub step_secs: u32,
    pub step_warmup_secs: u32,
    pub p99_bound_ms: u64,
    /// Messages per second per bot, per step.
    pub rates: Vec<f64>,
    /// The bound on the whole invocation (--timeout, or scaled to the sweep).
    pub timeout_s: u64,
    /// Which core each side had (`--pin`); absent: wherever the scheduler put them.
    pub pinning: Option<Pinning>,
    pub quibble_accounts: Option<AccountsSummary>,
    pub servers: Vec<ServerSweep>,
    pub targets: Vec<SaturationTarget>,
    /// Every step that was started ran (its figures are there).
    pub ok: bool,
}

/// One server's steps.
#[derive(Debug, Clone, Serialize)]
pub struct ServerSweep {
    pub server: &'static str,
    pub label: &'static str,
    pub acks: &'static str,
    pub steps: Vec<StepRow>,
    /// Delivered deliveries/s at the highest sustained step (`None`: not even the first).
    pub saturation_per_s: Option<f64>,
    /// The highest step sustained was the sweep's last: saturation is at least this.
    pub saturation_is_lower_bound: bool,
    /// The most delivered deliveries/s of any step.
    pub peak_per_s: f64,
}

/// One step of one server.
#[derive(Debug, Clone, Serialize)]
pub struct StepRow {
    /// Messages per second per bot.
    pub rate: f64,
    /// Deliveries per second offered (messages/s × members, the author's own copy included).
    pub offered_per_s: f64,
    pub sustained: bool,
    /// What kept it from being sustained.
    pub why_not: Vec<String>,
    pub run: RunResult,
}

/// A saturation target, as this sweep measured it.
#[derive(Debug, Clone, Serialize)]
pub struct SaturationTarget {
    pub what: String,
    pub ratio: Option<f64>,
    pub at_least: f64,
    /// Quibble sustained the sweep's top step: the ratio is a lower bound.
    pub lower_bound: bool,
    pub met: Option<bool>,
}

/// Run the sweep and print its report; whether every step ran.
pub async fn run(args: &VersusArgs, pinning: Option<Pinning>) -> anyhow::Result<bool> {
    let chat = &args.chat;
    let sweep = &args.sweep;
    if chat.rate <= 0.0 {
        bail!("--sweep needs a --rate (messages per second per bot) to start from");
    }
    if !(sweep.sweep_factor > 1.0 && sweep.sweep_factor.is_finite()) {
        bail!("--sweep-factor must be above 1");
    }
    let rates: Vec<f64> = (0..sweep.sweep_steps)
        .map(|k| chat.rate * sweep.sweep_factor.powi(k as i32))
        .collect();
    let top = rates.last().copied().unwrap_or(chat.rate);
    let versus = Versus::prepare(args, step_plan(chat, sweep, chat.rate)?, top, pinning).await?;
    let mut servers: Vec<ServerSweep> = versus
        .contenders()
        .iter()
        .map(|&c| ServerSweep {
            server: c.name(),
            label: c.label(),
            acks: c.acks(),
            steps: Vec::new(),
            saturation_per_s: None,
            saturation_is_lower_bound: false,
            peak_per_s: 0.0,
        })
        .collect();
    let contenders = versus.contenders().to_vec();
    for (k, &rate) in rates.iter().enumerate() {
        let step = Step {
            plan: step_plan(chat, sweep, rate)?,
            rate,
            limit: Some(StepLimit {
                cut_after: Duration::from_secs(u64::from(sweep.step_warmup_secs + sweep.step_secs))
                    + GRACE,
                drain: DRAIN,
            }),
        };
        for (server, &contender) in servers.iter_mut().zip(&contenders) {
            if versus.stopped() || past_enough(server, sweep.past_saturation_steps) {
                continue;
            }
            let run = versus.step(contender, &step).await;
            let row = StepRow::of(rate, &step.plan, run, sweep.p99_bound_ms);
            eprintln!(
                "step {}/{}: {:<10} offered {:>9.0}/s delivered {:>9.0}/s {}",
                k + 1,
                rates.len(),
                server.label,
                row.offered_per_s,
                row.delivered_per_s(),
                if row.sustained {
                    "sustained".to_owned()
                } else {
                    format!("not sustained: {}", row.why_not.join(", "))
                }
            );
            server.steps.push(row);
        }
    }
    for server in &mut servers {
        server.conclude(rates.len());
    }
    let report = SweepReport {
        command: command_line(),
        rooms: chat.rooms,
        users_per_room: chat.users_per_room,
        message_size: chat.message_size,
        step_secs: sweep.step_secs,
        step_warmup_secs: sweep.step_warmup_secs,
        p99_bound_ms: sweep.p99_bound_ms,
        rates,
        timeout_s: versus.timeout_s(),
        pinning: versus.pinning(),
        quibble_accounts: versus.quibble_accounts(),
        ok: servers
            .iter()
            .all(|s| !s.steps.is_empty() && s.steps.iter().all(|r| r.run.stats.is_some())),
        targets: targets(&servers),
        servers,
    };
    if chat.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.text());
    }
    Ok(report.ok)
}

/// The plan of a step at `rate`: the warm-up and measured seconds in messages per bot.
fn step_plan(chat: &ChatArgs, sweep: &SweepArgs, rate: f64) -> anyhow::Result<Plan> {
    let messages = |secs: u32| (rate * f64::from(secs)).ceil().min(f64::from(u32::MAX)) as u32;
    Plan::new(
        chat.rooms,
        chat.users_per_room,
        messages(sweep.step_warmup_secs),
        messages(sweep.step_secs).max(1),
    )
}

/// Whether `server` has run enough steps past its saturation (or never sustained any and has
/// failed that many in a row).
fn past_enough(server: &ServerSweep, steps: u32) -> bool {
    let failing = server
        .steps
        .iter()
        .rev()
        .take_while(|row| !row.sustained)
        .count();
    failing >= steps.max(1) as usize
}

impl StepRow {
    fn of(rate: f64, plan: &Plan, run: RunResult, p99_bound_ms: u64) -> StepRow {
        let members = f64::from(plan.users_per_room);
        let offered_per_s = rate * plan.bots() as f64 * members;
        let mut why_not = Vec::new();
        match &run.stats {
            None => why_not.push(
                run.error
                    .clone()
                    .unwrap_or_else(|| "it did not run".to_owned()),
            ),
            Some(stats) => {
                let step = stats.step;
                let delivered = step.map_or(0.0, |s| s.delivered_per_s);
                if delivered < SUSTAINED_SHARE * offered_per_s {
                    why_not.push(format!(
                        "delivered {:.0} % of offered",
                        100.0 * delivered / offered_per_s
                    ));
                }
                let lost = step.map_or(0, |s| s.lost);
                if lost > 0 {
                    why_not.push(format!("{lost} lost"));
                }
                if stats.duplicated > 0 {
                    why_not.push(format!("{} duplicated", stats.duplicated));
                }
                let p99 = stats.latency_us.fanout.p99;
                if p99 > p99_bound_ms.saturating_mul(1000) {
                    why_not.push(format!("fan-out p99 {} ms", p99 / 1000));
                }
            }
        }
        StepRow {
            rate,
            offered_per_s,
            sustained: why_not.is_empty(),
            why_not,
            run,
        }
    }

    /// Delivered deliveries/s by the step's end (0 if it did not run).
    pub fn delivered_per_s(&self) -> f64 {
        self.run
            .stats
            .as_ref()
            .and_then(|s| s.step)
            .map_or(0.0, |s| s.delivered_per_s)
    }
}

impl ServerSweep {
    /// Saturation and peak, once every step ran; `steps` is the sweep's length.
    fn conclude(&mut self, steps: usize) {
        let highest = self.steps.iter().rposition(|row| row.sustained);
        self.saturation_per_s = highest.map(|i| self.steps[i].delivered_per_s());
        self.saturation_is_lower_bound = highest.is_some_and(|i| i + 1 == steps);
        self.peak_per_s = self
            .steps
            .iter()
            .map(StepRow::delivered_per_s)
            .fold(0.0, f64::max);
    }
}

/// Quibble's saturation over `ws`'s, for the servers that ran.
fn targets(servers: &[ServerSweep]) -> Vec<SaturationTarget> {
    let find = |c: Contender| servers.iter().find(|s| s.server == c.name());
    let Some(ws) = find(Contender::Ws) else {
        return Vec::new();
    };
    TARGETS
        .into_iter()
        .filter_map(|(contender, at_least)| {
            let quibble = find(contender)?;
            let r = match (quibble.saturation_per_s, ws.saturation_per_s) {
                (Some(q), Some(w)) => ratio(q, w),
                _ => None,
            };
            let lower_bound = quibble.saturation_is_lower_bound;
            Some(SaturationTarget {
                what: format!("{} saturation over ws's", contender.label()),
                ratio: r,
                at_least,
                lower_bound,
                met: r.map(|r| r >= at_least).filter(|&met| met || !lower_bound),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::Status;

    fn row(sustained: bool) -> StepRow {
        StepRow {
            rate: 1.0,
            offered_per_s: 100.0,
            sustained,
            why_not: Vec::new(),
            run: RunResult {
                transport: "ws",
                status: Status::Complete,
                error: None,
                stats: None,
            },
        }
    }

    fn server(contender: Contender, steps: &[bool]) -> ServerSweep {
        ServerSweep {
            server: contender.name(),
            label: contender.label(),
            acks: contender.acks(),
            steps: steps.iter().map(|&s| row(s)).collect(),
            saturation_per_s: None,
            saturation_is_lower_bound: false,
            peak_per_s: 0.0,
        }
    }

    #[test]
    fn a_server_stops_rising_after_enough_steps_past_saturation() {
        assert!(!past_enough(&server(Contender::Ws, &[true, true]), 2));
        assert!(!past_enough(&server(Contender::Ws, &[true, false]), 2));
        assert!(past_enough(
            &server(Contender::Ws, &[true, false, false]),
            2
        ));
        assert!(past_enough(&server(Contender::Ws, &[false, false]), 2));
        assert!(!past_enough(
            &server(Contender::Ws, &[false, true, false]),
            2
        ));
    }

    #[test]
    fn targets_compare_saturations_and_a_top_step_is_a_lower_bound() {
        let with = |c, saturation, lower_bound| ServerSweep {
            saturation_per_s: saturation,
            saturation_is_lower_bound: lower_bound,
            ..server(c, &[])
        };
        let servers = [
            with(Contender::QuibbleWt, Some(250.0), true),
            with(Contender::QuibbleWs, Some(300.0), false),
            with(Contender::Ws, Some(100.0), false),
        ];
        let found_targets = targets(&servers);
        let found = |c: Contender| {
            found_targets
                .iter()
                .find(|t| t.what.starts_with(c.label()))
                .map(|t| (t.ratio, t.met, t.lower_bound))
        };
        // WS: 3x < 4x, and a real saturation: not met.
        assert_eq!(
            found(Contender::QuibbleWs),
            Some((Some(3.0), Some(false), false))
        );
        // WT: 2.5x < 3x, but it sustained the top step: unknown, not "not met".
        assert_eq!(found(Contender::QuibbleWt), Some((Some(2.5), None, true)));
        let met = targets(&[
            with(Contender::QuibbleWs, Some(400.0), true),
            with(Contender::Ws, Some(100.0), false),
        ]);
        assert_eq!(met[0].met, Some(true));
        assert!(targets(&[with(Contender::QuibbleWs, Some(1.0), false)]).is_empty());
    }

    #[test]
    fn a_step_is_sustained_only_with_figures() {
        let plan = Plan::new(1, 10, 0, 3).unwrap();
        let failed = RunResult {
            transport: "ws",
            status: Status::Failed,
            error: Some("cannot start".into()),
            stats: None,
        };
        let row = StepRow::of(2.0, &plan, failed, 1000);
        assert_eq!(row.offered_per_s, 200.0, "2/s x 10 bots x 10 members");
        assert!(!row.sustained);
        assert_eq!(row.why_not, ["cannot start"]);
    }
}
