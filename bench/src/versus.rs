//! `quibble-bench versus`: the chat scenario, identical, against Quibble over WebTransport and
//! over WebSocket and against the two Node peers of `bench/peers/` (`ws` and Socket.IO 4), one
//! server at a time. Each is a fresh process started here on a loopback port, watched through
//! /proc over the measured window like `chat --server-pid` (CPU per delivery, CPU %, RSS), and
//! stopped by its PID before the next starts. The bots are driven by the same loop over each
//! server's link ([`crate::run::drive`]), so the same records and figures come out; the table
//! puts the servers side by side with Quibble's figures over the `ws` server's, against the
//! issue's targets. Quibble gets a data directory on disk (in the system's temp directory) and
//! a config that admits every bot from this one address at the offered rate; its accounts are
//! signed up once, in a Quibble process of their own before the measured ones, so that no
//! password hash lands in a measured process (nor its memory in an RSS figure). With `--sweep`
//! the same servers are run step after step at a rising load instead ([`crate::sweep`]), each
//! step a fresh process through [`Versus::step`].

use std::fmt::Write;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use quibble_client::{Api, TransportKind};
use serde::Serialize;

use crate::accounts::{self, AccountsSummary, Login};
use crate::args::{ChatArgs, TransportArg, command_line};
use crate::bot::{Bot, Link};
use crate::compare::{Ratios, ratio};
use crate::concurrency::bounded;
use crate::fd_limit;
use crate::peers::process::{RunningServer, server_command};
use crate::peers::{socketio, ws};
use crate::pin::Pinning;
use crate::plan::Plan;
use crate::report::{self, format_ms, format_ratio, problems, status_name};
use crate::run::{self, Load, RunConfig, RunResult, Status, StepLimit};
use crate::server_cpu;
use crate::stats::{RunStats, Summary};
use crate::stop::Stop;
use crate::sweep::{self, SweepArgs};
use crate::table::Table;
use crate::time_budget;

/// What `--help` adds about `versus`.
pub const VERSUS_HELP: &str = "\
Servers (--only, in this order): quibble-wt and quibble-ws (the `quibble` binary, --quibble-bin),
ws and socketio (node on bench/peers/ws-server.mjs and socketio-server.mjs, --peers-dir; install
them with bench/peers/setup). Each runs alone, started and stopped here; --server, --transport,
--server-pid and --accounts do not apply. --timeout bounds the whole invocation; by default it
scales with the servers, bots, messages and sweep steps it runs. --pin: this process on one CPU,
each server (under `taskset -c`) on another; the report says which.

Acks differ: Quibble's are durable (it acknowledges a message once it is on disk, fsync'd); the
peers keep nothing on disk and acknowledge what they received. Figures as in `chat --help`; `over ws` is
each server's figure divided by the ws server's, measured in this one invocation (below 1:
less than ws). bench CPU-us/delivery and CPU % of a core are this process' (every bot: the
load generator) over the same window as the server's: the bots' cost per delivery on each
server's link, and whether the bench rather than the server sets the latencies (it shares the
machine's cores with the server). Issue 9's targets: server CPU per delivery of Quibble WS <= 0.5x ws and of
Quibble WT <= 0.75x ws; fan-out p99 no worse than the better Node server's.

Exit status: 0 only if every server's run finished and nothing was lost, duplicated,
unexpected, rejected or left unanswered, and no error occurred; 1 otherwise (the targets do
not count).

--sweep: saturation instead of one run. The offered load rises from --rate per bot by
--sweep-factor per step (--sweep-steps); each step sends for --step-warmup-secs plus
--step-secs against every server in turn (fresh processes), is cut 1 s after its last send
(then 3 s of listening for what was acknowledged), and is sustained when >= 95 % of the
offered deliveries/s arrived, nothing acknowledged was lost or duplicated and the fan-out p99
stayed <= --p99-bound-ms. Saturation = the delivered rate at the highest sustained step; the
report gives it per server, over ws's against issue 9's targets (Quibble WS >= 4x, WT >= 3x),
and each server's peak. Its exit status is 0 when every step ran.";

/// Connections being opened at once (as `chat` does).
const CONNECTS_AT_ONCE: usize = 16;
/// What the server's `--server` flag says when nobody set it (`versus` refuses any other).
const DEFAULT_SERVER: &str = "http://127.0.0.1:4433";

