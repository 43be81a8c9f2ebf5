//! Restoring a backup ([`super::backup`]) into a stopped server's data directory.
//!
//! The backup file is never trusted nor modified: it is copied next to the store file
//! (`quibble.redb.restoring`, mode 0600), and the copy is what gets checked and installed. The
//! check opens the copy with redb's integrity check on (every page's checksum is verified; a
//! file that is not redb, or was altered, is refused) and requires a Quibble `meta` table with
//! an epoch and a schema version this server knows (an older one is migrated by the server when
//! it next opens the store, as for any older file; a newer one is refused).
//!
//! The restored store gets a NEW epoch: its history is older than what clients may have seen
//! since the backup, and seqs after the backup's heads would be handed out again for other
//! messages; with a new epoch every client drops its cache and reloads (the protocol's rule for
//! a store that is not the one it resumed from). Session tokens in the backup stay valid.
//!
//! Installing: the copy is fsynced, any existing `quibble.redb` is renamed to
//! `quibble.redb.before-restore-<unix time>` (kept, never deleted), the copy renamed to
//! `quibble.redb`, and the directory fsynced. A server holding the store is detected by the
//! store's file lock (a read-only open is refused while a server has it); the lock of the
//! existing file is held from the check to the swap, so a server cannot open it meanwhile.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use redb::{Database, DatabaseError, Durability, ReadOnlyDatabase, ReadableDatabase, TableError};

use super::backup::{
    BackupError, BackupSummary, COPY_CACHE_BYTES, epoch_of, remove_if_present, summary, sync_file,
    sync_parent,
};
use super::tables::{META, META_EPOCH, META_SCHEMA_VERSION, SCHEMA_VERSION};
use crate::store::{StoreError, new_epoch};

/// What a restore did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    /// What the restored store holds.
    pub summary: BackupSummary,
    /// The store file now holding the backup.
    pub store: PathBuf,
    /// Where the store file that was there before is kept, if there was one.
    pub kept: Option<PathBuf>,
    /// The restored store's (new) epoch.
    pub epoch: u64,
}

/// Restores the backup at `from` as the store file `store` (see the module doc); `now_secs`
/// names the kept file.
pub fn restore(from: &Path, store: &Path, now_secs: u64) -> Result<Restored, BackupError> {
    let held = hold_existing(store)?;
    let temp = with_suffix(store, ".restoring");
    remove_if_present(&temp)?;
    let result = copy_file(from, &temp).and_then(|()| check_and_renew(&temp, from));
    let (mut summary, epoch) = match result {
        Ok(checked) => checked,
        Err(e) => {
            let _ = std::fs::remove_file(&temp);
            return Err(e);
        }
    };
    sync_file(&temp)?;
    summary.bytes = std::fs::metadata(&temp)
        .map_err(BackupError::io("read the size of", &temp))?
        .len();
    let kept = if store.exists() {
        // Two restores within a second keep both earlier files.
        let mut kept = with_suffix(store, &format!(".before-restore-{now_secs}"));
        let mut n = 1;
        while kept.exists() {
            n += 1;
            kept = with_suffix(store, &format!(".before-restore-{now_secs}-{n}"));
        }
        std::fs::rename(store, &kept).map_err(BackupError::io("keep", store))?;
        Some(kept)
    } else {
        None
    };
    std::fs::rename(&temp, store).map_err(BackupError::io("install", store))?;
    sync_parent(store)?;
    drop(held);
    Ok(Restored {
        summary,
        store: store.to_owned(),
        kept,
        epoch,
    })
}

/// Takes the lock of the existing store file, if there is one; refuses if a server has it.
fn hold_existing(store: &Path) -> Result<Option<ReadOnlyDatabase>, BackupError> {
    if !store.exists() {
        return Ok(None);
    }
    let dir = store.parent().unwrap_or(Path::new(".")).to_owned();
    match Database::builder()
        .set_cache_size(COPY_CACHE_BYTES)
        .open_read_only(store)
    {
        Ok(db) => Ok(Some(db)),
        Err(DatabaseError::DatabaseAlreadyOpen) => Err(BackupError::ServerRunning(dir)),
        // Not readable as it is (a crashed server's file needs recovery, or it is damaged): no
        // server holds it, and it is kept aside, not read.
        Err(e) => {
            tracing::warn!(path = %store.display(), "the existing store cannot be opened ({e}); it is kept aside");
            Ok(None)
        }
    }
}

/// `path` with `suffix` appended to its file name.
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Copies the regular file `from` to the new file `to` (mode 0600) and fsyncs it.
fn copy_file(from: &Path, to: &Path) -> Result<(), BackupError> {
    let not_a_store = |reason: &str| BackupError::NotAStore {
        path: from.to_owned(),
        reason: reason.to_owned(),
    };
    // Checked before opening: opening a FIFO would wait for a writer.
    let meta = std::fs::metadata(from).map_err(BackupError::io("read", from))?;
    if !meta.is_file() {
        return Err(not_a_store("not a regular file"));
    }
    let mut source = File::open(from).map_err(BackupError::io("open", from))?;
    if meta.len() == 0 {
        return Err(not_a_store("the file is empty"));
    }
    let mut target = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(to)
        .map_err(BackupError::io("create", to))?;
    io::copy(&mut source, &mut target).map_err(BackupError::io("copy into", to))?;
    target.sync_all().map_err(BackupError::io("fsync", to))
}

/// Checks the copy at `path` (of the backup `shown`) and gives it a new epoch; returns what it
/// holds and the epoch.
fn check_and_renew(path: &Path, shown: &Path) -> Result<(BackupSummary, u64), BackupError> {
    let not_a_store = |reason: String| BackupError::NotAStore {
        path: shown.to_owned(),
        reason,
    };
    let db = Database::builder()
        .set_cache_size(COPY_CACHE_BYTES)
        .set_check_integrity_on_open(true)
        .open(path)
        .map_err(|e| not_a_store(format!("redb cannot open it: {e}")))?;
    let summary = {
        let txn = db.begin_read().map_err(StoreError::from)?;
        let version = match txn.open_table(META) {
            Ok(meta) => meta
                .get(META_SCHEMA_VERSION)
                .map_err(StoreError::from)?
                .map(|v| v.value()),
            Err(TableError::TableDoesNotExist(_)) => {
                return Err(not_a_store("it has no Quibble meta table".into()));
            }
            Err(e) => return Err(not_a_store(format!("its meta table is unreadable: {e}"))),
        };
        match version {
            None | Some(0) => return Err(not_a_store("it has no schema version".into())),
            Some(found) if found > SCHEMA_VERSION => {
                return Err(BackupError::Newer {
                    path: shown.to_owned(),
                    found,
                    supported: SCHEMA_VERSION,
                });
            }
            Some(_) => {}
        }
        if epoch_of(&txn)?.is_none() {
            return Err(not_a_store("it has no epoch".into()));
        }
        summary(&txn).map_err(|e| not_a_store(e.to_string()))?
    };
    let epoch = new_epoch();
    let mut txn = db.begin_write().map_err(StoreError::from)?;
    txn.set_durability(Durability::Immediate)
        .map_err(StoreError::from)?;
    txn.open_table(META)
        .map_err(StoreError::from)?
        .insert(META_EPOCH, epoch)
        .map_err(StoreError::from)?;
    txn.commit().map_err(StoreError::from)?;
    drop(db);
    Ok((summary, epoch))
}
