//! The fleet's engine: PostgreSQL as the durable source of truth for any number of nodes.
//!
//! [`Postgres`] is a cheap, cloneable handle over a bounded pool of connections
//! (deadpool-postgres). Appends go through one writer task per node ([`writer`]) that
//! group-commits whatever queued while the last commit was in flight, in one transaction; every
//! other write is its own transaction on a pooled connection, and reads are single statements
//! (or one read-only transaction where a view must be consistent). PostgreSQL's row locks and
//! unique constraints, not this process, keep the store consistent across nodes: an append locks
//! its conversation's row (so seqs stay gap-free and increasing whichever node appends), and
//! names, memberships and client ids are unique by constraint. Every commit is synchronous
//! (`synchronous_commit` is set on each connection), so nothing is acknowledged before it is
//! durable.
//!
//! Deadlines: taking a connection from the pool, connecting, and every statement
//! (`statement_timeout`) have one, so a stalled database turns into errors, not stuck tasks.
//!
//! The schema is created and migrated at start ([`migrate`]), in one transaction under an
//! advisory lock, so nodes starting together migrate once. The operations are split by subject
//! as in the embedded engine: [`accounts`], [`rooms`], [`membership`], [`messages`], [`retention`],
//! [`cursors`] (receipts), [`friends`] (and DMs), [`blocks`], [`last_seen`], [`summaries`]
//! (the conversation list); what a connection's setup reads is composed in [`setup_views`];
//! moderation: [`audit`] (roles and the log), [`bans`], [`ip_bans`].
//!
//! The commit hook ([`Hook`]) is shared by the writer and [`Postgres::delete_message`],
//! which commits in its own transaction (a deletion is one row lock and one update, not worth
//! a trip through the append queue) and tells the hook afterwards. Both call the hook under
//! [`Hook::order`], which the writer holds from before its commit until the hook has seen the
//! batch: so a message appended on this node always reaches the hook before its tombstone (a
//! tombstone first would be dropped by the hub as "not delivered yet", and the body then
//! published live).

mod accounts;
mod audit;
mod bans;
mod blocks;
mod cursors;
mod errors;
mod friends;
mod ip_bans;
mod last_seen;
mod membership;
mod messages;
mod migrate;
mod retention;
mod rooms;
mod setup_views;
mod summaries;
mod writer;

#[cfg(test)]
mod moderation_tests;
#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime, Timeouts};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_postgres::NoTls;

use super::{CommitCounts, CommitHook, Counters, StoreError};
use errors::db_error;
use writer::Request;

/// The most connections one node holds. Appends use one at a time (the writer); the rest
/// serve reads and the other writes.
const POOL_SIZE: usize = 16;
/// How long a new connection may take to connect.
const CONNECTION_WAIT: Duration = Duration::from_secs(5);
/// How long a caller waits for a pooled connection. Writes about one user or pair take turns
/// on its row lock, so a burst of them (a thousand friend requests to one user) queues here.
const POOL_WAIT: Duration = Duration::from_secs(30);
/// The longest a statement waits for a row or table lock (another node's transaction).
const LOCK_TIMEOUT_MS: u32 = 3_000;
/// The longest a transaction may sit idle holding its locks (a node frozen mid-transaction).
const IDLE_IN_TRANSACTION_MS: u32 = 5_000;
/// Keepalive probes on the database link, and the longest sent data may go unacknowledged.
const KEEPALIVE: Duration = Duration::from_secs(5);
const LINK_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `/healthz` waits for the database to answer.
const CHECK_WAIT: Duration = Duration::from_secs(2);
/// The longest a statement may run on the server before PostgreSQL cancels it.
const STATEMENT_TIMEOUT_MS: u32 = 10_000;
/// Appends that may wait for the writer before senders wait too (as the embedded engine).
const QUEUE_CAPACITY: usize = 16_384;

/// A handle to the PostgreSQL store; clones share one pool and one append writer.
#[derive(Clone)]
pub struct Postgres {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    epoch: u64,
    counters: Arc<Counters>,
    /// The commit hook, shared with the append writer.
    hook: Arc<Hook>,
    /// The way to the append writer; `None` once [`Postgres::close`] has begun.
    appends: Mutex<Option<mpsc::Sender<Request>>>,
    /// The writer task, until someone joins it.
    writer: tokio::sync::Mutex<Option<JoinHandle<()>>>,
}

