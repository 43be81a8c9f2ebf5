//! `quibble`: the server binary. `quibble serve` starts the server; `quibble config check`
//! prints the configuration `serve` would run with; `quibble admin` is the operator's
//! moderation tool, `quibble backup` and `quibble restore` copy the store (see
//! `quibble_server::admin`).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use quibble_server::admin::backup::{BackupArgs, RestoreArgs};
use quibble_server::admin::command::AdminArgs;
use quibble_server::admin::socket::AdminSocket;
use quibble_server::config::{Config, Loaded, Settings};
use quibble_server::logging::LogFormat;
use quibble_server::server::Server;
use quibble_server::store::MAX_CONCURRENT_READS;

#[derive(Parser)]
#[command(
    name = "quibble",
    version = quibble_server::build_info::VERSION,
    about = "Quibble realtime chat server"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (HTTP on TCP and WebTransport on UDP, one port).
    ///
    /// Every setting is a flag, a QUIBBLE_... environment variable and a config file key: a
    /// flag wins over its variable, which wins over the file, which wins over the default.
    Serve(ServeArgs),
    /// The configuration, without starting the server.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Moderate on the server's machine: roles, bans, IP bans, the audit log. Works with the
    /// server running (through its admin socket) or stopped (on its data directory).
    Admin(AdminArgs),
    Backup(BackupArgs),
    Restore(RestoreArgs),
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate the configuration `quibble serve` would run with, and print it as TOML.
    ///
    /// Takes the same flags, variables and file as `serve`, checks that the certificate files
    /// can be read, and prints every setting with where its value came from. Opens no store
    /// and binds no port; exits 2 when the configuration is invalid.
    Check(ServeArgs),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// TOML config file; its keys are the settings' names (data_dir, listen, ...).
    #[arg(long, env = "QUIBBLE_CONFIG")]
    config: Option<PathBuf>,
    #[command(flatten)]
    settings: Settings,
}

/// The exit status of an invalid configuration (as for a bad command line).
const EXIT_BAD_CONFIG: u8 = 2;

/// Threads tokio's blocking pool may hold: store reads run there (at most
/// [`MAX_CONCURRENT_READS`] at once), plus a few incidental jobs (static files, closing). Without a cap the pool
/// grows under bursts, because a thread returns to the pool only after its job has released its
/// read permit (45 threads were measured under a sign-up flood).
const BLOCKING_THREADS: usize = MAX_CONCURRENT_READS + 4;

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    match cli.command {
        Command::Serve(args) => {
            let Some(matches) = matches.subcommand_matches("serve") else {
                return ExitCode::FAILURE;
            };
            let loaded = match load(args, matches) {
                Ok(loaded) => loaded,
                Err(code) => return code,
            };
            quibble_server::logging::init(loaded.settings.log_format);
            let config = match loaded.config() {
                Ok(config) => config,
                Err(e) => return bad_config(&e),
            };
            report(runtime().and_then(|rt| rt.block_on(serve(config))))
        }
        Command::Config {
            command: ConfigCommand::Check(args),
        } => {
            let Some(matches) = matches
                .subcommand_matches("config")
                .and_then(|m| m.subcommand_matches("check"))
            else {
                return ExitCode::FAILURE;
            };
            let loaded = match load(args, matches) {
                Ok(loaded) => loaded,
                Err(code) => return code,
            };
            if let Err(e) = loaded.config().and_then(|_| loaded.settings.check_files()) {
                return bad_config(&e);
            }
            let text = quibble_server::config::render::render(&loaded);
            report(
                std::io::stdout()
                    .lock()
                    .write_all(text.as_bytes())
                    .context("cannot print the configuration"),
            )
        }
        Command::Admin(args) => {
            quibble_server::logging::init(LogFormat::Text);
            report(
                runtime()
                    .and_then(|rt| Ok(rt.block_on(quibble_server::admin::command::run(args))?)),
            )
        }
        Command::Backup(args) => {
            quibble_server::logging::init(LogFormat::Text);
            report(
                runtime()
                    .and_then(|rt| Ok(rt.block_on(quibble_server::admin::backup::backup(args))?)),
            )
        }
        Command::Restore(args) => {
            quibble_server::logging::init(LogFormat::Text);
            report(
                runtime()
                    .and_then(|rt| Ok(rt.block_on(quibble_server::admin::backup::restore(args))?)),
            )
        }
    }
}

