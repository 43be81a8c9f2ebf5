//! The admin socket: a Unix socket in the data directory (`admin.sock`) through which
//! `quibble admin` asks a running server to perform an operation as the operator.
//!
//! Only the server's OS user can reach it: it is bound inside a fresh directory of mode 0700,
//! given mode 0600, and only then renamed into the data directory, so it is never reachable by
//! others, not even for a moment; each connection's peer must also have the server's uid
//! (SO_PEERCRED). Nothing of it is on the network. `serve` makes it after opening the store
//! (whose lock proves no other server uses this directory, so a socket left by a crashed one is
//! removed) and removes it when it shuts down.
//!
//! One request per connection: a line of JSON, either a moderation [`Operation`]
//! (`{"op":…}`), answered by `{"ok":Outcome}`, or a backup request
//! (`{"backup":{"to":"/abs/path","force":false}}`, see [`BackupRequest`]), answered by
//! `{"ok":BackupSummary}` once the file is written; a refusal is
//! `{"error":{"code","message"}}` (the REST API's codes). A request is at most [`MAX_REQUEST`]
//! bytes and must arrive within [`DEADLINE`]; an operation is answered within it too, a backup
//! takes as long as the copy does (the client sets its own deadline). At most [`MAX_CLIENTS`]
//! are served at once (more wait to be accepted).

use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;
use tokio::time::timeout;

use super::ops::{Operation, Outcome};
use super::perform;
use crate::http::error::ApiError;
use crate::state::AppState;
use crate::store::{Actor, BackupSummary};

/// The socket's file name in the data directory.
pub const SOCKET_NAME: &str = "admin.sock";
/// The largest request line, in bytes.
pub const MAX_REQUEST: u64 = 64 * 1024;
/// The largest answer line `quibble admin` reads, in bytes (a full audit page fits easily).
const MAX_ANSWER: u64 = 4 * 1024 * 1024;
/// How long one exchange may take, each way.
pub const DEADLINE: Duration = Duration::from_secs(30);
/// Connections served at once.
const MAX_CLIENTS: usize = 4;

/// The answer line.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Answer<T> {
    Ok(T),
    Error(Refusal),
}

/// Asks the server to write a backup of its store (see `store::redb::backup`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupRequest {
    /// Where, as an absolute path (the server's working directory is not the caller's); the
    /// server's OS user writes it.
    pub to: PathBuf,
    /// Replace an existing file.
    #[serde(default)]
    pub force: bool,
}

/// The line of a backup request.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct BackupLine {
    backup: BackupRequest,
}

/// A refusal: the REST API's error code and message.
#[derive(Debug, Serialize, Deserialize)]
pub struct Refusal {
    pub code: String,
    pub message: String,
}

/// Errors of the socket, on either side.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("cannot make the admin socket {path}: {source}")]
    Bind { path: PathBuf, source: io::Error },
    #[error("no server is listening on {0}")]
    NotRunning(PathBuf),
    #[error("cannot reach the server's admin socket {path}: {source}")]
    Connect { path: PathBuf, source: io::Error },
    #[error("the admin socket failed: {0}")]
    Io(#[from] io::Error),
    #[error("the server did not answer within {} s", .0.as_secs())]
    Timeout(Duration),
    #[error("the server's answer is not understood: {0}")]
    Answer(String),
    #[error("{}", .0.message)]
    Refused(Refusal),
}

/// The bound admin socket of a running server.
pub struct AdminSocket {
    listener: UnixListener,
    path: PathBuf,
}

