//! One run of the scenario over one transport, for bots already signed in: create their rooms,
//! connect and join every bot, start
//! them all on one clock once all have joined, wait until everything owed has arrived (or the
//! benchmark must stop), listen a little longer for duplicates, then collect the bots' records
//! into the run's figures (and, for kept accounts, have the bots leave their rooms). With
//! `--server-pid` it reads the server's CPU time and memory when the first measured message is
//! sent and when everything owed has arrived (or the run stops): the server's cost over the
//! measured window. [`drive`] is the part that is the same for any server: `versus` drives the
//! peer servers' bots ([`crate::peers`]) through it too.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use quibble_client::{Api, TransportKind};
use serde::Serialize;
use tokio::sync::watch;

use crate::accounts::Login;
use crate::args::transport_name;
use crate::bot::{self, Bot, Link, Pacing, Schedule};
use crate::concurrency::bounded;
use crate::plan::Plan;
use crate::progress::Display;
use crate::scenario::{self, Account};
use crate::server_cpu::{Counts, Reading, ServerCost};
use crate::server_memory::ServerProcess;
use crate::stats::{self, RunStats};
use crate::stop::{Stop, StopReason};
use crate::tracker::Tracker;

/// Connections being opened at once.
const CONNECTS_AT_ONCE: usize = 16;
/// Between the last bot joining and the first send, so every bot is waiting when it begins.
const START_LEAD: Duration = Duration::from_millis(100);
/// How long the run keeps listening after the last thing owed arrived, for duplicates.
const LINGER: Duration = Duration::from_millis(500);
/// How long closing the connections may take before they are dropped.
const CLOSE_LIMIT: Duration = Duration::from_secs(3);

/// What every run shares.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub api: Api,
    pub load: Load,
    /// The accounts are kept for later runs: the bots leave their rooms at the end.
    pub leave_rooms: bool,
}

/// How the bots send and what is measured, whichever server they talk to.
#[derive(Debug, Clone)]
pub struct Load {
    pub plan: Plan,
    /// Messages per second per bot; 0 for the in-flight window.
    pub rate: f64,
    /// Bytes of each message's text.
    pub message_size: u32,
    pub in_flight: u32,
    /// The server's process, to read its CPU time and memory (`--server-pid`).
    pub server: Option<ServerProcess>,
    /// This process, to read the load generator's own CPU time over the same window.
    pub bench: Option<ServerProcess>,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Everything owed arrived (or was refused).
    Complete,
    TimedOut,
    Interrupted,
    /// It could not be set up (see the error).
    Failed,
}

impl From<StopReason> for Status {
    fn from(reason: StopReason) -> Status {
        match reason {
            StopReason::TimedOut => Status::TimedOut,
            StopReason::Interrupted => Status::Interrupted,
        }
    }
}

/// One transport's result.
#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    pub transport: &'static str,
    pub status: Status,
    /// Why it failed, or what it was doing when it was stopped before sending.
    pub error: Option<String>,
    /// The figures, once bots were sending.
    pub stats: Option<RunStats>,
}

impl RunResult {
    /// A run that never started because the benchmark had stopped.
    pub fn not_started(kind: TransportKind, reason: StopReason) -> RunResult {
        RunResult {
            transport: transport_name(kind),
            status: reason.into(),
            error: Some("not started: the benchmark had stopped".into()),
            stats: None,
        }
    }

    /// The result of driving a run over `transport` (see [`drive`]).
    pub fn of(transport: &'static str, outcome: anyhow::Result<(Status, RunStats)>) -> RunResult {
        match outcome {
            Ok((status, stats)) => RunResult {
                transport,
                status,
                error: None,
                stats: Some(stats),
            },
            Err(e) => RunResult {
                transport,
                status: Status::Failed,
                error: Some(format!("{e:#}")),
                stats: None,
            },
        }
    }

    /// Complete, and everything checked out.
    pub fn ok(&self) -> bool {
        self.status == Status::Complete && self.stats.as_ref().is_some_and(RunStats::clean)
    }
}

/// Run the scenario over `kind` with the bots signed in as `logins`.
pub async fn run(
    config: &RunConfig,
    kind: TransportKind,
    logins: Vec<Login>,
    stop: &Stop,
) -> RunResult {
    let transport = transport_name(kind);
    let bots = tokio::select! {
        bots = prepare(config, kind, logins) => bots,
        reason = stop.wait() => {
            return RunResult {
                transport,
                status: reason.into(),
                error: Some("stopped while setting up, before any message was sent".into()),
                stats: None,
            };
        }
    };
    let outcome = match bots {
        Ok((accounts, bots)) => {
            let outcome = drive(&config.load, transport, bots, stop).await;
            if config.leave_rooms {
                scenario::leave(&config.api, &accounts).await;
            }
            outcome
        }
        Err(e) => Err(e),
    };
    RunResult::of(transport, outcome)
}

/// Create the rooms, connect and join every bot.
async fn prepare(
    config: &RunConfig,
    kind: TransportKind,
    logins: Vec<Login>,
) -> anyhow::Result<(Vec<Account>, Vec<Bot>)> {
    let accounts = scenario::setup(&config.api, &config.load.plan, logins).await?;
    let connects = accounts
        .iter()
        .cloned()
        .map(|account| {
            let api = config.api.clone();
            async move {
                bot::connect(api, account.token, kind, account.room)
                    .await
                    .with_context(|| format!("bot {} cannot join its room", account.username))
            }
        })
        .collect();
    match bounded(CONNECTS_AT_ONCE, connects).await {
        Ok(bots) => Ok((accounts, bots)),
        Err(e) => {
            if config.leave_rooms {
                scenario::leave(&config.api, &accounts).await;
            }
            Err(e)
        }
    }
}

