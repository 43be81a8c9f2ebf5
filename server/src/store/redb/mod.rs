//! The embedded engine: one redb file holding users, sessions, rooms, message history and
//! moderation; the single machine's default (see the store's module doc for the other engine).
//!
//! [`Redb`] is a cheap, cloneable handle. Writes become requests to the single writer thread
//! ([`writer`]), which group-commits everything queued into one fsynced transaction and answers
//! each request only once its effect is durable.
//!
//! Reads are async too, and never run on the async worker threads: redb reads are blocking
//! (page reads from the file, B-tree walks), so [`Redb::read`] runs each one, in its own MVCC
//! read transaction (it never waits for the writer), on tokio's blocking pool. At most
//! [`MAX_CONCURRENT_READS`] run at once; more wait for a permit (asynchronously), so a burst of
//! requests cannot queue unbounded work there; the binary also caps the pool's threads, since a
//! thread returns to the pool only after its job released the permit, so the semaphore alone
//! let bursts spawn extra threads. This was chosen over a dedicated reader pool because the
//! blocking pool already exists, and idle threads leave it after a while. The exception: two of
//! a connection's setup reads (the token check, a plain join's view) are a few bounded lookups
//! on hot pages and run on the calling task ([`setup_views`] says why).
//!
//! Memory: redb's page cache is sized at open ([`Redb::open`]'s `cache_bytes`, the
//! `store_cache_mb` setting); redb's own default (1 GiB) made the server's memory grow with the
//! data file.
//!
//! This module owns the handle, opening (schema check, migration, epoch), closing, and reads;
//! the error type is the store's ([`StoreError`]). The data lives in [`tables`] (layout) and [`records`] (value encoding); older
//! files are brought up to date by [`migrate`]; the operations are split by subject into
//! [`accounts`] (users and sessions), [`rooms`], [`messages`] (with deletion, whose erasure from
//! the file is [`scrub`]'s), [`membership`], [`cursors`]
//! (receipts), [`friends`] (friendships, requests and DMs), [`summaries`] (the conversation
//! list), [`last_seen`] (presence's "last seen") and [`blocks`] (who blocks whom); what a
//! connection's setup reads, one transaction each, is composed in [`setup_views`]; moderation
//! is in [`bans`], [`ip_bans`] and [`audit`] (roles are in [`accounts`]).

mod accounts;
mod append_tables;
mod batch_appends;
mod blocks;
mod cursors;
mod friends;
mod last_seen;
mod membership;
mod messages;
mod migrate;
mod records;
mod retention;
mod rooms;
mod scrub;
mod setup_views;
mod summaries;
mod tables;
mod writer;
// Moderation.
mod audit;
mod bans;
mod ip_bans;

#[cfg(test)]
mod commit_tests;
#[cfg(test)]
mod moderation_tests;
#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use redb::{Database, ReadTransaction, ReadableDatabase, TableError};
use tokio::sync::Semaphore;
use tokio::sync::{mpsc, oneshot};

use super::{CommitCounts, CommitHook, Counters, Pending, StoreError, new_epoch, notify};

pub use accounts::RoleChange;
pub use accounts::{Role, User};
pub use audit::{Actor, AuditAction, AuditEntry, AuditPage, OPERATOR};
pub use bans::{Ban, Unbanned};
pub use blocks::{BlockEntry, Blocked, MAX_BLOCKS};
pub use cursors::{Cursors, MemberCursors};
pub use friends::{Added, FriendEntry, FriendState, MAX_FRIEND_ENTRIES, Removed};
pub use ip_bans::{IpBan, MAX_IP_BANS};
pub use membership::{ConversationKind, MAX_MEMBERSHIPS};
pub use messages::{Appended, Deletion};
pub use rooms::{Room, RoomEntry, RoomPage};
pub use setup_views::{JoinView, WelcomeView};
pub use summaries::{LastMessage, PREVIEW_CHARS, Summary, UNREAD_SCAN};

use tables::{
    META, META_CLOCK_MS, META_EPOCH, META_SCHEMA_VERSION, META_SCRUB_OWED, SCHEMA_VERSION,
    WriteTables,
};
use writer::{Reply, Request};

/// How many write requests may wait for the writer before senders wait too. A full queue is
/// one batch (one fsync), so it is also the largest batch: with many conversations each commit
/// copies a few pages per conversation it touches, whatever the number of messages, so larger
/// batches give more messages per fsync. Memory: at most this many bodies of
/// `MAX_BODY_LEN` (4 KiB) wait, 64 MiB at worst (a batch's text is capped lower, see
/// [`writer`]).
const QUEUE_CAPACITY: usize = 16_384;

/// How many reads run on the blocking pool at once; more wait for a turn.
pub const MAX_CONCURRENT_READS: usize = 8;

macro_rules! from_redb_errors {
    ($($error:ty),* $(,)?) => {
        $(impl From<$error> for StoreError {
            fn from(e: $error) -> Self {
                StoreError::Db(e.to_string())
            }
        })*
    };
}

from_redb_errors!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError,
);

/// A handle to the store; clones share one database and one writer thread.
#[derive(Clone)]
pub struct Redb {
    inner: Arc<Inner>,
}

struct Inner {
    db: Arc<Database>,
    epoch: u64,
    /// One permit per read running on the blocking pool.
    readers: Arc<Semaphore>,
    /// The reads running, for the deletion scrub's barrier.
    reads: Arc<scrub::Reads>,
    /// What the writer has committed.
    counters: Arc<Counters>,
    /// The way to the writer; `None` once [`Redb::close`] has begun.
    sender: Mutex<Option<mpsc::Sender<Request>>>,
    /// The writer thread, until someone joins it.
    writer: tokio::sync::Mutex<Option<JoinHandle<()>>>,
}

