//! `quibble-bench idle`: what an idle connection costs the server. It signs up a few users
//! (or reuses their stored tokens: [`crate::accounts`]), each with a new room, reads the server's resident memory, opens N connections over one
//! transport with the real client (Hello, Welcome, Join, Joined; each connection user i mod U,
//! in that user's room), reads the memory again once all have joined and again after they
//! idled for `--hold` seconds (the clients keep heartbeating), then closes them and reads it a
//! last time. The cost of one connection is the growth divided by the connections opened.
//! The connecting phase is the idle ramp: `--at-once` handshakes in flight until the target is
//! reached, reported as sessions per second and connect+join latency percentiles.
//! WebTransport sessions share UDP sockets, `--sessions-per-socket` each.
//!
//! Each phase is bounded: connects run `--at-once` at a time, each within the client's own dial
//! timeout, and everything within `--timeout`; on any stop the connections are closed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use quibble_client::{Api, Client, ClientEvent, Event, TransportKind, WtEndpoints};
use tokio::task::JoinSet;

use crate::accounts;
use crate::args::IdleArgs;
use crate::bot::{self, Dialer};
use crate::concurrency::bounded;
use crate::fd_limit;
use crate::idle_peer;
use crate::idle_report::{IdleReport, Memory, RampStep};
use crate::plan::Plan;
use crate::scenario;
use crate::server_memory::ServerProcess;
use crate::stats;
use crate::stop::Stop;

/// Steps the ramp is reported in (quarters of the connections).
const RAMP_STEPS: usize = 4;
/// Pause before a memory reading, so the server finishes what the last step started.
const SETTLE: Duration = Duration::from_secs(1);
/// How long closing the connections may take before they are dropped.
const CLOSE_LIMIT: Duration = Duration::from_secs(10);

/// Run the idle benchmark as `args` say.
pub async fn run(args: &IdleArgs, stop: &Stop) -> anyhow::Result<IdleReport> {
    if let Some(port) = args.ws_peer {
        return idle_peer::run(args, port, stop).await;
    }
    let sockets = match args.transport.kind() {
        TransportKind::WebTransport => args.connections.div_ceil(args.sessions_per_socket),
        TransportKind::WebSocket => args.connections,
    };
    let open_files = fd_limit::make_room_for(sockets)?;
    let server = args.server_pid.map(ServerProcess::new).transpose()?;
    let api = Api::new(&args.server).context("invalid --server")?;
    let kind = args.transport.kind();
    let mut report = IdleReport::new(args, open_files, server.map(|s| s.pid()));

    let (accounts, summary) = tokio::select! {
        accounts = async {
            api.cert()
                .await
                .with_context(|| format!("cannot reach the server at {}", args.server))?;
            let plan = Plan::new(args.users, 1, 0, 1)?;
            let (logins, summary) =
                accounts::provide(&api, args.accounts.as_deref(), args.users as usize).await?;
            anyhow::Ok((scenario::setup(&api, &plan, logins).await?, summary))
        } => accounts?,
        reason = stop.wait() => return Err(anyhow!("{reason} while setting up")),
    };
    report.accounts = summary;
    let mut memory = Memory {
        before_kib: read_after_settle(server).await?,
        ..Memory::default()
    };

    let dialer = Dialer {
        api: api.clone(),
        kind,
        endpoints: WtEndpoints::new(args.sessions_per_socket as usize),
    };
    let started = Instant::now();
    let connects = (0..args.connections as usize)
        .map(|i| {
            let account = accounts[i % accounts.len()].clone();
            let dialer = dialer.clone();
            async move {
                bot::connect(&dialer, account.token, account.room, false)
                    .await
                    .with_context(|| format!("connection {} of {}", i + 1, account.username))
            }
        })
        .collect();
    let bots = tokio::select! {
        bots = bounded(args.at_once as usize, connects) => bots,
        reason = stop.wait() => Err(anyhow!("{reason} while connecting")),
    };
    let clients: Vec<Arc<Client>> = match bots {
        Ok(bots) => {
            report.connect_join_us = stats::summary_of(bots.iter().map(bot::Bot::connect_join))?;
            report.ramp = ramp(
                started,
                bots.iter().map(|b| (b.joined_at(), b.connect_join())),
            )?;
            bots.into_iter()
                .map(|bot| Arc::new(bot.into_client()))
                .collect()
        }
        Err(e) => {
            report.error = Some(format!("{e:#}"));
            report.set_memory(memory);
            leave_if_kept(args, &api, &accounts).await;
            return Ok(report);
        }
    };
    report.opened = clients.len() as u64;
    report.connect_s = started.elapsed().as_secs_f64();
    report.handshakes_per_s = stats::per_second(report.opened, started.elapsed());
    report.udp_sockets = dialer.endpoints.endpoints() as u64;
    memory.joined_kib = read_after_settle(server).await?;

    let disconnects = Arc::new(AtomicU64::new(0));
    let mut watchers = JoinSet::new();
    for client in &clients {
        watchers.spawn(count_disconnects(client.clone(), disconnects.clone()));
    }
    tokio::select! {
        () = tokio::time::sleep(Duration::from_secs(args.hold)) => {}
        reason = stop.wait() => report.error = Some(format!("{reason} while holding")),
    }
    memory.held_kib = read(server)?;
    report.disconnects = disconnects.load(Ordering::Relaxed);
    report.alive = clients.iter().filter(|c| c.transport().is_some()).count() as u64;
    watchers.abort_all();

    close_all(clients).await;
    memory.closed_kib = read_after_settle(server).await?;
    report.set_memory(memory);
    leave_if_kept(args, &api, &accounts).await;
    Ok(report)
}

