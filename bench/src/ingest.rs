//! `quibble-bench ingest`: how many messages per second the server makes durable. S senders
//! (each a bot with its own account and connection), each in a room of its own or all in one
//! room, keep up to `--in-flight` sends unanswered for a warm-up and then a measured window;
//! nobody else reads. A message counts once its `Sent` arrives, which the server sends only
//! after the store's fsynced commit.
//!
//! Design: accounts and rooms come from the chat scenario's machinery ([`accounts`],
//! [`scenario`], [`bot::connect`]); each sender then runs its own small loop (send while the
//! window has room, take events) and keeps only counts and a latency histogram of the acks
//! that arrive inside the window, so nothing is matched up afterwards. The main task reads the
//! server at the window's two ends: its store counters from `/metrics` (commits and messages
//! committed, see [`crate::ingest_report`]) and, with `--server-pid`, its CPU time.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use clap::Args;
use hdrhistogram::Histogram;
use quibble_client::{Api, Client, ClientEvent, ConversationId, Event, TransportKind, WtEndpoints};
use tokio::sync::watch;

use crate::accounts::{self, Login};
use crate::args::{TransportArg, transport_name};
use crate::bot::{self, Dialer};
use crate::concurrency::bounded;
use crate::ingest_report::{IngestReport, IngestRun, StoreReading, StoreStats};
use crate::plan::Plan;
use crate::scenario;
use crate::server_cpu::{self, Counts, Reading, ServerCost};
use crate::server_memory::ServerProcess;
use crate::stats;
use crate::stop::Stop;

/// WebTransport senders sharing one UDP socket (as `chat`'s default).
const SESSIONS_PER_SOCKET: usize = 100;
/// Connections being opened at once.
const CONNECTS_AT_ONCE: usize = 16;
/// How long senders wait for the answers to what they sent before the window closed.
const DRAIN: Duration = Duration::from_secs(10);
/// How long closing the connections may take before they are dropped.
const CLOSE_LIMIT: Duration = Duration::from_secs(5);
/// Longest wait for one `/metrics` reading.
const METRICS_TIMEOUT: Duration = Duration::from_secs(5);

/// What the figures of an ingest report mean; shown by `ingest --help`.
pub const INGEST_FIGURES: &str = "\
Figures (one column per transport):
  acked msgs/s        Sent acks that arrived inside the measured window / its length. The
                      server sends Sent only after the message's commit is fsynced.
  ack p50/p99/max     send -> Sent of those acks, ms
  sent, acked         over the whole run (warm-up and drain included)
  rejected            sends refused for good; rate_limited ones are resent by the client and
                      show as latency (raise messages_per_second/message_burst in the server's
                      config above the offered rate)
  unanswered          sends still without an answer --drain seconds after the window closed
  errors              disconnects, stream rejoins and server errors seen by the senders
  commits/s           store write transactions committed (each one fsync) per second over the
                      window, from the server's /metrics (quibble_store_commits_total)
  msgs/commit         messages committed in the window / commits in it
  server CPU-us/ack   (with --server-pid) server CPU time over the window / acks in it

Exit status: 0 only if the run finished, nothing was rejected or left unanswered, and no error
occurred; 1 otherwise. The server must allow each sender --in-flight unanswered sends
(max_inflight_sends) and the offered rate (messages_per_second, message_burst); accounts and
rooms stay in its store: benchmark a throwaway data directory.";

