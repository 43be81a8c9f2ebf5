//! `quibble backup` and `quibble restore`: the operator's copies of the embedded store.
//!
//! `backup` follows `quibble admin`'s rule: if a server runs on the data directory, it is asked
//! through its admin socket to write the file (so the copy is one read transaction of the live
//! store, and the server's OS user writes it); if none does, the store file is opened directly
//! and copied the same way. The store's lock decides: a server that holds the file but cannot be
//! reached is reported, never worked around. The path given is made absolute here, since the
//! server's working directory is not ours. The copy itself is `store::redb::backup`'s.
//!
//! `restore` works only on a stopped server's data directory (`store::redb::restore` refuses
//! while a server holds the store). Both print what the file holds as tab-separated
//! `name<TAB>value` lines.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use clap::Args;

use super::command::{AdminError, CACHE_BYTES, STORE_FILE, resolve_data_dir};
use super::socket::{self, BackupRequest, SOCKET_NAME, SocketError};
use crate::store::{BackupError, BackupSummary, Restored, Store, StoreError};

/// `quibble backup`.
#[derive(Args, Debug)]
#[command(
    about = "Write a consistent copy of the store to FILE, with the server running or stopped",
    long_about = "Write a consistent copy of the embedded store (quibble.redb) to FILE.\n\n\
        With the server running, it is asked through its admin socket (admin.sock in the data \
        directory) and writes FILE itself: the server's OS user needs write access to FILE's \
        directory. The copy is one snapshot: it holds every message acknowledged before the \
        backup began, and nothing later; clients keep chatting meanwhile. With the server \
        stopped, the data directory's store is copied directly.\n\n\
        FILE is written as FILE.partial, fsynced, then renamed: it is either complete or absent. \
        It has mode 0600 (it holds password and session hashes). Restore it with \
        `quibble restore --from FILE`.\n\n\
        A server on PostgreSQL (--postgres) is refused: back that database up with pg_dump."
)]
pub struct BackupArgs {
    /// The backup file to write.
    #[arg(long, value_name = "FILE")]
    pub to: PathBuf,
    /// Replace FILE if it exists (and a FILE.partial an interrupted backup left).
    #[arg(long)]
    pub force: bool,
    /// TOML config file (its `data_dir` is used).
    #[arg(long, env = "QUIBBLE_CONFIG")]
    pub config: Option<PathBuf>,
    /// The server's data directory [default: ./quibble-data].
    #[arg(long, env = "QUIBBLE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// How long to wait for a running server's backup, e.g. 30m, 2h (it finishes anyway).
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

/// `quibble restore`.
#[derive(Args, Debug)]
#[command(
    about = "Restore a backup into a stopped server's data directory",
    long_about = "Restore a backup written by `quibble backup` into a stopped server's data \
        directory.\n\n\
        Refused while a server runs on the directory. FILE is checked (redb's integrity check; \
        a Quibble store of a schema version this server knows) on a copy, which then replaces \
        quibble.redb; an existing quibble.redb is kept as \
        quibble.redb.before-restore-<unix time>. The restored store gets a new epoch, so \
        clients drop what they cached and reload history from it."
)]
pub struct RestoreArgs {
    /// The backup file to restore.
    #[arg(long, value_name = "FILE")]
    pub from: PathBuf,
    /// TOML config file (its `data_dir` is used).
    #[arg(long, env = "QUIBBLE_CONFIG")]
    pub config: Option<PathBuf>,
    /// The (stopped) server's data directory [default: ./quibble-data]; made if missing.
    #[arg(long, env = "QUIBBLE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
}