impl Postgres {
    /// Connects to the database at `url` (a `postgres://` URL or a key=value string), migrates
    /// its schema to the current version, reads (or makes) the epoch and starts the append
    /// writer. `on_commit` is called as the embedded engine calls it (see
    /// [`Store::open`](super::Store::open)), on the writer task.
    pub async fn connect(url: &str, on_commit: CommitHook) -> Result<Postgres, StoreError> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Db(format!("bad PostgreSQL URL: {e}")))?;
        // Deadlines on both ends: a statement, a wait for a row lock, and a transaction left
        // idle (its node frozen or cut off while holding conversation rows) are ended by the
        // server; a dead link is found by keepalives and by unacknowledged data on either side.
        config
            .connect_timeout(CONNECTION_WAIT)
            .keepalives(true)
            .keepalives_idle(KEEPALIVE)
            .keepalives_interval(KEEPALIVE)
            .keepalives_retries(3)
            .tcp_user_timeout(LINK_TIMEOUT)
            .options(format!(
                "-c statement_timeout={STATEMENT_TIMEOUT_MS} -c lock_timeout={LOCK_TIMEOUT_MS} \
                 -c idle_in_transaction_session_timeout={IDLE_IN_TRANSACTION_MS} \
                 -c tcp_keepalives_idle=10 -c tcp_keepalives_interval=5 \
                 -c tcp_keepalives_count=3 -c synchronous_commit=on"
            ))
            .application_name("quibble");
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .timeouts(Timeouts {
                wait: Some(POOL_WAIT),
                create: Some(CONNECTION_WAIT),
                recycle: Some(CONNECTION_WAIT),
            })
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| StoreError::Db(format!("could not make the connection pool: {e}")))?;
        let epoch = {
            let mut client = connection(&pool).await?;
            migrate::to_current(&mut client).await?
        };
        let counters = Arc::new(Counters::default());
        let hook = Arc::new(Hook {
            call: on_commit,
            order: tokio::sync::Mutex::new(()),
        });
        let (sender, receiver) = mpsc::channel(QUEUE_CAPACITY);
        let writer = tokio::spawn(writer::run(
            pool.clone(),
            receiver,
            Arc::clone(&hook),
            Arc::clone(&counters),
        ));
        Ok(Postgres {
            inner: Arc::new(Inner {
                pool,
                epoch,
                counters,
                hook,
                appends: Mutex::new(Some(sender)),
                writer: tokio::sync::Mutex::new(Some(writer)),
            }),
        })
    }

    pub fn epoch(&self) -> u64 {
        self.inner.epoch
    }

    pub async fn check(&self) -> Result<(), StoreError> {
        if self.writer()?.is_closed() {
            return Err(StoreError::Closed);
        }
        let ping = async {
            let client = self.client().await?;
            client.simple_query("SELECT 1").await.map_err(db_error)?;
            Ok(())
        };
        tokio::time::timeout(CHECK_WAIT, ping)
            .await
            .unwrap_or_else(|_| Err(StoreError::Db("the database did not answer in time".into())))
    }

    pub fn commit_counts(&self) -> CommitCounts {
        self.inner.counters.get()
    }

    /// [`Store::close`](super::Store::close): the writer finishes what is queued; the pool's
    /// connections close when the last handle is dropped.
    pub async fn close(&self) {
        drop(
            self.inner
                .appends
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
        let mut writer = self.inner.writer.lock().await;
        if let Some(handle) = writer.take()
            && let Err(e) = handle.await
        {
            tracing::error!(error = %e, "the PostgreSQL append writer failed");
        }
    }

    /// A pooled connection for a read, within [`POOL_WAIT`].
    async fn client(&self) -> Result<Object, StoreError> {
        connection(&self.inner.pool).await
    }

    /// A pooled connection for a write, or [`StoreError::Closed`] once closing began (writes
    /// after [`Postgres::close`] are refused, as on the embedded engine; reads go on). Each
    /// such write is its own transaction, counted in [`Postgres::commit_counts`] as one
    /// request and one commit (refused ones too, as the embedded engine counts them).
    async fn write_client(&self) -> Result<Object, StoreError> {
        self.writer()?;
        let client = connection(&self.inner.pool).await?;
        self.inner.counters.committed(1, 0);
        Ok(client)
    }

    /// The way to the writer, or [`StoreError::Closed`] once closing began.
    fn writer(&self) -> Result<mpsc::Sender<Request>, StoreError> {
        self.inner
            .appends
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or(StoreError::Closed)
    }
}

/// The commit hook and what keeps this node's calls of it in commit order.
pub(super) struct Hook {
    pub call: CommitHook,
    /// Held by the writer from before a batch's commit until the hook has seen it, and by a
    /// deletion (after its commit) while the hook sees its tombstone.
    pub order: tokio::sync::Mutex<()>,
}

/// A connection from `pool`, within its wait and connect deadlines.
async fn connection(pool: &Pool) -> Result<Object, StoreError> {
    pool.get().await.map_err(|e| match e {
        deadpool_postgres::PoolError::Backend(e) => db_error(e),
        other => StoreError::Db(format!("no database connection: {other}")),
    })
}

/// A u64 id, seq or time as PostgreSQL's bigint. Stored ones stay far below 2^63; a larger
/// one (a bound such as "after u64::MAX", an expiry of "never") saturates, so comparisons
/// keep their meaning.
fn to_sql(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A u64 compared only for equality (a client id, any u64 the client chose; the epoch) as a
/// bigint, bit for bit.
fn bits_to_sql(value: u64) -> i64 {
    value as i64
}

/// The end of something lasting `duration_ms` from `now`, clamped as [`to_sql`] stores it.
fn until_ms(now: u64, duration_ms: Option<u64>) -> Option<u64> {
    duration_ms.map(|d| now.saturating_add(d).min(i64::MAX as u64))
}

/// A stored bigint read back as the u64 it was written from (a client id bit for bit).
fn from_sql(value: i64) -> u64 {
    value as u64
}

/// The node's clock in Unix milliseconds (0 before 1970).
fn now_ms() -> u64 {
    crate::tls::unix_ms(std::time::SystemTime::now())
}