#[derive(Debug, Clone, Args)]
pub struct IngestArgs {
    /// Server base URL.
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:4433")]
    pub server: String,
    /// Realtime transport; `both` runs once per transport (WebTransport first).
    #[arg(long, value_enum, default_value_t = TransportArg::Both)]
    pub transport: TransportArg,
    /// Senders, each a user with its own connection.
    #[arg(long, value_name = "S", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=20_000))]
    pub senders: u32,
    /// Put every sender in one room (each then also receives everyone's messages) instead of
    /// a room each.
    #[arg(long)]
    pub one_room: bool,
    /// Unanswered sends each sender keeps outstanding.
    #[arg(long, value_name = "N", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub in_flight: u32,
    /// Seconds of sending before the measured window (not counted).
    #[arg(long, value_name = "SECS", default_value_t = 2, value_parser = clap::value_parser!(u64).range(0..=600))]
    pub warmup: u64,
    /// Seconds of the measured window.
    #[arg(long, value_name = "SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3_600))]
    pub duration: u64,
    /// Bytes of each message's text.
    #[arg(long, value_name = "BYTES", default_value_t = 100, value_parser = clap::value_parser!(u32).range(16..=4096))]
    pub message_size: u32,
    /// Keep the senders' accounts in FILE and reuse them on later runs (as `chat --accounts`).
    #[arg(long, value_name = "FILE")]
    pub accounts: Option<PathBuf>,
    /// The server's process id (on this machine), for its CPU time over the window.
    #[arg(long, value_name = "PID")]
    pub server_pid: Option<u32>,
    /// Print the result as JSON on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Bound on the whole invocation, setup included.
    #[arg(long, value_name = "SECS", default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: u64,
}

/// Run `ingest` once per transport and gather the report.
pub async fn run(args: &IngestArgs, stop: &Stop) -> anyhow::Result<IngestReport> {
    let api = Api::new(&args.server).context("invalid --server")?;
    let server = args.server_pid.map(server_cpu::watch).transpose()?;
    tokio::select! {
        reached = api.cert() => {
            reached.with_context(|| format!("cannot reach the server at {}", args.server))?;
        }
        reason = stop.wait() => anyhow::bail!("{reason} while reaching the server"),
    }
    let metrics = Metrics::new(&api)?;
    let kinds = args.transport.kinds();
    let senders = args.senders as usize;
    let (mut logins, accounts) = tokio::select! {
        provided = accounts::provide(&api, args.accounts.as_deref(), senders * kinds.len()) => {
            provided?
        }
        reason = stop.wait() => anyhow::bail!("{reason} while signing the senders in"),
    };
    let mut runs = Vec::new();
    for kind in kinds {
        let rest = logins.split_off(senders.min(logins.len()));
        let mine = std::mem::replace(&mut logins, rest);
        let run = tokio::select! {
            run = one_run(args, &api, &metrics, server, kind, mine) => run,
            reason = stop.wait() => Err(anyhow!("{reason}")),
        };
        runs.push(run.unwrap_or_else(|e| IngestRun::failed(transport_name(kind), &e)));
        if stop.reason().is_some() {
            break;
        }
    }
    Ok(IngestReport::new(args, accounts, runs))
}