impl Redb {
    /// [`Store::open`](super::Store::open): `on_commit` runs on the writer's completer thread
    /// (see [`writer`]); while it runs the writer commits the next batch, but at most a couple
    /// of batches wait for it.
    pub fn open(
        path: &Path,
        cache_bytes: usize,
        on_commit: CommitHook,
    ) -> Result<Redb, StoreError> {
        let db = Database::builder()
            .set_cache_size(cache_bytes)
            .create(path)
            .map_err(|e| match e {
                redb::DatabaseError::DatabaseAlreadyOpen => StoreError::InUse,
                other => other.into(),
            })?;
        if let Some(found) = stored_schema(&db)? {
            migrate::to_current(&db, found)?;
        }
        let (epoch, clock_ms, scrub_owed) = initialize(&db)?;
        let db = Arc::new(db);
        let reads = Arc::new(scrub::Reads::default());
        let scrubber = scrub::Scrubber::new(path, Arc::clone(&reads), scrub_owed);
        let (sender, receiver) = mpsc::channel(QUEUE_CAPACITY);
        let counters = Arc::new(Counters::default());
        let writer = writer::spawn(
            Arc::clone(&db),
            receiver,
            on_commit,
            clock_ms,
            scrubber,
            Arc::clone(&counters),
        )?;
        Ok(Redb {
            inner: Arc::new(Inner {
                db,
                epoch,
                readers: Arc::new(Semaphore::new(MAX_CONCURRENT_READS)),
                reads,
                counters,
                sender: Mutex::new(Some(sender)),
                writer: tokio::sync::Mutex::new(Some(writer)),
            }),
        })
    }

    pub fn epoch(&self) -> u64 {
        self.inner.epoch
    }

    pub fn check(&self) -> Result<(), StoreError> {
        match self
            .inner
            .sender
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
        {
            Some(sender) if !sender.is_closed() => Ok(()),
            _ => Err(StoreError::Closed),
        }
    }

    pub fn commit_counts(&self) -> CommitCounts {
        self.inner.counters.get()
    }

    /// [`Store::close`](super::Store::close); the file itself is closed when the last handle is
    /// dropped.
    pub async fn close(&self) {
        drop(
            self.inner
                .sender
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
        // Concurrent closers wait here until the first one has joined the thread.
        let mut writer = self.inner.writer.lock().await;
        if let Some(handle) = writer.take() {
            match tokio::task::spawn_blocking(move || handle.join()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => tracing::error!("the store writer thread panicked"),
                Err(e) => tracing::error!(error = %e, "could not join the store writer thread"),
            }
        }
    }

    /// Sends a request to the writer and waits for its answer, which comes after the commit.
    async fn request<T>(&self, make: impl FnOnce(Reply<T>) -> Request) -> Result<T, StoreError> {
        self.submit(make).await?.await
    }

    /// Queues a request with the writer (waiting only for room in its queue) and returns the
    /// answer to come. Requests are applied in the order they were queued.
    async fn submit<T>(
        &self,
        make: impl FnOnce(Reply<T>) -> Request,
    ) -> Result<Pending<T>, StoreError> {
        let sender = self
            .inner
            .sender
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or(StoreError::Closed)?;
        let (reply, answer) = oneshot::channel();
        sender
            .send(make(reply))
            .await
            .map_err(|_| StoreError::Closed)?;
        Ok(Pending(answer))
    }

    /// Runs `read` in a read transaction on the latest committed state, on the blocking pool
    /// (see the module doc), and returns its result.
    async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&ReadTransaction) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let permit = Arc::clone(&self.inner.readers)
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Closed)?;
        let db = Arc::clone(&self.inner.db);
        let reads = Arc::clone(&self.inner.reads);
        tokio::task::spawn_blocking(move || {
            // Held until the read is done, even if the caller stops waiting.
            let _permit = permit;
            let _running = reads.begin();
            let txn = db.begin_read()?;
            read(&txn)
        })
        .await
        .map_err(|e| StoreError::Db(format!("a read task failed: {e}")))?
    }
}

/// The schema version recorded in the file; `None` for a new file (no `meta` table or no
/// version yet). Reads only.
fn stored_schema(db: &Database) -> Result<Option<u64>, StoreError> {
    let txn = db.begin_read()?;
    let meta = match txn.open_table(META) {
        Ok(meta) => meta,
        Err(TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    Ok(meta.get(META_SCHEMA_VERSION)?.map(|v| v.value()))
}

/// Creates the missing tables and, on a new file, records the schema version and a fresh epoch.
/// Returns the epoch, the writer's last handed-out timestamp, and whether a scrub is owed.
fn initialize(db: &Database) -> Result<(u64, u64, bool), StoreError> {
    let txn = db.begin_write()?;
    let (epoch, clock_ms, scrub_owed) = {
        let mut tables = WriteTables::open(&txn)?;
        if tables.meta_get(META_SCHEMA_VERSION)?.is_none() {
            tables.meta.insert(META_SCHEMA_VERSION, SCHEMA_VERSION)?;
            tables.meta.insert(META_EPOCH, new_epoch())?;
        }
        accounts::backfill_indexes(&mut tables)?;
        let epoch = tables
            .meta_get(META_EPOCH)?
            .ok_or_else(|| StoreError::Corrupt("the epoch is missing".into()))?;
        (
            epoch,
            tables.meta_get(META_CLOCK_MS)?.unwrap_or(0),
            tables.meta_get(META_SCRUB_OWED)?.is_some(),
        )
    };
    txn.commit()?;
    Ok((epoch, clock_ms, scrub_owed))
}