#[derive(Debug, Clone, Args)]
#[command(
    mut_arg("server", |a| a.hide(true)),
    mut_arg("transport", |a| a.hide(true)),
    mut_arg("server_pid", |a| a.hide(true)),
    mut_arg("accounts", |a| a.hide(true))
)]
pub struct VersusArgs {
    #[command(flatten)]
    pub chat: ChatArgs,
    /// The `quibble` server binary [default: the one next to this executable].
    #[arg(long, value_name = "PATH")]
    pub quibble_bin: Option<PathBuf>,
    /// The peers' directory: their servers and node_modules (bench/peers/setup installs them).
    #[arg(long, value_name = "DIR", default_value = "bench/peers")]
    pub peers_dir: PathBuf,
    /// The servers to run, in this order (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = Contender::ALL)]
    pub only: Vec<Contender>,
    #[command(flatten)]
    pub sweep: SweepArgs,
}

/// A server of the comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Contender {
    QuibbleWt,
    QuibbleWs,
    Ws,
    Socketio,
}

impl Contender {
    const ALL: [Contender; 4] = [
        Contender::QuibbleWt,
        Contender::QuibbleWs,
        Contender::Ws,
        Contender::Socketio,
    ];

    /// As `--only` and the JSON spell it.
    pub fn name(self) -> &'static str {
        match self {
            Contender::QuibbleWt => "quibble-wt",
            Contender::QuibbleWs => "quibble-ws",
            Contender::Ws => "ws",
            Contender::Socketio => "socketio",
        }
    }

    /// As the table heads its column.
    pub fn label(self) -> &'static str {
        match self {
            Contender::QuibbleWt => "Quibble WT",
            Contender::QuibbleWs => "Quibble WS",
            Contender::Ws => "ws",
            Contender::Socketio => "Socket.IO",
        }
    }

    /// Quibble's transport, for Quibble's columns.
    fn quibble(self) -> Option<TransportKind> {
        match self {
            Contender::QuibbleWt => Some(TransportKind::WebTransport),
            Contender::QuibbleWs => Some(TransportKind::WebSocket),
            Contender::Ws | Contender::Socketio => None,
        }
    }

    /// What its ack means.
    pub fn acks(self) -> &'static str {
        match self.quibble() {
            Some(_) => "durable: on disk (fsync) before the ack",
            None => "received: nothing kept on disk",
        }
    }
}

/// `versus`' result.
#[derive(Debug, Clone, Serialize)]
pub struct VersusReport {
    /// The command line, quoted for a shell.
    pub command: String,
    pub scenario: Scenario,
    /// Quibble's bot accounts, obtained in a Quibble process of their own before the
    /// measured ones (absent without a Quibble column).
    pub quibble_accounts: Option<AccountsSummary>,
    pub servers: Vec<Column>,
    /// Each server's key figures over the `ws` server's (absent without a `ws` column).
    pub over_ws: Vec<OverWs>,
    pub targets: Vec<Target>,
    /// Every server's run complete and clean: the exit status is 0.
    pub ok: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Scenario {
    pub rooms: u32,
    pub users_per_room: u32,
    pub messages: u32,
    pub warmup: u32,
    /// Messages per second per user; 0: window of `in_flight`.
    pub rate: f64,
    pub message_size: u32,
    pub in_flight: u32,
    pub timeout_s: u64,
    /// Which core each side had (`--pin`); absent: wherever the scheduler put them.
    pub pinning: Option<Pinning>,
    /// Per server.
    pub bots: u64,
    pub planned_sends: u64,
    pub expected_deliveries: u64,
}

/// One server's run.
#[derive(Debug, Clone, Serialize)]
pub struct Column {
    pub server: &'static str,
    pub label: &'static str,
    /// What its acks mean (Quibble's are durable, the peers' are not).
    pub acks: &'static str,
    pub run: RunResult,
}

#[derive(Debug, Clone, Serialize)]
pub struct OverWs {
    pub server: &'static str,
    pub ratios: Ratios,
}

/// One of issue 9's targets, as this run measured it.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    pub what: String,
    /// The measured ratio.
    pub ratio: Option<f64>,
    /// The most it may be.
    pub at_most: f64,
    pub met: Option<bool>,
}

/// Run `versus` (or its sweep) and print its report; whether everything was fine.
pub async fn run(args: VersusArgs, pinning: Option<Pinning>) -> anyhow::Result<bool> {
    refuse_chat_only_flags(&args.chat)?;
    if args.sweep.sweep {
        return sweep::run(&args, pinning).await;
    }
    let chat = &args.chat;
    let plan = Plan::new(chat.rooms, chat.users_per_room, chat.warmup, chat.messages)?;
    let versus = Versus::prepare(&args, plan, chat.rate, pinning).await?;
    let step = Step {
        plan,
        rate: chat.rate,
        limit: None,
    };
    let mut servers = Vec::new();
    for &contender in versus.contenders() {
        servers.push(Column {
            server: contender.name(),
            label: contender.label(),
            acks: contender.acks(),
            run: versus.step(contender, &step).await,
        });
    }
    let report = VersusReport::new(command_line(), &versus, &plan, servers);
    if chat.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.text());
    }
    Ok(report.ok)
}

