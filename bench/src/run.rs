//! One run of the scenario over one transport, for bots already signed in: create their rooms,
//! connect and join every bot that is on time (WebTransport sessions share a few UDP sockets,
//! `--sessions-per-socket` each), start them all on one clock once all have joined (late
//! joiners connect once the measured window began, halfway through the sending at --rate,
//! and join from their room's first message), wait until everything owed has arrived (or the
//! benchmark must stop), listen a little longer for duplicates, then collect the bots' records
//! into the run's figures (and, for kept accounts, have the bots leave their rooms). With
//! `--server-pid` it reads the server's CPU time and memory when the first measured message is
//! sent and when everything owed has arrived (or the run stops): the server's cost over the
//! measured window (a fleet's nodes summed). Against a fleet (several `--server`), bot n
//! connects to node n mod N ([`Dialers`]). [`drive`] is the part that is the same for any
//! server: `versus` drives the peer servers' bots ([`crate::peers`]) through it too. A step of `versus --sweep` bounds the
//! wait ([`StepLimit`]): past its deadline the run stops waiting for what is still owed, keeps
//! listening for a drain period (so that a message acknowledged in time and never delivered
//! is told from one merely late) and its figures up to the deadline are taken
//! ([`crate::step_figures`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use quibble_client::{Api, TransportKind, UserId, WtEndpoints};
use serde::Serialize;
use tokio::sync::watch;

use crate::accounts::Login;
use crate::args::transport_name;
use crate::bot::{self, Bot, Dialer, Link, Pacing, QuibbleLink, Schedule};
use crate::concurrency::bounded;
use crate::plan::Plan;
use crate::progress::Display;
use crate::record::BotRecord;
use crate::scenario::{self, Account};
use crate::server_cpu::{Counts, Reading, ServerCost};
use crate::server_memory::ServerProcess;
use crate::stats::{self, RunStats};
use crate::step_figures;
use crate::stop::{Stop, StopReason};
use crate::tracker::Tracker;

/// Connections being opened at once.
const CONNECTS_AT_ONCE: usize = 16;
/// The user id in the record of a late joiner that could not connect (it sent nothing, so the
/// id matches no message).
const NOBODY: UserId = UserId(0);
/// Between the last bot joining and the first send, so every bot is waiting when it begins.
const START_LEAD: Duration = Duration::from_millis(100);
/// How long the run keeps listening after the last thing owed arrived, for duplicates.
const LINGER: Duration = Duration::from_millis(500);
/// How long closing the connections may take before they are dropped.
const CLOSE_LIMIT: Duration = Duration::from_secs(3);

/// What every run shares.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// The server, or a fleet's first node: accounts and rooms are made through it.
    pub api: Api,
    /// A fleet's other nodes (none for one server), sharing the first one's store.
    pub other_nodes: Vec<Api>,
    pub load: Load,
    /// The accounts are kept for later runs: the bots leave their rooms at the end.
    pub leave_rooms: bool,
    /// WebTransport sessions per UDP socket.
    pub sessions_per_socket: usize,
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
    /// The server's processes, to read their CPU time and memory, summed (`--server-pid`;
    /// none: not read).
    pub server: Vec<ServerProcess>,
    /// This process, to read the load generator's own CPU time over the same window.
    pub bench: Option<ServerProcess>,
    /// A sweep step's deadline (`None`: wait for everything owed, or the benchmark's stop).
    pub step: Option<StepLimit>,
}

/// How long a sweep step waits for what it is owed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepLimit {
    /// From the bots' common start: past this the step ends ([`Status::Cut`]) even if
    /// deliveries are still owed.
    pub cut_after: Duration,
    /// After a cut, how long the bots keep listening (for the acknowledged messages still on
    /// their way) before the records are closed.
    pub drain: Duration,
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
    /// A sweep step reached its deadline with deliveries still owed (see [`StepLimit`]).
    Cut,
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
        Ok(prepared) => {
            let Prepared {
                accounts,
                bots,
                late,
            } = prepared;
            let outcome = drive(&config.load, transport, bots, Some(late), stop).await;
            if config.leave_rooms {
                scenario::leave(&config.api, &accounts).await;
            }
            outcome
        }
        Err(e) => Err(e),
    };
    RunResult::of(transport, outcome)
}

/// The bots, connected and joined, and the late joiners (not connected yet).
struct Prepared {
    accounts: Vec<Account>,
    bots: Vec<Bot>,
    late: Late,
}

/// Quibble's late joiners: their accounts, each with how it will connect (its node).
pub struct Late {
    joiners: Vec<(Dialer, Account)>,
}

/// How each bot reaches its node: bot n connects to node n mod N (one server: every bot to
/// it), all of them over the same transport and WebTransport endpoints.
struct Dialers(Vec<Dialer>);

impl Dialers {
    fn new(config: &RunConfig, kind: TransportKind) -> Dialers {
        let nodes = std::iter::once(&config.api).chain(&config.other_nodes);
        Dialers::of(nodes, kind, config.sessions_per_socket)
    }

