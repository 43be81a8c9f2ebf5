//! Erasing deleted bodies from the file: after a deletion's commit, the writer overwrites every
//! free page of the redb file, so the old text is gone from the disk, not just unreachable.
//!
//! Why it is needed. redb is copy-on-write: a commit that rewrites a leaf (the deletion's
//! tombstone, but also every later append that landed in the same leaf) writes a new page and
//! frees the old one, which keeps its bytes until the allocator hands it out again. So after the
//! deletion the body may sit in any number of free pages: the leaf the deletion replaced, and
//! stale copies of it from earlier commits.
//!
//! What redb guarantees (read in its 4.x source): pages a durable commit frees are recorded with
//! it and released to the allocator once no live read transaction is older than that commit
//! (right after the commit when none is); a page handed out is zero-filled in memory and written
//! whole at the commit that keeps it; the allocator serves the lowest free page of an order
//! first and grows the file only when no free space is left; inserting past the largest key
//! into a full rightmost leaf starts a new leaf and frees nothing. A page that is allocated and
//! freed again inside one transaction is not written at all.
//!
//! The scrub, in three commits, each durable:
//! 1. Barrier: wait until every read that began before has ended ([`Reads`]; reads that begin
//!    meanwhile are not waited for), then commit (dropping a `scrub` table an interrupted scrub
//!    left): with no older reader, every page freed so far, the deleted leaf included, is
//!    released.
//! 2. Fill: insert page-sized zero values with ascending keys into the `scrub` table until the
//!    file grows (every free page is now allocated), then until one insert allocated exactly
//!    one page (so the last insert freed nothing that would stay unwritten; a page an earlier
//!    insert freed is the lowest free one, so the next insert takes it), and commit: every
//!    formerly free page is written over with zeros and table bookkeeping.
//! 3. Release: delete the `scrub` table (its pages become free again, holding zeros) and clear
//!    `scrub_owed` in `meta`; then commit until the file stops shrinking (redb trims half of a
//!    free tail that is at least half the file per commit), undoing most of the fill's growth.
//!
//! Cost: writes about as many bytes as the file has free, plus a few fsyncs, per scrub. Since
//! the fill must exhaust free space, the file grows by redb's growth step (doubling, below
//! 4 GiB) during each scrub; the trimming commits give most of it back. Measured (debug
//! build): with 35 MB of messages, six scrubs in a row took ~0.4 s each and the file stayed at
//! 104 MB apparent (sparse), 52 MB on disk; without the trimming it grew by 35 MB per scrub.
//! With 18 MB, five scrubs left it between 1.5× and 5× its data, varying from run to run: the
//! growth is bounded by the trimming only on average. A fill that stops short of the file's
//! never-written tail would remove it; redb exposes no free-page map to do that with. The
//! writer scrubs once after a batch with deletions, however many it had, and answers those
//! deletions only when it is done, so deletions arriving meanwhile share the next scrub.
//! The file grows for a moment by the allocator's growth step (sparse, trimmed afterwards).
//! This leans on redb's allocator as read above, so the tests search the file's bytes for
//! deleted text (`store::tests`, `server/tests/moderation_delete.rs`): a redb upgrade that
//! changes it fails them rather than silently keeping text.
//! `scrub_owed`, committed with the deletion, makes a restart finish an interrupted scrub; a
//! scrub that failed (say, a read outlived the barrier's wait) is tried again after the next
//! batch with deletions, or after [`RETRY_AFTER`].
//!
//! Backups ([`super::backup`]) are long reads the barrier does not wait for (one may take
//! minutes, and the writer must not stall): while one runs, redb keeps every page its snapshot
//! can see, the deleted leaf included, so the fill cannot reach it. A scrub that began while a
//! backup ran erases what it can, answers the deletions, and stays owed (`scrub_owed` kept), to
//! be done again after [`RETRY_AFTER`] or the next deletion, once the backup has ended.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use redb::{Database, Durability, ReadableTableMetadata, TableDefinition};

use super::StoreError;
use super::tables::{META, META_SCRUB_OWED};

/// Scratch table of fill pages; exists only during a scrub.
pub(super) const SCRUB: TableDefinition<u64, &[u8]> = TableDefinition::new("scrub");

/// Longest the barrier waits for earlier reads to end.
const BARRIER_WAIT: Duration = Duration::from_secs(5);

/// Most commits that trim the file after a scrub.
const TRIM_COMMITS: usize = 8;

/// How soon a failed scrub is tried again when no new deletion asks for it.
const RETRY_AFTER: Duration = Duration::from_secs(10);

/// Inserts after the file grew, looking for one that freed nothing; far more than ever needed
/// (a branch page is rebuilt once per ~100 inserts).
const SETTLE_INSERTS: u64 = 1000;

/// The reads running now, counted by the generation they began in, so the barrier can wait for
/// those that began before it without waiting for those that begin after.
#[derive(Default)]
pub(super) struct Reads {
    state: Mutex<Generations>,
    ended: Condvar,
    /// Backups running (see the module doc); not waited for.
    backups: AtomicUsize,
}

/// A backup in progress; dropping it ends it.
pub(super) struct BackupGuard<'a> {
    reads: &'a Reads,
}

impl Drop for BackupGuard<'_> {
    fn drop(&mut self) {
        self.reads.backups.fetch_sub(1, Ordering::AcqRel);
    }
}

#[derive(Default)]
struct Generations {
    current: u64,
    /// Reads running, by the parity of their generation.
    running: [usize; 2],
}

/// A read in progress; dropping it ends it.
pub(super) struct ReadGuard<'a> {
    reads: &'a Reads,
    slot: usize,
}

