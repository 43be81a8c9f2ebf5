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
//! 1. Barrier: wait until every read that began before (holding every read permit of
//!    [`super::MAX_CONCURRENT_READS`] for a moment), then commit: with no older reader, every
//!    page freed so far, the deleted leaf included, is released.
//! 2. Fill: insert page-sized zero values with ascending keys into the `scrub` table until the
//!    file grows (every free page is now allocated), then until one insert allocated exactly
//!    one page (so the last insert freed nothing that would stay unwritten), and commit: every
//!    formerly free page is written over with zeros and table bookkeeping.
//! 3. Release: delete the `scrub` table (its pages become free again, holding zeros; the file's
//!    free tail is trimmed as usual) and clear `scrub_owed` in `meta`.
//!
//! Cost: writes about as many bytes as the file has free, plus three fsyncs, per scrub. The
//! writer scrubs once after a batch with deletions, however many it had, and answers those
//! deletions only when it is done, so deletions arriving meanwhile share the next scrub.
//! `scrub_owed`, committed with the deletion, makes a restart finish an interrupted scrub.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redb::{Database, Durability, ReadableTableMetadata, TableDefinition};
use tokio::sync::Semaphore;

use super::StoreError;
use super::tables::{META, META_SCRUB_OWED};

/// Scratch table of fill pages; exists only during a scrub.
const SCRUB: TableDefinition<u64, &[u8]> = TableDefinition::new("scrub");

/// Longest the barrier waits for earlier reads to end.
const BARRIER_WAIT: Duration = Duration::from_secs(5);

/// Inserts after the file grew, looking for one that freed nothing; far more than ever needed
/// (a branch page is rebuilt once per ~100 inserts).
const SETTLE_INSERTS: u64 = 1000;

/// The writer's scrubbing state.
pub(super) struct Scrubber {
    path: PathBuf,
    readers: Arc<Semaphore>,
    /// Whether a deleted body may still be in free pages.
    pub owed: bool,
}

impl Scrubber {
    pub fn new(path: &Path, readers: Arc<Semaphore>, owed: bool) -> Scrubber {
        Scrubber {
            path: path.to_owned(),
            readers,
            owed,
        }
    }

    /// Overwrites every free page of the file (see the module doc); clears `owed` on success.
    pub fn scrub(&mut self, db: &Database) -> Result<(), StoreError> {
        self.barrier()?;
        commit_empty(db)?;
        self.fill(db)?;
        let mut txn = db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        txn.delete_table(SCRUB)?;
        txn.open_table(META)?.remove(META_SCRUB_OWED)?;
        txn.commit()?;
        self.owed = false;
        Ok(())
    }

    /// Waits until no read that began before this call is still running.
    fn barrier(&self) -> Result<(), StoreError> {
        let all = u32::try_from(super::MAX_CONCURRENT_READS).unwrap_or(u32::MAX);
        let deadline = Instant::now() + BARRIER_WAIT;
        loop {
            match self.readers.try_acquire_many(all) {
                Ok(permits) => {
                    drop(permits);
                    return Ok(());
                }
                Err(tokio::sync::TryAcquireError::Closed) => return Err(StoreError::Closed),
                Err(tokio::sync::TryAcquireError::NoPermits) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(tokio::sync::TryAcquireError::NoPermits) => {
                    return Err(StoreError::Db(
                        "reads kept running; deleted text not erased yet (retried)".into(),
                    ));
                }
            }
        }
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

/// A commit that changes nothing but releases the pages freed so far (when no reader holds them).
fn commit_empty(db: &Database) -> Result<(), StoreError> {
    let mut txn = db.begin_write()?;
    txn.set_durability(Durability::Immediate)?;
    txn.commit()?;
    Ok(())
}

/// Pages in the table's tree.
fn tree_pages(table: &redb::Table<'_, u64, &'static [u8]>) -> Result<u64, StoreError> {
    let stats = table.stats()?;
    Ok(stats.leaf_pages() + stats.branch_pages())
}
