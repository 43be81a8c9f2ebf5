//! `quibble-bench`: the load generator and benchmark of Quibble. `quibble-bench chat` signs up
//! bots, puts them in fresh rooms, has them chat at a steady rate over WebTransport, WebSocket
//! or both, and reports latencies, throughput and delivery counts. Exit status 0 only if every
//! message was acknowledged and reached every member of its room exactly once, without errors;
//! 1 if the benchmark ran but that failed; 2 if it could not run (a one-line error on stderr).

mod args;
mod report;
mod run;
mod scenario;
mod stats;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use quibble_client::Api;

use crate::args::{ChatArgs, Cli, Command};
use crate::report::Report;
use crate::run::RunConfig;
use crate::stats::Plan;

/// Exit status when the benchmark could not run at all (as opposed to running and failing).
const SETUP_FAILED: u8 = 2;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Chat(args) => chat(args).await,
    };
    result.unwrap_or_else(|e| {
        eprintln!("quibble-bench: {e:#}");
        ExitCode::from(SETUP_FAILED)
    })
}

async fn chat(args: ChatArgs) -> Result<ExitCode> {
    let plan = Plan {
        rooms: args.rooms.into(),
        users_per_room: args.users_per_room.into(),
        messages: args.messages.into(),
    };
    let timeout = Duration::from_secs(args.timeout);
    let api = Api::new(&args.server).with_context(|| format!("server URL {}", args.server))?;
    let tag = scenario::tag();
    let bots = tokio::time::timeout(timeout, scenario::sign_up(&api, &tag, plan.bots()))
        .await
        .context("signing up the bots timed out")??;
    let creator = bots.first().context("no bots")?;
    let mut runs = Vec::new();
    for transport in args.transport.kinds() {
        let rooms = scenario::create_rooms(&api, &creator.token, plan.rooms).await?;
        let config = RunConfig {
            server: args.server.clone(),
            transport,
            plan,
            rate: args.rate,
            timeout,
        };
        runs.push(run::run(&config, &bots, &rooms).await);
    }
    let report = Report::new(command_line(), &args, runs);
    if args.json {
        println!("{}", report.json().context("encode the report")?);
    } else {
        print!("{}", report.table());
    }
    Ok(if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// This invocation's command line, shell-quoted where needed.
fn command_line() -> String {
    std::env::args()
        .map(|arg| {
            if !arg.is_empty()
                && arg
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./:=@,+".contains(c))
            {
                arg
            } else {
                format!("'{}'", arg.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}
