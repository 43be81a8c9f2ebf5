//! Backups of the embedded store: a consistent copy of the redb file, written while the server
//! runs, and what a backup file holds ([`BackupSummary`]).
//!
//! A backup is ONE redb read transaction on the live database (MVCC): it sees exactly what was
//! committed when it began (every message acknowledged before it, since an acknowledgement
//! comes only after the commit) and nothing later, and it never waits for the writer nor makes
//! it wait. Every table is copied, row by row in key order, into a new redb file `FILE.partial`
//! (mode 0600: it holds password and session hashes) in one write transaction, committed
//! durably (fsync), then renamed to `FILE` and the directory fsynced: `FILE` is either absent,
//! the previous backup (with `--force`), or complete. The copy is logical, so the backup holds
//! no free pages (no deleted text) and is compact.
//!
//! The tables copied are listed once, in [`copy_tables`]; before committing, the copy checks
//! that the snapshot has no table outside that list (the deletion scrub's scratch table
//! aside), so a table added to [`super::tables`] and forgotten here fails every backup (and the
//! unit test) instead of being silently left out. The `meta` table travels whole: schema
//! version, epoch, id counters.
//!
//! Cost while the server runs: the copy runs on a thread of its own (never the async workers
//! or the read pool) and reads through the server's page cache. For as long as it runs, redb
//! keeps every page its snapshot can see, so pages that commits free meanwhile are not reused:
//! the live file grows by about what is written during the backup, and erasing deleted text
//! from the file's free pages is finished only after the backup ends (see [`super::scrub`]).
//! One backup runs at a time per server.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use redb::{
    Database, Durability, Key, MultimapTableHandle, ReadTransaction, ReadableDatabase,
    ReadableTable, ReadableTableMetadata, TableDefinition, TableError, TableHandle, Value,
    WriteTransaction,
};
use serde::{Deserialize, Serialize};

use super::scrub::{Reads, SCRUB};
use super::tables::{
    ADMINS, AUDIT, BANS, BLOCKS, CLIENT_IDS, CURSORS, DELETIONS, DM_PAIRS, DMS, FRIENDS, HEADS,
    IP_BANS, LAST_SEEN, MEMBERS, MEMBERSHIPS, MESSAGES, META, META_EPOCH, META_SCHEMA_VERSION,
    RETENTION, ROOM_NAME_KEYS, ROOMS, SESSIONS, USER_SESSIONS, USERNAMES, USERS,
};
use crate::store::StoreError;

/// The page cache of the file being written or checked (the rows go through it once).
pub(super) const COPY_CACHE_BYTES: usize = 16 * 1024 * 1024;

/// What a backup file holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupSummary {
    /// The schema version of the tables (see `tables::SCHEMA_VERSION`).
    pub schema_version: u64,
    pub users: u64,
    /// Rooms and DMs.
    pub conversations: u64,
    /// Messages, deleted ones (tombstones) included.
    pub messages: u64,
    /// The file's size.
    pub bytes: u64,
}

/// Why a backup or a restore failed. Each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{0} exists: pass --force to replace it")]
    Exists(PathBuf),
    #[error(
        "{0} exists: another backup is writing it, or an interrupted one left it; \
         remove it, or pass --force"
    )]
    PartialExists(PathBuf),
    #[error("{0} is not a store file: --force replaces only an earlier backup")]
    ForceNotStore(PathBuf),
    #[error("{0} is the store itself: back it up to another file")]
    OntoStore(PathBuf),
    #[error("a backup is already running on this server; wait for it to end")]
    Busy,
    #[error("cannot {what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("the store has a table the backup does not copy: {0:?} (a bug: add it to the backup)")]
    UnknownTable(String),
    #[error("{path} is not a Quibble store: {reason}")]
    NotAStore { path: PathBuf, reason: String },
    #[error(
        "{path} is a store of schema version {found}, newer than this server's ({supported}); \
         restore it with that server or newer"
    )]
    Newer {
        path: PathBuf,
        found: u64,
        supported: u64,
    },
    #[error("a server is running on {0}: stop it before restoring")]
    ServerRunning(PathBuf),
    #[error(
        "this server keeps its data in PostgreSQL: back it up with pg_dump \
         (see the README's \"Backup and restore\")"
    )]
    Postgres,
    #[error("the backup failed: {0}")]
    Store(#[from] StoreError),
}