/// `versus` starts its own servers: the flags that name one are refused.
fn refuse_chat_only_flags(chat: &ChatArgs) -> anyhow::Result<()> {
    if chat.server != [DEFAULT_SERVER]
        || chat.transport != TransportArg::Both
        || !chat.server_pid.is_empty()
        || chat.accounts.is_some()
    {
        bail!(
            "versus starts and measures its own servers: --server, --transport, --server-pid and \
             --accounts do not apply (pick the servers with --only)"
        );
    }
    Ok(())
}

/// `name` in the directory of this executable (where cargo builds every binary).
fn beside_this_executable(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find this executable")?;
    let path = exe
        .parent()
        .context("this executable has no directory")?
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    if !path.is_file() {
        bail!(
            "no {} (build it with `cargo build --release -p quibble-server`, or give --quibble-bin)",
            path.display()
        );
    }
    Ok(path)
}

/// The peers' directory, checked: its servers are there and installed, and so is Node.
fn peers_dir(dir: &Path) -> anyhow::Result<PathBuf> {
    let dir = dir
        .canonicalize()
        .with_context(|| format!("no peers directory {} (--peers-dir)", dir.display()))?;
    if !dir.join("node_modules").is_dir() {
        bail!(
            "{} has no node_modules: run {}",
            dir.display(),
            dir.join("setup").display()
        );
    }
    let node = Command::new("node").arg("--version").output();
    if !node.is_ok_and(|out| out.status.success()) {
        bail!("cannot run `node`: run {}", dir.join("setup").display());
    }
    Ok(dir)
}

/// The port in Quibble's first line, `quibble listening on http://127.0.0.1:PORT/`.
fn quibble_port(line: &str) -> Option<u16> {
    let url = line.strip_prefix("quibble listening on ")?;
    url.trim()
        .trim_end_matches('/')
        .rsplit(':')
        .next()?
        .parse()
        .ok()
}

/// The port in a peer's first line, `listening PORT`.
fn peer_port(line: &str) -> Option<u16> {
    line.strip_prefix("listening ")?.trim().parse().ok()
}

/// A config that admits `bots` bots from one address, sending `rate` messages per second each
/// (0: as fast as acks allow), each of them in a fresh room per run (a sweep makes many).
fn quibble_config(bots: u64, rate: f64) -> String {
    let connections = bots.saturating_add(64).max(128);
    // Twice the offered rate, so that no send waits for the limiter; unbounded at rate 0.
    let per_second = if rate > 0.0 {
        ((rate * 2.0).ceil() as u64).max(50)
    } else {
        1_000_000
    };
    format!(
        "# quibble-bench versus: every bot connects from this one address.\n\
         max_connections = {connections}\n\
         max_connections_per_ip = {connections}\n\
         max_unauthenticated_per_ip = 2000\n\
         signup_burst = {}\n\
         messages_per_second = {per_second}\n\
         message_burst = {}\n\
         room_burst = 1000\n\
         rooms_per_hour = 100000\n\
         room_join_burst = 1000\n\
         room_joins_per_hour = 100000\n",
        bots.saturating_add(64),
        per_second.saturating_mul(4),
    )
}

/// Quibble's binary, config, data and accounts, shared by its columns.
#[derive(Debug)]
struct Quibble {
    bin: PathBuf,
    data_dir: PathBuf,
    config: PathBuf,
    accounts: PathBuf,
    /// Every Quibble process listens here (the accounts file is for one server URL).
    port: u16,
    summary: AccountsSummary,
}

impl Quibble {
    /// Write the config, then sign every bot up in a Quibble process of their own.
    async fn prepare(
        bin: PathBuf,
        dir: &Path,
        plan: &Plan,
        rate: f64,
        stop: &Stop,
        cpu: Option<usize>,
    ) -> anyhow::Result<Quibble> {
        let config = dir.join("quibble.toml");
        std::fs::write(&config, quibble_config(plan.bots(), rate))
            .with_context(|| format!("cannot write {}", config.display()))?;
        let mut quibble = Quibble {
            bin,
            data_dir: dir.join("quibble-data"),
            config,
            accounts: dir.join("accounts.jsonl"),
            port: 0,
            summary: AccountsSummary::default(),
        };
        let server = quibble
            .start(&dir.join("quibble-accounts.log"), cpu)
            .await?;
        quibble.port = server.port();
        let (_, summary) = tokio::select! {
            provided = quibble.sign_in(plan) => provided?,
            reason = stop.wait() => bail!("{reason} while signing the bots up"),
        };
        quibble.summary = summary;
        server.stop().await?;
        Ok(quibble)
    }

