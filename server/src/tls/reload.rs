//! When the certificate files are read again: on request (the binary turns SIGHUP into one,
//! see [`Trigger`]) and when either file changes on disk.
//!
//! A change is seen by polling both files' metadata (modification time, length, inode, so a
//! file replaced by a rename or a symlink swap counts too) every [`POLL`]; no watcher crate,
//! no inotify limits. A change is acted on only once the metadata has stayed the same for one
//! more poll, so a certificate and key copied one after the other are read as a pair, not
//! half-way. A request always reads. Every attempt is logged and counted in
//! `quibble_certificate_reloads_total` by outcome (`changed`, `unchanged`, `failed`); a failed
//! one names the file and the problem, and the previous certificate stays served. Reading the
//! same files twice is harmless (the second is `unchanged`).

use std::fs::Metadata;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;
use tokio::time::MissedTickBehavior;

use super::{Certificates, Reloaded};
use crate::config::TlsFiles;

/// How often the files' metadata is read.
pub const POLL: Duration = Duration::from_secs(2);

/// Asks the reload task to read the files now. Cheap to clone; requests made while one is
/// being served fold into one more read.
#[derive(Clone, Default)]
pub struct Trigger(Arc<Notify>);

impl Trigger {
    pub fn request(&self) {
        self.0.notify_one();
    }
}

/// What caused a reload, for the log.
#[derive(Clone, Copy, Debug)]
enum Cause {
    Request,
    FileChange,
}

/// One file's metadata as far as a change is concerned.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

/// Both files' stamps; `None` for a file that cannot be read.
type Stamps = [Option<Stamp>; 2];

fn stamps(files: &TlsFiles) -> Stamps {
    [stamp(&files.cert), stamp(&files.key)]
}

fn stamp(path: &Path) -> Option<Stamp> {
    // Follows symlinks: a link switched to a new file is a change.
    std::fs::metadata(path).ok().map(|m| Stamp {
        modified: m.modified().ok(),
        len: m.len(),
        inode: inode(&m),
    })
}

#[cfg(unix)]
fn inode(m: &Metadata) -> u64 {
    std::os::unix::fs::MetadataExt::ino(m)
}

#[cfg(not(unix))]
fn inode(_: &Metadata) -> u64 {
    0
}

/// Serve reload requests, and watch the files when there are any. Runs until aborted.
pub async fn run(certs: Arc<Certificates>, trigger: Trigger) {
    let files = certs.files().cloned();
    let mut seen = files.as_ref().map(stamps);
    // A change seen at the last poll, acted on when the next poll sees the same.
    let mut settling: Option<Stamps> = None;
    let mut ticker = tokio::time::interval(POLL);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = trigger.0.notified() => {
                if let Some(files) = &files {
                    seen = Some(stamps(files));
                    settling = None;
                }
                reload(&certs, Cause::Request);
            }
            _ = ticker.tick(), if files.is_some() => {
                let Some(files) = &files else { continue };
                let now = stamps(files);
                if seen.as_ref() == Some(&now) {
                    settling = None;
                } else if settling.as_ref() == Some(&now) {
                    seen = Some(now);
                    settling = None;
                    reload(&certs, Cause::FileChange);
                } else {
                    settling = Some(now);
                }
            }
        }
    }
}

fn reload(certs: &Certificates, cause: Cause) {
    let outcome = match certs.reload() {
        Ok(Reloaded::Changed { sha256_hex }) => {
            tracing::info!(?cause, sha256 = %sha256_hex, "certificate reloaded: new handshakes present the new one");
            "changed"
        }
        Ok(Reloaded::Unchanged) => {
            tracing::info!(?cause, "certificate files read again: unchanged");
            "unchanged"
        }
        Ok(Reloaded::SelfSigned) => {
            tracing::info!(
                ?cause,
                "no certificate files configured (self-signed, rotated by the server): nothing to reload"
            );
            return;
        }
        Err(e) => {
            tracing::error!(
                ?cause,
                sha256 = %certs.info().sha256_hex,
                "certificate reload failed, still serving the previous certificate: {e}"
            );
            "failed"
        }
    };
    metrics::counter!(crate::metrics::CERTIFICATE_RELOADS, "outcome" => outcome).increment(1);
}