/// One transport's run: rooms, connections, the window, the figures.
async fn one_run(
    args: &IngestArgs,
    api: &Api,
    metrics: &Metrics,
    server: Option<ServerProcess>,
    kind: TransportKind,
    logins: Vec<Login>,
) -> anyhow::Result<IngestRun> {
    let plan = if args.one_room {
        Plan::new(1, args.senders, 0, 1)?
    } else {
        Plan::new(args.senders, 1, 0, 1)?
    };
    let accounts = scenario::setup(api, &plan, logins).await?;
    let dialer = Dialer {
        api: api.clone(),
        kind,
        endpoints: WtEndpoints::new(SESSIONS_PER_SOCKET),
    };
    let connects = accounts
        .iter()
        .cloned()
        .map(|account| {
            let dialer = dialer.clone();
            async move {
                bot::connect(&dialer, account.token, account.room, false)
                    .await
                    .with_context(|| format!("sender {} cannot join its room", account.username))
            }
        })
        .collect();
    let bots = bounded(CONNECTS_AT_ONCE, connects).await?;

    let start = Instant::now();
    let window = Window {
        from: start + Duration::from_secs(args.warmup),
        to: start + Duration::from_secs(args.warmup + args.duration),
    };
    let (finish, finished) = watch::channel(false);
    let mut tasks = Vec::with_capacity(bots.len());
    for (bot, account) in bots.into_iter().zip(&accounts) {
        let sender = Sender {
            client: bot.into_client(),
            room: account.room,
            in_flight: args.in_flight,
            message_size: args.message_size as usize,
            window,
        };
        tasks.push(tokio::spawn(
            sender.drive(SenderRecord::new()?, finished.clone()),
        ));
    }

    tokio::time::sleep_until(window.from.into()).await;
    let first = (metrics.read().await, server.map(Reading::take));
    tokio::time::sleep_until(window.to.into()).await;
    let last = (metrics.read().await, server.map(Reading::take));
    // Every sender is listening for this; a send error only means none is left.
    let _ = finish.send(true);

    let mut clients = Vec::with_capacity(tasks.len());
    let mut total = SenderRecord::new()?;
    for task in tasks {
        let (client, record) = task.await.map_err(|e| anyhow!("a sender failed: {e}"))?;
        clients.push(client);
        total.add(&record)?;
    }
    close_all(clients).await;

    let window_s = (window.to - window.from).as_secs_f64();
    let store = StoreStats::between(first.0, last.0);
    let cpu = match (server, first.1, last.1) {
        (Some(server), Some(start), Some(end)) => Some(ServerCost::between(
            server.pid(),
            start,
            end,
            Counts {
                deliveries: total.window_acks,
                acks: total.window_acks,
                connections: u64::from(args.senders),
            },
        )),
        _ => None,
    };
    Ok(IngestRun {
        transport: transport_name(kind),
        error: None,
        window_s,
        acked_per_s: stats::per_second(total.window_acks, window.to - window.from),
        ack_us: stats::summarize(&total.latency),
        sent: total.sent,
        acked: total.acked,
        rejected: total.rejected.values().sum(),
        rejected_by_code: total.rejected,
        unanswered: total.unanswered,
        errors: total.errors.values().sum(),
        error_samples: total.errors.into_iter().collect(),
        store,
        server: cpu,
    })
}

/// The measured window.
#[derive(Debug, Clone, Copy)]
struct Window {
    from: Instant,
    to: Instant,
}

impl Window {
    fn contains(&self, at: Instant) -> bool {
        self.from <= at && at < self.to
    }
}

/// One sender, connected and joined.
struct Sender {
    client: Client,
    room: ConversationId,
    in_flight: u32,
    message_size: usize,
    window: Window,
}

/// What one sender counted (and, added up, all of them).
struct SenderRecord {
    sent: u64,
    acked: u64,
    /// Acks that arrived inside the window.
    window_acks: u64,
    /// Their send -> ack latencies, µs.
    latency: Histogram<u64>,
    rejected: BTreeMap<String, u64>,
    unanswered: u64,
    errors: BTreeMap<String, u64>,
}

impl SenderRecord {
    fn new() -> anyhow::Result<SenderRecord> {
        Ok(SenderRecord {
            sent: 0,
            acked: 0,
            window_acks: 0,
            latency: stats::histogram()?,
            rejected: BTreeMap::new(),
            unanswered: 0,
            errors: BTreeMap::new(),
        })
    }

    fn add(&mut self, other: &SenderRecord) -> anyhow::Result<()> {
        self.sent += other.sent;
        self.acked += other.acked;
        self.window_acks += other.window_acks;
        self.latency
            .add(&other.latency)
            .context("cannot add up the latencies")?;
        for (code, n) in &other.rejected {
            *self.rejected.entry(code.clone()).or_default() += n;
        }
        self.unanswered += other.unanswered;
        for (error, n) in &other.errors {
            *self.errors.entry(error.clone()).or_default() += n;
        }
        Ok(())
    }

    fn error(&mut self, what: &str) {
        *self.errors.entry(what.to_owned()).or_default() += 1;
    }
}