impl Reads {
    /// Counts a read until the guard is dropped.
    pub fn begin(&self) -> ReadGuard<'_> {
        let mut state = self.lock();
        let slot = usize::from(state.current % 2 == 1);
        state.running[slot] += 1;
        ReadGuard { reads: self, slot }
    }

    /// Counts a backup until the guard is dropped; take it before the backup's read
    /// transaction begins and drop it after that ends.
    pub fn begin_backup(&self) -> BackupGuard<'_> {
        self.backups.fetch_add(1, Ordering::AcqRel);
        BackupGuard { reads: self }
    }

    fn backups_running(&self) -> bool {
        self.backups.load(Ordering::Acquire) > 0
    }

    /// Waits until every read that began before this call has ended; false on timeout.
    fn wait_for_earlier(&self, timeout: Duration) -> bool {
        let mut state = self.lock();
        let slot = usize::from(state.current % 2 == 1);
        // Reads from now on count in the other slot; this one only drains.
        state.current += 1;
        let (state, wait) = self
            .ended
            .wait_timeout_while(state, timeout, |state| state.running[slot] > 0)
            .unwrap_or_else(PoisonError::into_inner);
        drop(state);
        !wait.timed_out()
    }

    fn lock(&self) -> MutexGuard<'_, Generations> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for ReadGuard<'_> {
    fn drop(&mut self) {
        let mut state = self.reads.lock();
        state.running[self.slot] -= 1;
        if state.running[self.slot] == 0 {
            self.reads.ended.notify_all();
        }
    }
}

/// The writer's scrubbing state.
pub(super) struct Scrubber {
    path: PathBuf,
    reads: Arc<Reads>,
    /// Whether a deleted body may still be in free pages.
    pub owed: bool,
    /// After a failure: not before this unless a new deletion asks.
    retry_at: Option<Instant>,
}

impl Scrubber {
    pub fn new(path: &Path, reads: Arc<Reads>, owed: bool) -> Scrubber {
        Scrubber {
            path: path.to_owned(),
            reads,
            owed,
            retry_at: None,
        }
    }

    /// Whether to scrub after a batch: when owed, and the batch deleted something or a failed
    /// scrub's retry is due.
    pub fn due(&self, deleted: bool) -> bool {
        self.owed && (deleted || self.retry_at.is_none_or(|at| Instant::now() >= at))
    }

    /// Overwrites every free page of the file (see the module doc); clears `owed` on success.
    pub fn scrub(&mut self, db: &Database) -> Result<(), StoreError> {
        let started = Instant::now();
        let result = self.try_scrub(db);
        crate::metrics::scrubbed(started.elapsed(), result.is_ok());
        // Still owed after a success: a backup held pages (see the module doc).
        self.retry_at = (result.is_err() || self.owed).then(|| Instant::now() + RETRY_AFTER);
        result
    }

    fn try_scrub(&mut self, db: &Database) -> Result<(), StoreError> {
        if !self.reads.wait_for_earlier(BARRIER_WAIT) {
            return Err(StoreError::Db(
                "a read outlived the wait; deleted text not erased yet (retried)".into(),
            ));
        }
        // A backup that began before may hold the deleted leaf until it ends.
        let held = self.reads.backups_running();
        release(db)?;
        self.fill(db)?;
        let mut txn = db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        txn.delete_table(SCRUB)?;
        if !held {
            txn.open_table(META)?.remove(META_SCRUB_OWED)?;
        }
        txn.commit()?;
        self.owed = held;
        self.trim(db)
    }

    /// Commits until the file stops shrinking: the fill's growth is free again, and each commit
    /// trims half of a free tail that is at least half the file (redb's rule).
    fn trim(&self, db: &Database) -> Result<(), StoreError> {
        let mut len = self.file_len()?;
        for _ in 0..TRIM_COMMITS {
            release(db)?;
            let now = self.file_len()?;
            if now >= len {
                break;
            }
            len = now;
        }
        Ok(())
    }

    /// Allocates every free page to the `scrub` table in one commit.
    fn fill(&self, db: &Database) -> Result<(), StoreError> {
        let mut txn = db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        let page = txn.stats()?.page_size();
        // More than half a page: one value per leaf, and a leaf of one page.
        let filler = vec![0u8; page * 3 / 4];
        let start_len = self.file_len()?;
        {
            let mut table = txn.open_table(SCRUB)?;
            let mut key = 0u64;
            while self.file_len()? <= start_len {
                table.insert(key, filler.as_slice())?;
                key += 1;
            }
            let mut pages = tree_pages(&table)?;
            for _ in 0..SETTLE_INSERTS {
                table.insert(key, filler.as_slice())?;
                key += 1;
                let now = tree_pages(&table)?;
                if now == pages + 1 {
                    break;
                }
                pages = now;
            }
        }
        txn.commit()?;
        Ok(())
    }

    fn file_len(&self) -> Result<u64, StoreError> {
        std::fs::metadata(&self.path)
            .map(|m| m.len())
            .map_err(|e| StoreError::Db(format!("cannot read the store file's length: {e}")))
    }
}

/// A commit that releases the pages freed so far (those no reader holds), and drops the
/// `scrub` table if an interrupted scrub left it.
fn release(db: &Database) -> Result<(), StoreError> {
    let mut txn = db.begin_write()?;
    txn.set_durability(Durability::Immediate)?;
    txn.delete_table(SCRUB)?;
    txn.commit()?;
    Ok(())
}

/// Pages in the table's tree.
fn tree_pages(table: &redb::Table<'_, u64, &'static [u8]>) -> Result<u64, StoreError> {
    let stats = table.stats()?;
    Ok(stats.leaf_pages() + stats.branch_pages())
}