    async fn start(&self, log: &Path, cpu: Option<usize>) -> anyhow::Result<RunningServer> {
        let mut command = server_command(&self.bin, cpu);
        command
            .arg("serve")
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--config")
            .arg(&self.config);
        RunningServer::start(command, log, quibble_port)
            .await
            .with_context(|| format!("cannot start {}", self.bin.display()))
    }

    fn api(&self) -> anyhow::Result<Api> {
        Ok(Api::new(&format!("http://127.0.0.1:{}", self.port))?)
    }

    async fn sign_in(&self, plan: &Plan) -> anyhow::Result<(Vec<Login>, AccountsSummary)> {
        let bots = usize::try_from(plan.bots()).context("too many bots")?;
        accounts::provide(&self.api()?, Some(&self.accounts), bots).await
    }
}

/// What every column shares.
pub struct Versus<'a> {
    chat: &'a ChatArgs,
    /// The bound on the whole invocation (--timeout, or scaled to what it runs).
    timeout_s: u64,
    pinning: Option<Pinning>,
    stop: Stop,
    /// Logs (and Quibble's files); removed when this is dropped.
    dir: tempfile::TempDir,
    quibble: Option<Quibble>,
    peers_dir: Option<PathBuf>,
    /// The servers to run, in order, each once.
    contenders: Vec<Contender>,
    /// Runs so far (each server's log is named after its run).
    runs: std::sync::atomic::AtomicU32,
}

/// One run's load: the scenario, the rate per bot, and for a sweep step its deadline.
#[derive(Debug, Clone, Copy)]
pub struct Step {
    pub plan: Plan,
    pub rate: f64,
    pub limit: Option<StepLimit>,
}

