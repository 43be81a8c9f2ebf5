//! `quibble-bench idle --ws-peer PORT`: the idle ramp against the Node `ws` peer
//! (bench/peers/ws-server.mjs) instead of Quibble, so that Quibble's WebSocket
//! connect+Hello+Join rate has its reference measured the same way: `--connections`
//! WebSockets opened `--at-once` at a time, each its upgrade plus the peer's `joined` message
//! (user i, room i mod `--users`; the peer has no accounts), held `--hold` seconds, then
//! closed. The report is `idle`'s: handshakes/s, connect+join percentiles, the ramp, and with
//! `--server-pid` (the node process) its RSS per connection. The peer sends nothing while
//! idle, so a connection counts as alive after the hold if reading it finds nothing at once.

use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use quibble_client::TransportKind;
use tokio::task::JoinSet;

use crate::args::IdleArgs;
use crate::bot::{Bot, Link};
use crate::concurrency::bounded;
use crate::fd_limit;
use crate::idle::{ramp, read, read_after_settle};
use crate::idle_report::{IdleReport, Memory};
use crate::peers::ws::{self, WsLink};
use crate::server_memory::ServerProcess;
use crate::stats;
use crate::stop::Stop;

/// How long reading a held connection may find nothing before it counts as alive.
const ALIVE_PROBE: Duration = Duration::from_millis(1);
/// How long closing the connections may take before they are dropped.
const CLOSE_LIMIT: Duration = Duration::from_secs(10);

/// Run the ramp against the `ws` peer on `port`.
pub async fn run(args: &IdleArgs, port: u16, stop: &Stop) -> anyhow::Result<IdleReport> {
    if args.transport.kind() != TransportKind::WebSocket {
        bail!("--ws-peer speaks WebSocket: use --transport websocket");
    }
    let open_files = fd_limit::make_room_for(args.connections)?;
    let server = args.server_pid.map(ServerProcess::new).transpose()?;
    let mut report = IdleReport::new(args, open_files, server.map(|s| s.pid()));
    report.server = format!("ws://127.0.0.1:{port} (Node ws peer)");
    let mut memory = Memory {
        before_kib: read_after_settle(server).await?,
        ..Memory::default()
    };

    let users = u64::from(args.users);
    let started = Instant::now();
    let connects = (0..u64::from(args.connections))
        .map(|i| async move {
            let (user, room) = (i % users, i % users);
            ws::connect(port, user, room)
                .await
                .with_context(|| format!("connection {} of user {user}", i + 1))
        })
        .collect();
    let bots: Vec<Bot<WsLink>> = match tokio::select! {
        bots = bounded(args.at_once as usize, connects) => bots,
        reason = stop.wait() => Err(anyhow!("{reason} while connecting")),
    } {
        Ok(bots) => bots,
        Err(e) => {
            report.error = Some(format!("{e:#}"));
            report.set_memory(memory);
            return Ok(report);
        }
    };
    report.connect_join_us = stats::summary_of(bots.iter().map(Bot::connect_join))?;
    report.ramp = ramp(
        started,
        bots.iter().map(|b| (b.joined_at(), b.connect_join())),
    )?;
    report.opened = bots.len() as u64;
    report.connect_s = started.elapsed().as_secs_f64();
    report.handshakes_per_s = stats::per_second(report.opened, started.elapsed());
    memory.joined_kib = read_after_settle(server).await?;

    tokio::select! {
        () = tokio::time::sleep(Duration::from_secs(args.hold)) => {}
        reason = stop.wait() => report.error = Some(format!("{reason} while holding")),
    }
    memory.held_kib = read(server)?;
    let mut links: Vec<WsLink> = bots.into_iter().map(Bot::into_link).collect();
    for link in &mut links {
        if tokio::time::timeout(ALIVE_PROBE, link.next())
            .await
            .is_err()
        {
            report.alive += 1;
        }
    }

    let mut closing = JoinSet::new();
    for link in links {
        closing.spawn(link.close());
    }
    let _ = tokio::time::timeout(CLOSE_LIMIT, closing.join_all()).await;
    memory.closed_kib = read_after_settle(server).await?;
    report.set_memory(memory);
    Ok(report)
}