/// The ramp in [`RAMP_STEPS`] steps of equal counts, in the order the connections joined.
/// `joined`: when each connection joined, and its connect+join.
pub(crate) fn ramp(
    started: Instant,
    joined: impl Iterator<Item = (Instant, Duration)>,
) -> anyhow::Result<Vec<RampStep>> {
    let mut joined: Vec<(Instant, Duration)> = joined.collect();
    joined.sort_by_key(|(at, _)| *at);
    let mut steps = Vec::with_capacity(RAMP_STEPS);
    let (mut from, mut from_at) = (0, started);
    for step in 1..=RAMP_STEPS {
        let to = joined.len() * step / RAMP_STEPS;
        let Some(&(end, _)) = joined.get(from..to).and_then(<[_]>::last) else {
            continue;
        };
        steps.push(RampStep {
            connections: to as u64,
            at_s: end.saturating_duration_since(started).as_secs_f64(),
            handshakes_per_s: stats::per_second(
                (to - from) as u64,
                end.saturating_duration_since(from_at),
            ),
            connect_join_us: stats::summary_of(joined[from..to].iter().map(|(_, d)| *d))?,
        });
        (from, from_at) = (to, end);
    }
    Ok(steps)
}

/// With `--accounts`, the users leave their rooms (after the last reading), so that their
/// memberships do not pile up from run to run.
async fn leave_if_kept(args: &IdleArgs, api: &Api, accounts: &[scenario::Account]) {
    if args.accounts.is_some() {
        scenario::leave(api, accounts).await;
    }
}

/// The server's RSS after [`SETTLE`], if a server is watched.
pub(crate) async fn read_after_settle(
    server: Option<ServerProcess>,
) -> anyhow::Result<Option<u64>> {
    if server.is_none() {
        return Ok(None);
    }
    tokio::time::sleep(SETTLE).await;
    read(server)
}

pub(crate) fn read(server: Option<ServerProcess>) -> anyhow::Result<Option<u64>> {
    server.map(|s| s.rss_kib()).transpose()
}

/// Count the times `client` loses its connection (until aborted).
async fn count_disconnects(client: Arc<Client>, disconnects: Arc<AtomicU64>) {
    while let Some(event) = client.next_event().await {
        if matches!(event, ClientEvent::Session(Event::Disconnected)) {
            disconnects.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Close every client, giving up on those that take longer than [`CLOSE_LIMIT`].
async fn close_all(clients: Vec<Arc<Client>>) {
    let mut closing = JoinSet::new();
    for client in clients {
        closing.spawn(async move { client.close().await });
    }
    let _ = tokio::time::timeout(CLOSE_LIMIT, closing.join_all()).await;
}