impl<'a> Versus<'a> {
    /// Check the peers, sign Quibble's bots up (for `plan`'s bots, admitted up to `max_rate`
    /// messages per second each) and start the invocation's clock. `plan` is the run's (or
    /// the sweep's first step's).
    pub async fn prepare(
        args: &'a VersusArgs,
        plan: Plan,
        max_rate: f64,
        pinning: Option<Pinning>,
    ) -> anyhow::Result<Versus<'a>> {
        let chat = &args.chat;
        let mut contenders = Vec::new();
        for contender in &args.only {
            if !contenders.contains(contender) {
                contenders.push(*contender);
            }
        }
        let timeout_s = chat.timeout.unwrap_or_else(|| {
            time_budget::versus_secs(contenders.len(), &plan, chat.rate, &args.sweep)
        });
        let stop = Stop::start(tokio::time::Instant::now() + Duration::from_secs(timeout_s));
        let cpu = pinning.map(|p| p.server_cpu);
        fd_limit::make_room_for(u32::try_from(plan.bots()).unwrap_or(u32::MAX))?;
        let dir = tempfile::Builder::new()
            .prefix("quibble-versus-")
            .tempdir()
            .context("cannot make a temp directory")?;
        let peers_dir = if contenders.iter().any(|c| c.quibble().is_none()) {
            Some(peers_dir(&args.peers_dir)?)
        } else {
            None
        };
        let quibble = if contenders.iter().any(|c| c.quibble().is_some()) {
            let bin = match &args.quibble_bin {
                Some(bin) => bin.clone(),
                None => beside_this_executable("quibble")?,
            };
            Some(Quibble::prepare(bin, dir.path(), &plan, max_rate, &stop, cpu).await?)
        } else {
            None
        };
        Ok(Versus {
            chat,
            timeout_s,
            pinning,
            stop,
            dir,
            quibble,
            peers_dir,
            contenders,
            runs: std::sync::atomic::AtomicU32::new(0),
        })
    }

    /// The servers to run, in order.
    pub fn contenders(&self) -> &[Contender] {
        &self.contenders
    }

    /// Quibble's bot accounts, if a Quibble server runs.
    pub fn quibble_accounts(&self) -> Option<AccountsSummary> {
        self.quibble.as_ref().map(|q| q.summary)
    }

    /// The bound on the whole invocation, in seconds.
    pub fn timeout_s(&self) -> u64 {
        self.timeout_s
    }

    /// Which core each side has, with `--pin`.
    pub fn pinning(&self) -> Option<Pinning> {
        self.pinning
    }

    /// The benchmark must stop (its --timeout, or an interrupt).
    pub fn stopped(&self) -> bool {
        self.stop.reason().is_some()
    }

    /// Run `step` against a fresh `contender` server; its result whatever happens.
    pub async fn step(&self, contender: Contender, step: &Step) -> RunResult {
        let name = contender.name();
        if let Some(reason) = self.stop.reason() {
            return failed(
                name,
                reason.into(),
                "not started: the benchmark had stopped",
            );
        }
        // Each phase of the run watches the stop; starting a server is bounded by itself.
        let outcome = self.measure(contender, step).await;
        let mut result =
            outcome.unwrap_or_else(|e| failed(name, Status::Failed, &format!("{e:#}")));
        result.transport = name;
        result
    }

    /// Start `contender`'s server, run the scenario against it, stop it.
    async fn measure(&self, contender: Contender, step: &Step) -> anyhow::Result<RunResult> {
        let name = contender.name();
        let run = self.runs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let log = self.dir.path().join(format!("{name}-{run}.log"));
        let cpu = self.pinning.map(|p| p.server_cpu);
        let server = match (contender.quibble(), &self.quibble, &self.peers_dir) {
            (Some(_), Some(quibble), _) => quibble.start(&log, cpu).await?,
            (None, _, Some(peers)) => {
                let script = match contender {
                    Contender::Socketio => "socketio-server.mjs",
                    _ => "ws-server.mjs",
                };
                let mut command = server_command("node", cpu);
                command.arg(peers.join(script)).arg("0").current_dir(peers);
                RunningServer::start(command, &log, peer_port)
                    .await
                    .with_context(|| format!("cannot start the {name} server"))?
            }
            _ => bail!("{name} was not prepared"),
        };
        let load = Load {
            plan: step.plan,
            rate: step.rate,
            message_size: self.chat.message_size,
            in_flight: self.chat.in_flight,
            server: vec![server_cpu::watch(server.pid())?],
            bench: Some(server_cpu::watch(std::process::id())?),
            step: step.limit,
        };
        let port = server.port();
        let mut result = match (contender, &self.quibble) {
            (Contender::QuibbleWt | Contender::QuibbleWs, Some(quibble)) => {
                self.quibble_run(quibble, contender, load).await?
            }
            (Contender::Socketio, _) => {
                self.peer_run(name, load, move |user, room| {
                    socketio::connect(port, user, room)
                })
                .await
            }
            _ => {
                self.peer_run(name, load, move |user, room| ws::connect(port, user, room))
                    .await
            }
        };
        if let Err(e) = server.stop().await {
            result.status = Status::Failed;
            let note = format!("{e:#}");
            result.error = Some(match result.error.take() {
                Some(error) => format!("{error}; {note}"),
                None => note,
            });
        }
        Ok(result)
    }

    async fn quibble_run(
        &self,
        quibble: &Quibble,
        contender: Contender,
        load: Load,
    ) -> anyhow::Result<RunResult> {
        let Some(kind) = contender.quibble() else {
            bail!("{} is not Quibble", contender.name());
        };
        // The accounts signed up before: their tokens are only checked.
        let (logins, _) = tokio::select! {
            provided = quibble.sign_in(&load.plan) => provided?,
            reason = self.stop.wait() => {
                return Ok(failed(contender.name(), reason.into(), "stopped while signing in"));
            }
        };
        let config = RunConfig {
            api: quibble.api()?,
            other_nodes: Vec::new(),
            load,
            leave_rooms: true,
            sessions_per_socket: self.chat.sessions_per_socket as usize,
        };
        Ok(run::run(&config, kind, logins, &self.stop).await)
    }

    /// Connect every bot with `connect(user, room)` and drive them.
    async fn peer_run<L, F, C>(&self, name: &'static str, load: Load, connect: C) -> RunResult
    where
        L: Link,
        F: Future<Output = anyhow::Result<Bot<L>>> + Send + 'static,
        C: Fn(u64, u64) -> F,
    {
        let plan = load.plan;
        let connects = (0..plan.bots())
            .map(|user| {
                // Bot counts fit a usize (`Plan::new`).
                let room = plan.room_of(user as usize) as u64;
                let joined = connect(user, room);
                async move {
                    joined
                        .await
                        .with_context(|| format!("bot {user} cannot join room {room}"))
                }
            })
            .collect();
        let bots = tokio::select! {
            bots = bounded(CONNECTS_AT_ONCE, connects) => bots,
            reason = self.stop.wait() => {
                return failed(name, reason.into(), "stopped while connecting the bots");
            }
        };
        let outcome = match bots {
            Ok(bots) => run::drive(&load, name, bots, None, &self.stop).await,
            Err(e) => Err(e),
        };
        RunResult::of(name, outcome)
    }
}