/// Why `quibble backup` or `quibble restore` failed.
#[derive(Debug, thiserror::Error)]
pub enum BackupCommandError {
    #[error(transparent)]
    Admin(#[from] AdminError),
    #[error(
        "no store at {0}: is --data-dir right? (a server on PostgreSQL is backed up with pg_dump)"
    )]
    NoStore(PathBuf),
    #[error("cannot resolve {path}: {source}")]
    Path {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot make the data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Socket(SocketError),
    #[error("{0}")]
    Backup(#[from] BackupError),
    #[error("the restore task failed: {0}")]
    Task(String),
    #[error(
        "this server keeps its data in PostgreSQL ({0}), not in the data directory: restore that \
         database with pg_restore/psql"
    )]
    OnPostgres(&'static str),
    #[error("cannot print: {0}")]
    Output(#[from] std::io::Error),
}

/// Runs `quibble backup`; prints what was written.
pub async fn backup(args: BackupArgs) -> Result<(), BackupCommandError> {
    let data_dir = resolve_data_dir(args.data_dir.as_deref(), args.config.as_deref())?;
    let to = std::path::absolute(&args.to).map_err(|source| BackupCommandError::Path {
        path: args.to.clone(),
        source,
    })?;
    let request = BackupRequest {
        to: to.clone(),
        force: args.force,
    };
    let summary =
        match socket::request_backup(&data_dir.join(SOCKET_NAME), &request, args.timeout).await {
            Ok(summary) => summary,
            Err(SocketError::NotRunning(_)) => offline(&data_dir, &to, args.force).await?,
            Err(e) => return Err(BackupCommandError::Socket(e)),
        };
    let mut lines = vec![format!("written\t{}", to.display())];
    lines.extend(summary_lines(&summary));
    print(&lines)
}

/// Backs up the store of a stopped server.
async fn offline(
    data_dir: &Path,
    to: &Path,
    force: bool,
) -> Result<BackupSummary, BackupCommandError> {
    let path = data_dir.join(STORE_FILE);
    if !path.is_file() {
        return Err(BackupCommandError::NoStore(path));
    }
    let store = match Store::open(&path, CACHE_BYTES, Box::new(|_| {})) {
        Ok(store) => store,
        Err(StoreError::InUse) => {
            return Err(AdminError::Unreachable(data_dir.to_owned()).into());
        }
        Err(e) => return Err(AdminError::Store(e).into()),
    };
    let result = store.backup(to.to_owned(), force).await;
    store.close().await;
    Ok(result?)
}

/// Runs `quibble restore`; prints what was restored.
pub async fn restore(args: RestoreArgs) -> Result<(), BackupCommandError> {
    let data_dir = resolve_data_dir(args.data_dir.as_deref(), args.config.as_deref())?;
    // A redb file restored next to a server on PostgreSQL would never be read.
    if std::env::var_os("QUIBBLE_POSTGRES").is_some_and(|v| !v.is_empty()) {
        return Err(BackupCommandError::OnPostgres("QUIBBLE_POSTGRES is set"));
    }
    if let Some(path) = &args.config {
        let loaded = crate::config::Loaded::from_file(path)
            .map_err(|e| AdminError::Config(e.to_string()))?;
        if loaded.settings.postgres.is_some() {
            return Err(BackupCommandError::OnPostgres(
                "its config file sets postgres",
            ));
        }
    }
    std::fs::create_dir_all(&data_dir).map_err(|source| BackupCommandError::DataDir {
        path: data_dir.clone(),
        source,
    })?;
    let now_secs = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let from = args.from.clone();
    let store = data_dir.join(STORE_FILE);
    let restored = tokio::task::spawn_blocking(move || Store::restore(&from, &store, now_secs))
        .await
        .map_err(|e| BackupCommandError::Task(e.to_string()))??;
    print(&restore_lines(&args.from, &restored))
}

/// The lines `quibble restore` prints.
fn restore_lines(from: &Path, restored: &Restored) -> Vec<String> {
    let mut lines = vec![
        format!("restored\t{}", restored.store.display()),
        format!("from\t{}", from.display()),
    ];
    if let Some(kept) = &restored.kept {
        lines.push(format!("kept\t{}", kept.display()));
    }
    lines.extend(summary_lines(&restored.summary));
    lines.push(format!("epoch\t{}", restored.epoch));
    lines
}

/// What a backup holds, one `name<TAB>value` line each.
fn summary_lines(summary: &BackupSummary) -> Vec<String> {
    vec![
        format!("schema_version\t{}", summary.schema_version),
        format!("users\t{}", summary.users),
        format!("conversations\t{}", summary.conversations),
        format!("messages\t{}", summary.messages),
        format!("bytes\t{}", summary.bytes),
    ]
}

fn print(lines: &[String]) -> Result<(), BackupCommandError> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    for line in lines {
        writeln!(out, "{line}")?;
    }
    out.flush()?;
    Ok(())
}