    /// Dialers of `nodes`, in that order.
    fn of<'a>(
        nodes: impl Iterator<Item = &'a Api>,
        kind: TransportKind,
        sessions_per_socket: usize,
    ) -> Dialers {
        let endpoints = WtEndpoints::new(sessions_per_socket);
        Dialers(
            nodes
                .map(|api| Dialer {
                    api: api.clone(),
                    kind,
                    endpoints: endpoints.clone(),
                })
                .collect(),
        )
    }

    /// Bot `n`'s dialer.
    fn of_bot(&self, n: usize) -> &Dialer {
        &self.0[n % self.0.len()]
    }
}

/// Create the rooms, connect and join every bot that is on time.
async fn prepare(
    config: &RunConfig,
    kind: TransportKind,
    logins: Vec<Login>,
) -> anyhow::Result<Prepared> {
    let plan = &config.load.plan;
    let accounts = scenario::setup(&config.api, plan, logins).await?;
    let dialers = Dialers::new(config, kind);
    let (late, on_time): (Vec<_>, Vec<_>) = accounts
        .iter()
        .cloned()
        .enumerate()
        .map(|(n, account)| (n, dialers.of_bot(n).clone(), account))
        .partition(|(n, _, _)| plan.is_late(*n));
    let connects = on_time
        .into_iter()
        .map(|(_, dialer, account)| async move {
            bot::connect(&dialer, account.token, account.room, false)
                .await
                .with_context(|| format!("bot {} cannot join its room", account.username))
        })
        .collect();
    match bounded(CONNECTS_AT_ONCE, connects).await {
        Ok(bots) => Ok(Prepared {
            accounts,
            bots,
            late: Late {
                joiners: late
                    .into_iter()
                    .map(|(_, dialer, account)| (dialer, account))
                    .collect(),
            },
        }),
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
    late: Option<Late>,
    stop: &Stop,
) -> anyhow::Result<(Status, RunStats)> {
    let plan = &config.plan;
    let tracker = Arc::new(Tracker::new(plan));
    let (finish, finished) = watch::channel(false);
    let start = Instant::now() + START_LEAD;
    let senders = bots.len();
    let schedule = |pacing, sends| Schedule {
        start,
        pacing,
        message_size: config.message_size,
        sends,
        warmup: plan.warmup,
        members: u64::from(plan.users_per_room),
        owed: plan.sends_per_room(),
    };
    let tasks: Vec<_> = bots
        .into_iter()
        .enumerate()
        .map(|(n, bot)| {
            let schedule = schedule(
                pacing(config.rate, config.in_flight, n, senders),
                plan.sends_per_bot(),
            );
            tokio::spawn(bot.drive(schedule, tracker.clone(), finished.clone()))
        })
        .collect();
    let mut late_tasks = Vec::new();
    if let Some(Late { joiners }) = late {
        let joins = Arc::new(tokio::sync::Semaphore::new(CONNECTS_AT_ONCE));
        let after = late_join_delay(config.rate, plan.messages);
        for (dialer, account) in joiners {
            let late = LateJoiner {
                dialer,
                account,
                joins: joins.clone(),
                after,
                owed: plan.sends_per_room(),
                schedule: schedule(Pacing::Window(1), 0),
            };
            late_tasks.push(tokio::spawn(late.run(tracker.clone(), finished.clone())));
        }
    }

    let display = Display::start(transport, tracker.clone());
    let began = tracker.measuring_began();
    tokio::pin!(began);
    let deadline = config
        .step
        .map(|limit| tokio::time::Instant::from_std(start + limit.cut_after));
    let mut first_reading = None;
    let status = loop {
        tokio::select! {
            // The window's start first, should the end be ready in the same wake-up.
            biased;
            () = &mut began, if first_reading.is_none() => {
                first_reading = Some(readings(config));
            }
            () = tracker.all_done() => break Status::Complete,
            () = bot::sleep_until_some(deadline) => break Status::Cut,
            reason = stop.wait() => break reason.into(),
        }
    };
    let ended = Instant::now();
    let last_reading = readings(config);
    let linger = match (status, config.step) {
        (Status::Complete, _) => Some(LINGER),
        (Status::Cut, Some(limit)) => Some(limit.drain),
        _ => None,
    };
    if let Some(linger) = linger {
        tokio::select! {
            () = tokio::time::sleep(linger) => {}
            _ = stop.wait() => {}
        }
    }
    drop(display);
    // Every bot is listening for this; a send error only means none is left.
    let _ = finish.send(true);

    let mut links = Vec::with_capacity(tasks.len());
    let mut records = Vec::with_capacity(tasks.len() + late_tasks.len());
    for task in tasks {
        let (link, record) = task.await.map_err(|e| anyhow!("a bot failed: {e}"))?;
        links.push(link);
        records.push(record);
    }
    let mut late_links = Vec::with_capacity(late_tasks.len());
    for task in late_tasks {
        let (link, record) = task
            .await
            .map_err(|e| anyhow!("a late joiner failed: {e}"))?;
        late_links.extend(link);
        records.push(record);
    }
    tokio::join!(close_all(links), close_all(late_links));
    let mut stats = stats::aggregate(&records, plan.sends())?;
    let mut counts = Counts {
        deliveries: stats.throughput.measured_deliveries,
        acks: stats.throughput.measured_acks,
        connections: stats.bots,
    };
    if config.step.is_some() {
        let step = step_figures::of(&records, ended, status == Status::Cut);
        // The server's and the bench's CPU were read at the step's end: per delivery by then.
        counts.deliveries = step.delivered_in_time;
        stats.step = Some(step);
    }
    let [server_start, bench_start] = first_reading.map_or([None, None], |r| r.map(Some));
    let [server_end, bench_end] = last_reading;
    stats.server = cost(&config.server, server_start, server_end, counts);
    stats.bench = cost(config.bench.as_slice(), bench_start, bench_end, counts);
    Ok((status, stats))
}

/// The server's reading (its processes summed) and this process' (for those watched), taken
/// now.
fn readings(config: &Load) -> [Option<anyhow::Result<Reading>>; 2] {
    [config.server.as_slice(), config.bench.as_slice()]
        .map(|processes| (!processes.is_empty()).then(|| Reading::take_all(processes)))
}

/// What the watched `processes` spent together between `start` (`None`: the measured window
/// never began) and `end`.
fn cost(
    processes: &[ServerProcess],
    start: Option<Option<anyhow::Result<Reading>>>,
    end: Option<anyhow::Result<Reading>>,
    counts: Counts,
) -> Option<ServerCost> {
    let (first, end) = (processes.first()?, end?);
    let cost = match start.flatten() {
        Some(start) => ServerCost::between(first.pid(), start, end, counts),
        None => ServerCost::missing(
            first.pid(),
            "the run ended before its measured window began".into(),
        ),
    };
    Some(cost.of_all(processes))
}

/// A member that joins once the measured window began: it waits for the first measured send
/// and `after` that, connects (a few at a time, under the others' load), joins its room from
/// the first message and records what arrives like any bot, sending nothing.
struct LateJoiner {
    dialer: Dialer,
    account: Account,
    joins: Arc<tokio::sync::Semaphore>,
    after: Duration,
    /// Deliveries owed to it (every message of its room).
    owed: u64,
    schedule: Schedule,
}

impl LateJoiner {
    async fn run(
        self,
        tracker: Arc<Tracker>,
        mut finished: watch::Receiver<bool>,
    ) -> (Option<QuibbleLink>, BotRecord) {
        let LateJoiner {
            dialer,
            account,
            joins,
            after,
            owed,
            schedule,
        } = self;
        let join = async {
            tracker.measuring_began().await;
            tokio::time::sleep(after).await;
            let _turn = joins.acquire_owned().await?;
            bot::connect(&dialer, account.token.clone(), account.room, true).await
        };
        let joined = tokio::select! {
            joined = join => joined,
            _ = finished.wait_for(|done| *done) => Err(anyhow!("the run ended before it joined")),
        };
        match joined {
            Ok(bot) => {
                let (link, record) = bot.drive(schedule, tracker, finished).await;
                (Some(link), record)
            }
            Err(e) => {
                tracker.abandon(owed);
                let mut record = BotRecord::new(NOBODY, account.room, Duration::ZERO);
                record.late = true;
                record
                    .errors
                    .push(format!("a late joiner could not join: {e:#}"));
                (None, record)
            }
        }
    }
}

/// How long after the first measured send late joiners connect: halfway through the sending
/// at `rate` (at once when sending as fast as acks allow).
fn late_join_delay(rate: f64, messages: u32) -> Duration {
    if rate <= 0.0 {
        return Duration::ZERO;
    }
    Duration::from_secs_f64(f64::from(messages) / rate / 2.0)
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
    fn bots_go_round_the_nodes() {
        let api = |port: u16| Api::new(&format!("http://127.0.0.1:{port}")).unwrap();
        let fleet = [api(1), api(2), api(3)];
        let dialers = Dialers::of(fleet.iter(), TransportKind::WebSocket, 10);
        let node_of = |n| dialers.of_bot(n).api.server().base().port();
        let nodes: Vec<_> = (0..7).map(node_of).collect();
        assert_eq!(nodes, [1, 2, 3, 1, 2, 3, 1].map(Some));
        let alone = Dialers::of(fleet[..1].iter(), TransportKind::WebSocket, 10);
        for n in 0..5 {
            assert_eq!(alone.of_bot(n).api.server().base().port(), Some(1));
        }
    }

    #[test]
    fn late_joiners_come_halfway_through_the_sending() {
        assert_eq!(late_join_delay(20.0, 100), Duration::from_millis(2_500));
        assert_eq!(late_join_delay(0.0, 100), Duration::ZERO);
    }

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