impl Sender {
    /// Send with the window full until `finish` turns true, then wait (up to [`DRAIN`]) for
    /// the answers still owed; hands back the client, still open, and the counts.
    async fn drive(
        self,
        mut record: SenderRecord,
        mut finish: watch::Receiver<bool>,
    ) -> (Client, SenderRecord) {
        let Sender {
            client,
            room,
            in_flight,
            message_size,
            window,
        } = self;
        let mut pending: HashMap<u64, Instant> = HashMap::new();
        let mut sending = true;
        let mut drain_until = None;
        loop {
            while sending && pending.len() < in_flight as usize {
                let text = message_text(record.sent, message_size);
                pending.insert(client.send(room, text), Instant::now());
                record.sent += 1;
            }
            if !sending && pending.is_empty() {
                break;
            }
            let drain = async {
                match drain_until {
                    Some(until) => tokio::time::sleep_until(until).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                changed = finish.changed(), if sending => {
                    if changed.is_err() || *finish.borrow_and_update() {
                        sending = false;
                        drain_until = Some(tokio::time::Instant::now() + DRAIN);
                    }
                }
                () = drain => break,
                event = client.next_event() => match event {
                    Some(ClientEvent::Session(event)) => {
                        on_event(event, &mut pending, &mut record, window);
                    }
                    Some(ClientEvent::TransportChanged(_)) => {}
                    None => {
                        record.error("the client stopped");
                        break;
                    }
                },
            }
        }
        record.unanswered = pending.len() as u64;
        (client, record)
    }
}

/// Count one event of a sender's client.
fn on_event(
    event: Event,
    pending: &mut HashMap<u64, Instant>,
    record: &mut SenderRecord,
    window: Window,
) {
    match event {
        Event::Sent { client_id, .. } => {
            let at = Instant::now();
            if let Some(sent_at) = pending.remove(&client_id) {
                record.acked += 1;
                if window.contains(at) {
                    record.window_acks += 1;
                    stats::record_latency(&mut record.latency, at - sent_at);
                }
            }
        }
        Event::Rejected {
            client_id, code, ..
        } if pending.remove(&client_id).is_some() => {
            *record.rejected.entry(code.to_string()).or_default() += 1;
        }
        Event::Disconnected => record.error("disconnected (the client reconnects and resumes)"),
        Event::Joined { .. } => record.error("the room's stream was rejoined"),
        Event::Error { code, reason, .. } => {
            record.error(&format!("server error {code}: {reason}"))
        }
        Event::GoAway { .. } => record.error("the server is going away"),
        // Its own messages coming back live, resends after a RateLimited, and the social
        // events every connection gets: not measured.
        _ => {}
    }
}

/// The text of message `n`, padded to `size` bytes.
fn message_text(n: u64, size: usize) -> String {
    let mut text = format!("ingest {n} ");
    if text.len() < size {
        text.extend(std::iter::repeat_n('x', size - text.len()));
    }
    text
}

/// Close every client, giving up on those that take longer than [`CLOSE_LIMIT`].
async fn close_all(clients: Vec<Client>) {
    let mut closing = tokio::task::JoinSet::new();
    for client in clients {
        closing.spawn(async move { client.close().await });
    }
    let _ = tokio::time::timeout(CLOSE_LIMIT, closing.join_all()).await;
}

/// The server's `/metrics`, read for the store's counters.
struct Metrics {
    http: reqwest::Client,
    url: reqwest::Url,
}

impl Metrics {
    fn new(api: &Api) -> anyhow::Result<Metrics> {
        let url = api
            .server()
            .base()
            .join("metrics")
            .context("cannot make the /metrics address")?;
        let http = reqwest::Client::builder()
            .timeout(METRICS_TIMEOUT)
            .build()
            .context("cannot make an HTTP client")?;
        Ok(Metrics { http, url })
    }

    /// The store's counters now; an error says why they are missing.
    async fn read(&self) -> Result<StoreReading, String> {
        let at = Instant::now();
        let response = self
            .http
            .get(self.url.clone())
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| format!("cannot read {}: {e}", self.url))?;
        let text = response
            .text()
            .await
            .map_err(|e| format!("cannot read {}: {e}", self.url))?;
        StoreReading::parse(&text, at)
    }
}
