//! The `quibble-chat` terminal client: argument parsing, the scripted commands, the
//! interactive chat, and how things are printed.

use std::io::Write;

use anyhow::Context;

mod account;
mod admin;
pub mod args;
mod blocks;
mod commands;
mod format;
mod interactive;
mod social;

/// Run what the command line asks for.
pub async fn run(cli: args::Cli) -> anyhow::Result<()> {
    match &cli.command {
        Some(command) => commands::run(&cli, command).await,
        None => interactive::run(&cli).await,
    }
}

/// Print one line of output and flush it (scripts may be reading line by line).
fn emit(line: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .context("cannot write to stdout")
}