impl BackupError {
    /// A short machine-readable code (the admin socket's error code).
    pub fn code(&self) -> &'static str {
        match self {
            BackupError::Exists(_) | BackupError::PartialExists(_) => "exists",
            BackupError::Busy => "busy",
            BackupError::Postgres => "unsupported",
            BackupError::NotAStore { .. }
            | BackupError::Newer { .. }
            | BackupError::OntoStore(_)
            | BackupError::ForceNotStore(_) => "bad_request",
            BackupError::ServerRunning(_) => "conflict",
            BackupError::Io { .. } | BackupError::UnknownTable(_) | BackupError::Store(_) => {
                "internal"
            }
        }
    }

    pub(super) fn io(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> BackupError {
        let path = path.to_owned();
        move |source| BackupError::Io { what, path, source }
    }
}

/// Writes a consistent copy of `db` (the file `store`) to `to` (see the module doc); refuses
/// an existing `to` unless `force`, and never replaces `store` itself. `reads` counts the backup
/// for the deletion scrub.
pub(super) fn write(
    db: &Database,
    store: &Path,
    reads: &Reads,
    to: &Path,
    force: bool,
) -> Result<BackupSummary, BackupError> {
    if let Ok(existing) = std::fs::metadata(to) {
        if !force {
            return Err(BackupError::Exists(to.to_owned()));
        }
        let live = std::fs::metadata(store).map_err(BackupError::io("read", store))?;
        if (existing.dev(), existing.ino()) == (live.dev(), live.ino()) {
            return Err(BackupError::OntoStore(to.to_owned()));
        }
        // --force replaces an earlier backup, never another file the server's user can write
        // (its admin socket, its keys, a configuration file).
        if !existing.is_file() || !is_redb_file(to) {
            return Err(BackupError::ForceNotStore(to.to_owned()));
        }
    }
    let partial = partial_path(to);
    if force {
        remove_if_present(&partial)?;
    }
    // Claims the name: a second backup to the same file stops here.
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&partial)
    {
        Ok(file) => drop(file),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            return Err(BackupError::PartialExists(partial));
        }
        Err(e) => return Err(BackupError::io("create", &partial)(e)),
    }
    let result = copy_into(db, reads, &partial).and_then(|summary| {
        sync_file(&partial)?;
        std::fs::rename(&partial, to).map_err(BackupError::io("rename into place", to))?;
        sync_parent(to)?;
        Ok(summary)
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    let mut summary = result?;
    summary.bytes = std::fs::metadata(to)
        .map_err(BackupError::io("read the size of", to))?
        .len();
    Ok(summary)
}

/// `FILE.partial`.
/// redb's file signature: the first bytes of every store and backup file.
const REDB_MAGIC: [u8; 9] = [b'r', b'e', b'd', b'b', 0x1A, 0x0A, 0xA9, 0x0D, 0x0A];

/// Whether the regular file `path` starts with redb's signature.
fn is_redb_file(path: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; REDB_MAGIC.len()];
    File::open(path)
        .and_then(|mut file| file.read_exact(&mut head))
        .is_ok_and(|()| head == REDB_MAGIC)
}

fn partial_path(to: &Path) -> PathBuf {
    let mut name = to.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}

/// Copies the snapshot into the (empty) redb file at `path` and commits it durably.
fn copy_into(db: &Database, reads: &Reads, path: &Path) -> Result<BackupSummary, BackupError> {
    let out = Database::builder()
        .set_cache_size(COPY_CACHE_BYTES)
        .create(path)
        .map_err(StoreError::from)?;
    let _backup = reads.begin_backup();
    let snapshot = db.begin_read().map_err(StoreError::from)?;
    let mut txn = out.begin_write().map_err(StoreError::from)?;
    txn.set_durability(Durability::Immediate)
        .map_err(StoreError::from)?;
    let copied = copy_tables(&snapshot, &txn)?;
    for table in snapshot.list_tables().map_err(StoreError::from)? {
        let name = table.name();
        if name != SCRUB.name() && !copied.iter().any(|copied| copied == name) {
            return Err(BackupError::UnknownTable(name.to_owned()));
        }
    }
    if let Some(table) = snapshot
        .list_multimap_tables()
        .map_err(StoreError::from)?
        .next()
    {
        return Err(BackupError::UnknownTable(table.name().to_owned()));
    }
    let summary = summary(&snapshot)?;
    drop(snapshot);
    txn.commit().map_err(StoreError::from)?;
    Ok(summary)
}

