//! `quibble`: the server binary. `quibble serve` starts the server on the embedded defaults;
//! `quibble admin` is the operator's moderation tool, `quibble backup` and `quibble restore`
//! copy the store (see `quibble_server::admin`).

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use quibble_server::admin::backup::{BackupArgs, RestoreArgs};
use quibble_server::admin::command::AdminArgs;
use quibble_server::admin::socket::AdminSocket;
use quibble_server::config::{Config, FileConfig, Overrides};
use quibble_server::logging::LogFormat;
use quibble_server::server::Server;
use quibble_server::store::MAX_CONCURRENT_READS;

#[derive(Parser)]
#[command(name = "quibble", version, about = "Quibble realtime chat server")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (HTTP on TCP and WebTransport on UDP, one port).
    Serve(ServeArgs),
    /// Moderate on the server's machine: roles, bans, IP bans, the audit log. Works with the
    /// server running (through its admin socket) or stopped (on its data directory).
    Admin(AdminArgs),
    Backup(BackupArgs),
    Restore(RestoreArgs),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// TOML config file (keys: see the README's Configuration table).
    #[arg(long, env = "QUIBBLE_CONFIG")]
    config: Option<PathBuf>,
    /// Directory for the store [default: ./quibble-data].
    #[arg(long, env = "QUIBBLE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Address to listen on; repeat for several [default: 127.0.0.1:4433 and [::1]:4433].
    #[arg(long)]
    listen: Vec<SocketAddr>,
    /// PEM certificate chain (with --tls-key); without, a self-signed certificate is made.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Directory of the browser client [default: client-wasm/web of this checkout].
    #[arg(long, env = "QUIBBLE_WEB_DIR")]
    web_dir: Option<PathBuf>,
    /// Serve `/metrics` only on this address (e.g. 127.0.0.1:9100), not on the public port.
    #[arg(long)]
    metrics_listen: Option<SocketAddr>,
    /// Keep everything durable in this PostgreSQL database (a URL such as
    /// postgres://quibble@db:5432/quibble) instead of the embedded file: the fleet's store.
    #[arg(long, env = "QUIBBLE_POSTGRES")]
    postgres: Option<String>,
    /// Run as a node of a fleet: carry every commit to the other nodes through this Redis (redis://host:port; any node of a Redis Cluster, or several URLs
    /// comma-separated). Needs --postgres.
    #[arg(long, env = "QUIBBLE_REDIS")]
    redis: Option<String>,
    /// How log lines are written: text (coloured only on a terminal) or json (one object per
    /// line).
    #[arg(long, env = "QUIBBLE_LOG_FORMAT", value_enum, default_value_t)]
    log_format: LogFormat,
}

/// Threads tokio's blocking pool may hold: store reads run there (at most
/// [`MAX_CONCURRENT_READS`] at once), plus a few incidental jobs (static files, closing). Without a cap the pool
/// grows under bursts, because a thread returns to the pool only after its job has released its
/// read permit (45 threads were measured under a sign-up flood).
const BLOCKING_THREADS: usize = MAX_CONCURRENT_READS + 4;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let format = match &cli.command {
        Command::Serve(args) => args.log_format,
        Command::Admin(_) | Command::Backup(_) | Command::Restore(_) => LogFormat::Text,
    };
    quibble_server::logging::init(format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(BLOCKING_THREADS)
        .build()
        .context("cannot start the async runtime")?;
    match cli.command {
        Command::Serve(args) => runtime.block_on(serve(args)),
        Command::Admin(args) => Ok(runtime.block_on(quibble_server::admin::command::run(args))?),
        Command::Backup(args) => Ok(runtime.block_on(quibble_server::admin::backup::backup(args))?),
        Command::Restore(args) => {
            Ok(runtime.block_on(quibble_server::admin::backup::restore(args))?)
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let file = match &args.config {
        Some(path) => FileConfig::load(path)?,
        None => FileConfig::default(),
    };
    let config = Config::resolve(
        file,
        Overrides {
            data_dir: args.data_dir,
            listen: args.listen,
            tls_cert: args.tls_cert,
            tls_key: args.tls_key,
            web_dir: args.web_dir,
            metrics_listen: args.metrics_listen,
            postgres: args.postgres,
            redis: args.redis,
        },
    )?;
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
    let mut out = std::io::stdout().lock();
    for (i, addr) in server.addrs().iter().enumerate() {
        let url = format!("{}://{addr}/", server.scheme());
        if i == 0 {
            writeln!(out, "quibble listening on {url}")?;
        } else {
            writeln!(out, "also listening on {url}")?;
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

#[cfg(not(unix))]
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}