/// A result without figures.
fn failed(name: &'static str, status: Status, why: &str) -> RunResult {
    RunResult {
        transport: name,
        status,
        error: Some(why.to_owned()),
        stats: None,
    }
}

impl VersusReport {
    fn new(command: String, versus: &Versus, plan: &Plan, servers: Vec<Column>) -> VersusReport {
        let chat = versus.chat;
        let stats_of = |name: &str| {
            servers
                .iter()
                .find(|c| c.server == name)
                .and_then(|c| c.run.stats.as_ref())
        };
        let over_ws = match stats_of(Contender::Ws.name()) {
            Some(ws) => servers
                .iter()
                .filter_map(|c| {
                    let stats = c.run.stats.as_ref()?;
                    Some(OverWs {
                        server: c.server,
                        ratios: Ratios::of(stats, ws),
                    })
                })
                .collect(),
            None => Vec::new(),
        };
        let targets = targets(&servers);
        let ok = !servers.is_empty() && servers.iter().all(|c| c.run.ok());
        VersusReport {
            command,
            scenario: Scenario {
                rooms: chat.rooms,
                users_per_room: chat.users_per_room,
                messages: chat.messages,
                warmup: chat.warmup,
                rate: chat.rate,
                message_size: chat.message_size,
                in_flight: chat.in_flight,
                timeout_s: versus.timeout_s,
                pinning: versus.pinning,
                bots: plan.bots(),
                planned_sends: plan.sends(),
                expected_deliveries: plan.deliveries(),
            },
            quibble_accounts: versus.quibble_accounts(),
            servers,
            over_ws,
            targets,
            ok,
        }
    }