/// Start the bots (connected and joined) on one clock, wait for the end, gather what they saw
/// and close them.
pub async fn drive<L: Link>(
    config: &Load,
    transport: &'static str,
    bots: Vec<Bot<L>>,
    stop: &Stop,
) -> anyhow::Result<(Status, RunStats)> {
    let plan = &config.plan;
    let tracker = Arc::new(Tracker::new(plan));
    let (finish, finished) = watch::channel(false);
    let start = Instant::now() + START_LEAD;
    let count = bots.len();
    let tasks: Vec<_> = bots
        .into_iter()
        .enumerate()
        .map(|(n, bot)| {
            let schedule = Schedule {
                start,
                pacing: pacing(config.rate, config.in_flight, n, count),
                message_size: config.message_size,
                sends: plan.sends_per_bot(),
                warmup: plan.warmup,
                members: u64::from(plan.users_per_room),
            };
            tokio::spawn(bot.drive(schedule, tracker.clone(), finished.clone()))
        })
        .collect();

    let display = Display::start(transport, tracker.clone());
    let began = tracker.measuring_began();
    tokio::pin!(began);
    let mut first_reading = None;
    let status = loop {
        tokio::select! {
            // The window's start first, should the end be ready in the same wake-up.
            biased;
            () = &mut began, if first_reading.is_none() => {
                first_reading = Some(readings(config));
            }
            () = tracker.all_done() => break Status::Complete,
            reason = stop.wait() => break reason.into(),
        }
    };
    let last_reading = readings(config);
    if status == Status::Complete {
        tokio::select! {
            () = tokio::time::sleep(LINGER) => {}
            _ = stop.wait() => {}
        }
    }
    drop(display);
    // Every bot is listening for this; a send error only means none is left.
    let _ = finish.send(true);

    let mut links = Vec::with_capacity(count);
    let mut records = Vec::with_capacity(count);
    for task in tasks {
        let (link, record) = task.await.map_err(|e| anyhow!("a bot failed: {e}"))?;
        links.push(link);
        records.push(record);
    }
    close_all(links).await;
    let mut stats = stats::aggregate(&records, plan.sends())?;
    let counts = Counts {
        deliveries: stats.throughput.measured_deliveries,
        acks: stats.throughput.measured_acks,
        connections: stats.bots,
    };
    let [server_start, bench_start] = first_reading.map_or([None, None], |r| r.map(Some));
    let [server_end, bench_end] = last_reading;
    stats.server = cost(config.server, server_start, server_end, counts);
    stats.bench = cost(config.bench, bench_start, bench_end, counts);
    Ok((status, stats))
}

/// The server's reading and this process' (for those watched), taken now.
fn readings(config: &Load) -> [Option<anyhow::Result<Reading>>; 2] {
    [config.server, config.bench].map(|process| process.map(Reading::take))
}

/// What watched `process` spent between `start` (`None`: the measured window never began)
/// and `end`.
fn cost(
    process: Option<ServerProcess>,
    start: Option<Option<anyhow::Result<Reading>>>,
    end: Option<anyhow::Result<Reading>>,
    counts: Counts,
) -> Option<ServerCost> {
    let (process, end) = (process?, end?);
    Some(match start.flatten() {
        Some(start) => ServerCost::between(process.pid(), start, end, counts),
        None => ServerCost::missing(
            process.pid(),
            "the run ended before its measured window began".into(),
        ),
    })
}

/// When bot `n` of `count` sends: at `rate` per second, the bots spread evenly over one
/// interval so that they do not all send at the same instant; or, at rate 0, by window.
pub fn pacing(rate: f64, in_flight: u32, n: usize, count: usize) -> Pacing {
    if rate <= 0.0 {
        return Pacing::Window(in_flight);
    }
    let interval = Duration::from_secs_f64(1.0 / rate);
    let offset = interval.mul_f64(n as f64 / count.max(1) as f64);
    Pacing::Every { interval, offset }
}

/// Close every link, giving up on those that take longer than [`CLOSE_LIMIT`].
async fn close_all<L: Link>(links: Vec<L>) {
    let mut closing = tokio::task::JoinSet::new();
    for link in links {
        closing.spawn(link.close());
    }
    let _ = tokio::time::timeout(CLOSE_LIMIT, closing.join_all()).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bots_are_spread_over_one_interval() {
        let every = |n| match pacing(20.0, 16, n, 4) {
            Pacing::Every { interval, offset } => (interval, offset),
            Pacing::Window(_) => panic!("a rate gives a schedule"),
        };
        assert_eq!(every(0), (Duration::from_millis(50), Duration::ZERO));
        assert_eq!(every(2).1, Duration::from_millis(25));
        assert!(every(3).1 < Duration::from_millis(50));
        assert_eq!(pacing(0.0, 16, 3, 4), Pacing::Window(16));
        match pacing(0.3, 16, 0, 1) {
            Pacing::Every { interval, .. } => assert_eq!(interval.as_millis(), 3333),
            Pacing::Window(_) => panic!("a rate gives a schedule"),
        }
    }
}
