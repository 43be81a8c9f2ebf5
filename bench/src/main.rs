//! `quibble-bench`: the load generator and benchmark of Quibble. `quibble-bench chat` signs in
//! every bot of every run first (new accounts, or with `--accounts FILE` the ones kept from
//! earlier runs), then puts them in fresh rooms and has them chat over WebTransport, WebSocket or both (the
//! same scenario once per transport), then reports latencies, throughput and delivery counts.
//! The exit status is 0 only if every message reached every member of its room exactly once
//! and nothing went wrong (see `--help`). `quibble-bench idle` opens many idle, joined
//! connections and reports what each costs the server in resident memory. `quibble-bench
//! versus` runs the chat scenario against Quibble and the Node peers of `bench/peers/`.
//! `quibble-bench ingest` measures durable ingest: acknowledged (fsynced) messages per second.

mod accounts;
mod args;
mod bot;
mod compare;
mod concurrency;
mod fd_limit;
mod idle;
mod idle_peer;
mod idle_report;
mod ingest;
mod ingest_report;
mod peers;
mod pin;
mod plan;
mod plot;
mod progress;
mod record;
mod report;
mod run;
mod scenario;
mod seen;
mod server_cpu;
mod server_memory;
mod stats;
mod step_figures;
mod stop;
mod sweep;
mod sweep_report;
mod table;
mod time_budget;
mod tracker;
mod versus;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use quibble_client::{Api, TransportKind};

use crate::args::{ChatArgs, Cli, Command, IdleArgs, command_line};
use crate::pin::Pinning;
use crate::report::Report;
use crate::run::{Load, RunConfig, RunResult};
use crate::stop::Stop;

fn main() -> ExitCode {
    let command = Cli::parse().command;
    // Pinned before the runtime starts: its threads inherit the one CPU.
    let pinning = match &command {
        Command::Chat(ChatArgs { pin: true, .. }) => Some(Pinning::apply()),
        Command::Versus(args) if args.chat.pin => Some(Pinning::apply()),
        _ => None,
    }
    .transpose();
    let outcome = pinning.and_then(|pinning| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("cannot start the runtime")?;
        runtime.block_on(async move {
            match command {
                Command::Chat(args) => chat(args, pinning).await,
                Command::Idle(args) => idle(args).await,
                Command::Versus(args) => versus::run(args, pinning).await,
                Command::Ingest(args) => ingest(args).await,
            }
        })
    });
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("quibble-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Run `chat` and print its report; whether everything was fine.
async fn chat(args: ChatArgs, pinning: Option<Pinning>) -> anyhow::Result<bool> {
    if let Some(pinning) = pinning {
        eprintln!(
            "{} (run it there yourself: taskset -c {} quibble serve ...)",
            pinning.describe(),
            pinning.server_cpu
        );
    }
    let stop = Stop::start(tokio::time::Instant::now() + Duration::from_secs(args.timeout()));
    let plan = args.plan()?;
    let nodes = args
        .server
        .iter()
        .map(|url| Api::new(url).with_context(|| format!("invalid --server {url}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let Some((api, other_nodes)) = nodes.split_first() else {
        anyhow::bail!("no --server");
    };
    let server = args
        .server_pid
        .iter()
        .map(|&pid| server_cpu::watch(pid))
        .collect::<anyhow::Result<Vec<_>>>()?;
    for (node, url) in nodes.iter().zip(&args.server) {
        tokio::select! {
            reached = node.cert() => {
                reached.with_context(|| format!("cannot reach the server at {url}"))?;
            }
            reason = stop.wait() => anyhow::bail!("{reason} while reaching the server"),
        }
    }
    let kinds = args.transport.kinds();
    // One run at a time holds its bots' sockets: a TCP socket per WebSocket bot, a UDP socket
    // per --sessions-per-socket WebTransport bots.
    let sockets = kinds
        .iter()
        .map(|kind| match kind {
            TransportKind::WebSocket => plan.bots(),
            TransportKind::WebTransport => plan.bots().div_ceil(args.sessions_per_socket.into()),
        })
        .max()
        .unwrap_or(0);
    fd_limit::make_room_for(u32::try_from(sockets).unwrap_or(u32::MAX))?;
    // Every account of every run, before the first run: sign-ups cost the server a password
    // hash each, which must not land in a measurement. Bot counts fit a usize (`Plan::new`).
    let bots = plan.bots() as usize;
    let (mut logins, accounts) = tokio::select! {
        provided = accounts::provide(api, args.accounts.as_deref(), bots * kinds.len()) => {
            provided?
        }
        reason = stop.wait() => anyhow::bail!("{reason} while signing the bots in"),
    };
    let config = RunConfig {
        api: api.clone(),
        other_nodes: other_nodes.to_vec(),
        load: Load {
            plan,
            rate: args.rate,
            message_size: args.message_size,
            in_flight: args.in_flight,
            server,
            bench: None,
            step: None,
        },
        leave_rooms: args.accounts.is_some(),
        sessions_per_socket: args.sessions_per_socket as usize,
    };
    let mut runs = Vec::new();
    for kind in kinds {
        let rest = logins.split_off(bots.min(logins.len()));
        let mine = std::mem::replace(&mut logins, rest);
        let result = match stop.reason() {
            Some(reason) => RunResult::not_started(kind, reason),
            None => run::run(&config, kind, mine, &stop).await,
        };
        runs.push(result);
    }
    let report = Report::new(command_line(), &args, &plan, accounts, runs);
    if let Some(path) = &args.plot {
        let series: Vec<plot::Series<'_>> = report
            .runs
            .iter()
            .filter_map(|run| {
                let stats = run.stats.as_ref()?;
                Some(plot::Series {
                    label: run.transport.to_owned(),
                    histogram: &stats.fanout_histogram,
                })
            })
            .collect();
        let title = "fan-out latency by percentile (send -> arrival at each other member)";
        plot::write(path, title, &report.scenario.summary(), &series)?;
    }
    if args.json {
        println!("{}", report.json().context("cannot write the JSON report")?);
    } else {
        print!("{}", report.text());
    }
    Ok(report.ok)
}

/// Run `idle` and print its report; whether everything was fine.
async fn idle(args: IdleArgs) -> anyhow::Result<bool> {
    let stop = Stop::start(tokio::time::Instant::now() + Duration::from_secs(args.timeout));
    let report = idle::run(&args, &stop).await?;
    if args.json {
        println!("{}", report.json().context("cannot write the JSON report")?);
    } else {
        print!("{}", report.text());
    }
    Ok(report.ok)
}

/// Run `ingest` and print its report; whether everything was fine.
async fn ingest(args: ingest::IngestArgs) -> anyhow::Result<bool> {
    let stop = Stop::start(tokio::time::Instant::now() + Duration::from_secs(args.timeout));
    let report = ingest::run(&args, &stop).await?;
    if args.json {
        println!("{}", report.json().context("cannot write the JSON report")?);
    } else {
        print!("{}", report.text());
    }
    Ok(report.ok)
}