    /// The human report.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let s = &self.scenario;
        let pace = if s.rate <= 0.0 {
            format!("as fast as acks allow ({} in flight)", s.in_flight)
        } else {
            format!("at {}/s", s.rate)
        };
        let _ = writeln!(out, "$ {}", self.command);
        let _ = writeln!(
            out,
            "{} rooms x {} users = {} bots per server; {} messages per user (+{} warmup) {pace}, \
             {} bytes each; one server at a time, each a fresh process\n",
            s.rooms, s.users_per_room, s.bots, s.messages, s.warmup, s.message_size
        );
        if let Some(pinning) = &s.pinning {
            let _ = writeln!(out, "{}", pinning.describe());
        }
        if let Some(accounts) = &self.quibble_accounts {
            let _ = writeln!(
                out,
                "Quibble's {} (in a Quibble process of their own)",
                accounts.text()
            );
        }
        for column in &self.servers {
            let _ = writeln!(out, "{} acks: {}", column.label, column.acks);
        }
        out.push('\n');
        out.push_str(&self.figures_table().render());
        if !self.over_ws.is_empty() {
            out.push('\n');
            out.push_str(&self.over_ws_table().render());
        }
        if !self.targets.is_empty() {
            let _ = writeln!(
                out,
                "\nissue 9's targets (ratios measured in this one run):"
            );
            for target in &self.targets {
                let verdict = match target.met {
                    Some(true) => "met",
                    Some(false) => "NOT MET",
                    None => "not measured",
                };
                let _ = writeln!(
                    out,
                    "  {} <= {:.2}: {} {verdict}",
                    target.what,
                    target.at_most,
                    format_ratio(target.ratio)
                );
            }
        }
        out.push_str(&self.notes());
        let _ = writeln!(out, "\nresult: {}", self.verdict());
        out
    }

    /// One column per server: counts, latencies, throughput, server cost.
    fn figures_table(&self) -> Table {
        let mut table = Table::default();
        table.row(std::iter::once("").chain(self.servers.iter().map(|c| c.label)));
        table.row(
            std::iter::once("status").chain(self.servers.iter().map(|c| status_name(c.run.status))),
        );
        type Figure = fn(&RunStats) -> String;
        fn ms(summary: &Summary, pick: fn(&Summary) -> u64) -> String {
            if summary.count == 0 {
                "-".to_owned()
            } else {
                format_ms(pick(summary))
            }
        }
        fn cost(stats: &RunStats, pick: fn(&server_cpu::ServerCost) -> Option<f64>) -> String {
            stats
                .server
                .as_ref()
                .and_then(pick)
                .map_or_else(|| "-".to_owned(), |v| format!("{v:.2}"))
        }
        fn bench(stats: &RunStats, pick: fn(&server_cpu::ServerCost) -> Option<f64>) -> String {
            stats
                .bench
                .as_ref()
                .and_then(pick)
                .map_or_else(|| "-".to_owned(), |v| format!("{v:.2}"))
        }
        let figures: [(&str, Figure); 20] = [
            ("delivered / expected", |s| {
                format!("{} / {}", s.delivered, s.expected)
            }),
            ("lost", |s| s.lost.to_string()),
            ("duplicated", |s| s.duplicated.to_string()),
            ("out of order", |s| s.out_of_order.to_string()),
            ("unexpected", |s| s.unexpected.to_string()),
            ("unanswered", |s| s.unanswered.to_string()),
            ("errors", |s| s.errors.to_string()),
            ("ack p50 ms", |s| ms(&s.latency_us.ack, |l| l.p50)),
            ("ack p99 ms", |s| ms(&s.latency_us.ack, |l| l.p99)),
            ("fan-out p50 ms", |s| ms(&s.latency_us.fanout, |l| l.p50)),
            ("fan-out p90 ms", |s| ms(&s.latency_us.fanout, |l| l.p90)),
            ("fan-out p99 ms", |s| ms(&s.latency_us.fanout, |l| l.p99)),
            ("connect+join p50 ms", |s| {
                ms(&s.latency_us.connect_join, |l| l.p50)
            }),
            ("delivered msgs/s", |s| {
                format!("{:.0}", s.throughput.delivered_per_s)
            }),
            ("server CPU-us/delivery", |s| {
                cost(s, |c| c.cpu_us_per_delivery)
            }),
            ("server CPU % of a core", |s| {
                cost(s, |c| c.cpu_percent_of_core)
            }),
            ("server RSS MiB (end)", |s| {
                cost(s, |c| c.rss_end_kib.map(|v| v as f64 / 1024.0))
            }),
            ("server RSS KiB/conn", |s| {
                cost(s, |c| c.rss_per_connection_bytes.map(|v| v as f64 / 1024.0))
            }),
            ("bench CPU-us/delivery", |s| {
                bench(s, |c| c.cpu_us_per_delivery)
            }),
            ("bench CPU % of a core", |s| {
                bench(s, |c| c.cpu_percent_of_core)
            }),
        ];
        for (label, figure) in figures {
            let cells = self
                .servers
                .iter()
                .map(|c| c.run.stats.as_ref().map_or_else(|| "-".to_owned(), figure));
            table.row(std::iter::once(label.to_owned()).chain(cells));
        }
        table
    }

    /// Each server's key figures over the `ws` server's.
    fn over_ws_table(&self) -> Table {
        let mut table = Table::default();
        table.row(std::iter::once("over ws").chain(self.servers.iter().map(|c| c.label)));
        type Pick = fn(&Ratios) -> Option<f64>;
        let rows: [(&str, Pick); 5] = [
            ("server CPU-us/delivery", |r| r.server_cpu_us_per_delivery),
            ("fan-out p50", |r| r.fanout.p50),
            ("fan-out p99", |r| r.fanout.p99),
            ("ack p99", |r| r.ack.p99),
            ("delivered msgs/s", |r| r.delivered_per_s),
        ];
        for (label, pick) in rows {
            let cells = self.servers.iter().map(|c| {
                let ratios = self.over_ws.iter().find(|o| o.server == c.server);
                format_ratio(ratios.and_then(|o| pick(&o.ratios)))
            });
            table.row(std::iter::once(label.to_owned()).chain(cells));
        }
        table
    }

    /// Errors of failed runs and error samples.
    fn notes(&self) -> String {
        let mut out = String::new();
        for column in &self.servers {
            report::write_notes(&mut out, column.label, &column.run);
        }
        out
    }

    /// "OK", or what went wrong.
    fn verdict(&self) -> String {
        if self.ok {
            return "OK".into();
        }
        let problems: Vec<String> = self
            .servers
            .iter()
            .filter(|c| !c.run.ok())
            .map(|c| format!("{}: {}", c.label, problems(&c.run).join(", ")))
            .collect();
        format!("FAILED ({})", problems.join("; "))
    }
}