/// The effective settings of `serve` (or `config check`) from the command line `matches`,
/// the environment and the config file; an invalid file exits with status 2.
fn load(args: ServeArgs, matches: &clap::ArgMatches) -> Result<Loaded, ExitCode> {
    Loaded::load(args.settings, matches, args.config.as_deref()).map_err(|e| bad_config(&e))
}

fn bad_config(e: &quibble_server::config::ConfigError) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(EXIT_BAD_CONFIG)
}

/// Exit status 1 with the error chain on standard error, as `main() -> anyhow::Result` would.
fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:?}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(BLOCKING_THREADS)
        .build()
        .context("cannot start the async runtime")
}

async fn serve(config: Config) -> anyhow::Result<()> {
    // First of all: SIGHUP's default action ends the process, and a reload (systemd's
    // `ExecReload=kill -HUP $MAINPID`) may come while the server is still starting.
    let hangups = reload_signal()?;
    let data_dir = config.data_dir.clone();
    let server = Server::bind(config)
        .await
        .context("cannot start the server")?;
    // After the store is open: its lock says no other server uses this directory.
    let admin_socket = match AdminSocket::bind(&data_dir) {
        Ok(socket) => Some(tokio::spawn(socket.serve(server.state().clone()))),
        Err(e) => {
            tracing::warn!("{e}; `quibble admin` cannot reach this server while it runs");
            None
        }
    };
    match server.state().store.has_admin().await {
        Ok(true) => {}
        Ok(false) => tracing::warn!("no admin yet: run `quibble admin promote NAME`"),
        Err(e) => tracing::warn!("cannot tell whether an admin exists: {e}"),
    }
    let stop = shutdown_signal()?;
    let trigger = server.reload_trigger();
    tokio::spawn(hangups.forward(trigger));
    let mut out = std::io::stdout().lock();
    for (i, addr) in server.addrs().iter().enumerate() {
        let url = format!("{}://{addr}/", server.scheme());
        if i == 0 {
            writeln!(out, "quibble listening on {url}")?;
        } else {
            writeln!(out, "also listening on {url}")?;
        }
    }
    if let Some(http3) = server.http3() {
        for addr in http3.addrs() {
            writeln!(out, "HTTP/3 on udp://{addr}/")?;
        }
    }
    if let Some(addr) = server.metrics_addr() {
        writeln!(out, "metrics on http://{addr}/metrics")?;
    }
    writeln!(out, "data directory: {}", data_dir.display())?;
    out.flush()?;
    drop(out);
    let result = server.run(stop).await.context("server failed");
    if let Some(task) = admin_socket {
        // It saw the shutdown and removes its socket file.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), task).await;
    }
    result.map(drop)
}

/// A future that completes on SIGINT or SIGTERM. The handlers are installed when this is
/// called, before the server announces itself, so a signal sent as soon as the address is
/// printed stops the server gracefully instead of killing it.
#[cfg(unix)]
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}

/// SIGHUP, received from when this is made; each one asks for the certificate files to be
/// read again.
struct Hangups {
    #[cfg(unix)]
    signal: tokio::signal::unix::Signal,
}

impl Hangups {
    async fn forward(self, trigger: quibble_server::tls::reload::Trigger) {
        #[cfg(unix)]
        {
            let mut signal = self.signal;
            while signal.recv().await.is_some() {
                tracing::info!("SIGHUP: reading the certificate files again");
                trigger.request();
            }
        }
        #[cfg(not(unix))]
        drop(trigger);
    }
}

#[cfg(unix)]
fn reload_signal() -> anyhow::Result<Hangups> {
    use tokio::signal::unix::{SignalKind, signal};
    let signal = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
    Ok(Hangups { signal })
}

#[cfg(not(unix))]
fn reload_signal() -> anyhow::Result<Hangups> {
    Ok(Hangups {})
}

#[cfg(not(unix))]
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}