impl AdminSocket {
    /// Binds `admin.sock` in `data_dir` (replacing a stale one), reachable only by this OS
    /// user. Call it while holding the store, so no other server uses the directory.
    pub fn bind(data_dir: &Path) -> Result<AdminSocket, SocketError> {
        let path = data_dir.join(SOCKET_NAME);
        let bind_error = |source| SocketError::Bind {
            path: path.clone(),
            source,
        };
        remove_if_present(&path).map_err(bind_error)?;
        // Short names: a socket path has to fit in 108 bytes.
        let staging = data_dir.join(format!(".a{}", std::process::id()));
        if staging.exists() {
            std::fs::remove_dir_all(&staging).map_err(bind_error)?;
        }
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&staging)
            .map_err(bind_error)?;
        let bound = (|| {
            let staged = staging.join("s");
            let listener = std::os::unix::net::UnixListener::bind(&staged)?;
            std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o600))?;
            std::fs::rename(&staged, &path)?;
            listener.set_nonblocking(true)?;
            UnixListener::from_std(listener)
        })();
        let cleaned = std::fs::remove_dir_all(&staging);
        let listener = bound.map_err(bind_error)?;
        cleaned.map_err(bind_error)?;
        Ok(AdminSocket { listener, path })
    }

    /// Serves operations as the operator until the server starts shutting down; then removes
    /// the socket file.
    pub async fn serve(self, state: AppState) {
        let slots = Arc::new(Semaphore::new(MAX_CLIENTS));
        loop {
            let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
                break;
            };
            let accepted = tokio::select! {
                accepted = self.listener.accept() => accepted,
                () = state.shutting_down() => break,
            };
            match accepted {
                Ok((stream, _)) => {
                    let state = state.clone();
                    tokio::spawn(async move {
                        let _slot = slot;
                        if let Err(e) = serve_one(stream, &state).await {
                            tracing::warn!("admin socket: {e}");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!("admin socket: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        if let Err(e) = remove_if_present(&self.path) {
            tracing::warn!(path = %self.path.display(), "cannot remove the admin socket: {e}");
        }
    }
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Answers one connection's request.
async fn serve_one(stream: UnixStream, state: &AppState) -> Result<(), SocketError> {
    let peer = stream.peer_cred()?;
    if peer.uid() != rustix::process::getuid().as_raw() {
        return Err(SocketError::Answer(format!(
            "refused a connection from uid {}",
            peer.uid()
        )));
    }
    let (read, mut write) = stream.into_split();
    let line = timeout(DEADLINE, read_line(read, MAX_REQUEST))
        .await
        .map_err(|_| SocketError::Timeout(DEADLINE))??;
    let bytes = if is_backup(&line) {
        answer_line(backup(state, &line).await)?
    } else {
        answer_line(operation(state, &line).await)?
    };
    timeout(DEADLINE, write.write_all(&bytes))
        .await
        .map_err(|_| SocketError::Timeout(DEADLINE))??;
    Ok(())
}

/// Whether a request line is a backup request (a JSON object with a `backup` key).
fn is_backup(line: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(line)
        .is_ok_and(|object| object.contains_key("backup"))
}

/// Performs the operation on the line.
async fn operation(state: &AppState, line: &[u8]) -> Result<Outcome, Refusal> {
    let answer = match serde_json::from_slice::<Operation>(line) {
        Ok(op) => {
            let outcome = perform(state, Actor::Operator, op).await;
            if let Ok(outcome) = &outcome {
                tracing::info!(?outcome, "admin socket: operator action done");
            }
            outcome.map_err(ApiError::from)
        }
        Err(e) => Err(ApiError::bad_request(
            "bad_request",
            format!("not an admin operation: {e}"),
        )),
    };
    answer.map_err(|e| Refusal {
        code: e.code.to_owned(),
        message: e.message,
    })
}

/// Writes the backup the line asks for.
async fn backup(state: &AppState, line: &[u8]) -> Result<BackupSummary, Refusal> {
    let request = serde_json::from_slice::<BackupLine>(line)
        .map_err(|e| Refusal {
            code: "bad_request".into(),
            message: format!("not a backup request: {e}"),
        })?
        .backup;
    if !request.to.is_absolute() {
        return Err(Refusal {
            code: "bad_request".into(),
            message: format!("{} is not an absolute path", request.to.display()),
        });
    }
    tracing::info!(to = %request.to.display(), "admin socket: backup started");
    match state.store.backup(request.to.clone(), request.force).await {
        Ok(summary) => {
            tracing::info!(to = %request.to.display(), ?summary, "admin socket: backup written");
            Ok(summary)
        }
        Err(e) => {
            tracing::warn!(to = %request.to.display(), "admin socket: backup failed: {e}");
            Err(Refusal {
                code: e.code().into(),
                message: e.to_string(),
            })
        }
    }
}

/// The answer line for `answer`, newline included.
fn answer_line<T: Serialize>(answer: Result<T, Refusal>) -> Result<Vec<u8>, SocketError> {
    let answer = match answer {
        Ok(value) => Answer::Ok(value),
        Err(refusal) => Answer::Error(refusal),
    };
    let mut bytes = serde_json::to_vec(&answer).map_err(|e| SocketError::Answer(e.to_string()))?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// Reads one line of at most `max` bytes (without its newline).
async fn read_line(
    read: impl tokio::io::AsyncRead + Unpin,
    max: u64,
) -> Result<Vec<u8>, SocketError> {
    let mut line = Vec::new();
    BufReader::new(read.take(max + 1))
        .read_until(b'\n', &mut line)
        .await?;
    if line.last() == Some(&b'\n') {
        line.pop();
    } else if line.len() as u64 > max {
        return Err(SocketError::Answer(format!(
            "a line is longer than {max} bytes"
        )));
    }
    Ok(line)
}

/// Asks the server listening on `path` to perform `op` as the operator.
/// [`SocketError::NotRunning`] when nothing listens there (no socket, or a stale one).
pub async fn request(path: &Path, op: &Operation) -> Result<Outcome, SocketError> {
    exchange(path, op, DEADLINE).await
}

/// Asks the server listening on `path` to write a backup, waiting at most `deadline` for it.
/// [`SocketError::NotRunning`] when nothing listens there.
pub async fn request_backup(
    path: &Path,
    request: &BackupRequest,
    deadline: Duration,
) -> Result<BackupSummary, SocketError> {
    let line = BackupLine {
        backup: request.clone(),
    };
    exchange(path, &line, deadline).await
}

/// Sends one request line and reads its answer within `deadline`.
async fn exchange<T: DeserializeOwned>(
    path: &Path,
    request: &impl Serialize,
    deadline: Duration,
) -> Result<T, SocketError> {
    let stream = match UnixStream::connect(path).await {
        Ok(stream) => stream,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Err(SocketError::NotRunning(path.to_owned()));
        }
        Err(source) => {
            return Err(SocketError::Connect {
                path: path.to_owned(),
                source,
            });
        }
    };
    let (read, mut write) = stream.into_split();
    let mut bytes = serde_json::to_vec(request).map_err(|e| SocketError::Answer(e.to_string()))?;
    bytes.push(b'\n');
    let exchange = async {
        write.write_all(&bytes).await?;
        read_line(read, MAX_ANSWER).await
    };
    let line = timeout(deadline, exchange)
        .await
        .map_err(|_| SocketError::Timeout(deadline))??;
    match serde_json::from_slice::<Answer<T>>(&line) {
        Ok(Answer::Ok(outcome)) => Ok(outcome),
        Ok(Answer::Error(refusal)) => Err(SocketError::Refused(refusal)),
        Err(e) => Err(SocketError::Answer(e.to_string())),
    }
}