/// Issue 9's targets for the servers that ran: Quibble's CPU per delivery over `ws`'s, and its
/// fan-out p99 over the better Node server's.
fn targets(servers: &[Column]) -> Vec<Target> {
    let stats = |contender: Contender| {
        servers
            .iter()
            .find(|c| c.server == contender.name())
            .and_then(|c| c.run.stats.as_ref())
    };
    let cpu = |s: &RunStats| s.server.as_ref().and_then(|c| c.cpu_us_per_delivery);
    let p99 = |s: &RunStats| (s.latency_us.fanout.count > 0).then_some(s.latency_us.fanout.p99);
    let best_node_p99 = [Contender::Ws, Contender::Socketio]
        .into_iter()
        .filter_map(|c| stats(c).and_then(p99))
        .min();
    let mut targets = Vec::new();
    for (contender, cpu_limit) in [(Contender::QuibbleWs, 0.5), (Contender::QuibbleWt, 0.75)] {
        let Some(quibble) = stats(contender) else {
            continue;
        };
        if let Some(ws) = stats(Contender::Ws) {
            let r = cpu(quibble).zip(cpu(ws)).and_then(|(q, w)| ratio(q, w));
            targets.push(Target {
                what: format!("{} server CPU-us/delivery over ws", contender.label()),
                ratio: r,
                at_most: cpu_limit,
                met: r.map(|r| r <= cpu_limit),
            });
        }
        if let Some(best) = best_node_p99 {
            let r = p99(quibble).and_then(|q| ratio(q as f64, best as f64));
            targets.push(Target {
                what: format!(
                    "{} fan-out p99 over the better Node server's",
                    contender.label()
                ),
                ratio: r,
                at_most: 1.0,
                met: r.map(|r| r <= 1.0),
            });
        }
    }
    targets
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::args::{Cli, Command as BenchCommand};

    fn parse(args: &[&str]) -> Result<VersusArgs, clap::Error> {
        let cli = Cli::try_parse_from(["quibble-bench", "versus"].iter().chain(args))?;
        let BenchCommand::Versus(args) = cli.command else {
            panic!("parsed `versus`")
        };
        Ok(args)
    }

    #[test]
    fn options_parse_and_chat_only_flags_are_refused() {
        let args = parse(&[]).unwrap();
        assert_eq!(args.only, Contender::ALL);
        assert_eq!(args.peers_dir, PathBuf::from("bench/peers"));
        assert!(args.quibble_bin.is_none());
        refuse_chat_only_flags(&args.chat).unwrap();
        let args = parse(&[
            "--only",
            "ws,quibble-ws",
            "--rooms",
            "2",
            "--rate",
            "0.3",
            "--quibble-bin",
            "/x/quibble",
        ])
        .unwrap();
        assert_eq!(args.only, [Contender::Ws, Contender::QuibbleWs]);
        assert_eq!((args.chat.rooms, args.chat.rate), (2, 0.3));
        assert!(parse(&["--only", "redis"]).is_err());
        for flags in [
            &["--server", "http://127.0.0.1:1"][..],
            &["--transport", "websocket"],
            &["--server-pid", "1"],
            &["--accounts", "/tmp/a"],
        ] {
            let args = parse(flags).unwrap();
            assert!(refuse_chat_only_flags(&args.chat).is_err(), "{flags:?}");
        }
        let help = {
            use clap::CommandFactory;
            let mut cli = Cli::command();
            cli.find_subcommand_mut("versus")
                .unwrap()
                .render_long_help()
                .to_string()
        };
        assert!(
            help.contains("--only") && help.contains("durable"),
            "{help}"
        );
        assert!(!help.contains("--server-pid <PID>"), "{help}");
    }

    #[test]
    fn first_lines_give_the_port() {
        assert_eq!(
            quibble_port("quibble listening on http://127.0.0.1:4433/"),
            Some(4433)
        );
        assert_eq!(quibble_port("listening 4433"), None);
        assert_eq!(peer_port("listening 39123"), Some(39123));
        assert_eq!(peer_port("listening"), None);
    }

    #[test]
    fn quibble_admits_the_bots_at_their_rate() {
        let config = quibble_config(1_000, 10.0);
        for line in [
            "max_connections = 1064",
            "max_connections_per_ip = 1064",
            "signup_burst = 1064",
            "messages_per_second = 50",
            "message_burst = 200",
        ] {
            assert!(config.contains(line), "{line} in {config}");
        }
        assert!(quibble_config(10, 100.0).contains("messages_per_second = 200\n"));
        assert!(quibble_config(10, 0.0).contains("messages_per_second = 1000000\n"));
        assert!(quibble_config(10, 0.3).contains("max_connections = 128\n"));
    }
}