/// Copies every table of the store from `from` into `to`; returns their names. THE list of
/// tables a backup holds: [`copy_into`] refuses a snapshot with any other.
fn copy_tables(from: &ReadTransaction, to: &WriteTransaction) -> Result<Vec<String>, StoreError> {
    let mut names = Vec::new();
    copy(from, to, META, &mut names)?;
    copy(from, to, USERS, &mut names)?;
    copy(from, to, USERNAMES, &mut names)?;
    copy(from, to, SESSIONS, &mut names)?;
    copy(from, to, ROOMS, &mut names)?;
    copy(from, to, ROOM_NAME_KEYS, &mut names)?;
    copy(from, to, MESSAGES, &mut names)?;
    copy(from, to, HEADS, &mut names)?;
    copy(from, to, CLIENT_IDS, &mut names)?;
    copy(from, to, MEMBERSHIPS, &mut names)?;
    copy(from, to, MEMBERS, &mut names)?;
    copy(from, to, CURSORS, &mut names)?;
    copy(from, to, FRIENDS, &mut names)?;
    copy(from, to, DMS, &mut names)?;
    copy(from, to, DM_PAIRS, &mut names)?;
    copy(from, to, LAST_SEEN, &mut names)?;
    copy(from, to, DELETIONS, &mut names)?;
    copy(from, to, BLOCKS, &mut names)?;
    copy(from, to, USER_SESSIONS, &mut names)?;
    copy(from, to, ADMINS, &mut names)?;
    copy(from, to, BANS, &mut names)?;
    copy(from, to, IP_BANS, &mut names)?;
    copy(from, to, AUDIT, &mut names)?;
    copy(from, to, RETENTION, &mut names)?;
    Ok(names)
}

/// Copies one table (created empty in `to` when `from` lacks it).
fn copy<K: Key + 'static, V: Value + 'static>(
    from: &ReadTransaction,
    to: &WriteTransaction,
    table: TableDefinition<'static, K, V>,
    names: &mut Vec<String>,
) -> Result<(), StoreError> {
    names.push(table.name().to_owned());
    let mut target = to.open_table(table)?;
    let source = match from.open_table(table) {
        Ok(source) => source,
        Err(TableError::TableDoesNotExist(_)) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    for row in source.iter()? {
        let (key, value) = row?;
        target.insert(key.value(), value.value())?;
    }
    Ok(())
}

/// What the snapshot `txn` holds (`bytes` left at 0 for the caller).
pub(super) fn summary(txn: &ReadTransaction) -> Result<BackupSummary, StoreError> {
    let len = |table: TableDefinition<'static, u64, &'static [u8]>| -> Result<u64, StoreError> {
        match txn.open_table(table) {
            Ok(table) => Ok(table.len()?),
            Err(TableError::TableDoesNotExist(_)) => Ok(0),
            Err(e) => Err(e.into()),
        }
    };
    let meta = txn.open_table(META)?;
    let schema_version = meta
        .get(META_SCHEMA_VERSION)?
        .map(|v| v.value())
        .ok_or_else(|| StoreError::Corrupt("no schema version".into()))?;
    let dms = match txn.open_table(DMS) {
        Ok(table) => table.len()?,
        Err(TableError::TableDoesNotExist(_)) => 0,
        Err(e) => return Err(e.into()),
    };
    let messages = match txn.open_table(MESSAGES) {
        Ok(table) => table.len()?,
        Err(TableError::TableDoesNotExist(_)) => 0,
        Err(e) => return Err(e.into()),
    };
    Ok(BackupSummary {
        schema_version,
        users: len(USERS)?,
        conversations: len(ROOMS)? + dms,
        messages,
        bytes: 0,
    })
}

/// The epoch recorded in the file of `txn`, if any.
pub(super) fn epoch_of(txn: &ReadTransaction) -> Result<Option<u64>, StoreError> {
    let meta = txn.open_table(META)?;
    Ok(meta.get(META_EPOCH)?.map(|v| v.value()))
}

pub(super) fn remove_if_present(path: &Path) -> Result<(), BackupError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(BackupError::io("remove", path)(e)),
        _ => Ok(()),
    }
}

/// fsyncs the file at `path`.
pub(super) fn sync_file(path: &Path) -> Result<(), BackupError> {
    File::open(path)
        .and_then(|file| file.sync_all())
        .map_err(BackupError::io("fsync", path))
}

/// fsyncs the directory holding `path`, so a rename into it is durable.
pub(super) fn sync_parent(path: &Path) -> Result<(), BackupError> {
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    File::open(parent)
        .and_then(|dir| dir.sync_all())
        .map_err(BackupError::io("fsync the directory", parent))
}
