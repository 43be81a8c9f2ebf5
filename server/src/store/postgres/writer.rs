//! The writer: one task per node that group-commits appends (and receipt cursor advances, so
//! they see the appends queued before them) into PostgreSQL.
//!
//! Requests queue on a bounded channel with a oneshot for their answer. The task waits for one,
//! takes whatever else is already queued (up to [`MAX_BATCH`] requests and [`MAX_BATCH_BYTES`]
//! of message text), and applies them all in ONE
//! transaction: it locks the conversations' rows in id order (so writers on different nodes
//! never deadlock, and each conversation's seqs are handed out by one writer at a time), looks
//! up every `(conversation, author, client id)` already stored in one statement, inserts the
//! new messages in one statement and moves the heads in one more. The commit is synchronous, so
//! the cost of waiting for the WAL's fsync is shared by the whole batch; the busier the node,
//! the larger its batches.
//!
//! Cursor rows are written last, in one upsert in (user, conversation) order. Every writer takes
//! conversation rows first, then cursor rows, each in key order, so no two nodes' batches wait
//! on each other in a cycle.
//!
//! Completion: after the commit the hook sees the batch's new messages (in seq order per
//! conversation), then each append hears back. The hook's order lock ([`Hook::order`]) is taken
//! right before the commit and held until then, so a deletion's tombstone never reaches the
//! hook before the message it deletes. Nobody hears "done", nor sees a message through the hook, before its
//! commit is durable.
//!
//! Failures: an append to a conversation that does not exist is refused alone while its batch
//! goes on (checked before anything is written). Any other error (the database gone, a
//! statement timeout, a failed commit) answers every append of the batch with it and changes
//! nothing; the task carries on with the next batch. A batch has [`BATCH_DEADLINE`] from
//! taking a connection to its commit's answer. A commit whose answer was lost (the link broke
//! after COMMIT was sent, or the deadline passed) may have happened: the writer asks, on a fresh
//! connection, whether the batch's first new message is stored, and if so completes the batch
//! as committed (hook, then answers). If it cannot tell, the batch is answered with the error;
//! the client's retry with the same client id then gets the stored message back, not a second
//! copy (its live fan-out was missed then: members see it when they next resume).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Pool, Transaction as PooledTransaction};
use quibble_protocol::wire::{ChatMessage, ConversationId, UserId};
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::Statement;

use super::cursors::to_cursors;
use super::errors::db_error;
use super::messages::{Draft, to_message};
use super::{Hook, StoreError, bits_to_sql, connection, from_sql, now_ms, to_sql};
use crate::store::{Appended, Counters, Cursors, notify};

/// The most appends in one transaction: everything the queue can hold, as the embedded
/// engine, so a full queue is one commit.
const MAX_BATCH: usize = super::QUEUE_CAPACITY;
/// A batch stops growing once its messages' text reaches this many bytes (as the embedded
/// engine's), so a batch, and what it copies, stays a few MiB whatever the bodies' size.
const MAX_BATCH_BYTES: usize = 4 << 20;
/// The longest a batch may take from taking a connection to its commit's answer; past it the
/// batch's requests are answered with an error (retryable) instead of waiting on a database
/// that stopped answering.
const BATCH_DEADLINE: Duration = Duration::from_secs(15);
/// How long the writer asks whether a batch whose commit answer was lost was stored.
const RESOLVE_DEADLINE: Duration = Duration::from_secs(5);

/// A write for the writer, with the channel for its answer: an append, or a cursor advance
/// (which goes through the writer so that it sees the appends queued before it, as on the
/// embedded engine, whose one writer applies every request in queue order).
pub(super) enum Request {
    Append {
        draft: Draft,
        reply: oneshot::Sender<Result<Appended, StoreError>>,
    },
    Cursors {
        advance: Advance,
        reply: oneshot::Sender<Result<Cursors, StoreError>>,
    },
}

/// A cursor advance: `user`'s cursors in `conversation` move up to these (clamped to the head).
pub(super) struct Advance {
    pub user: UserId,
    pub conversation: ConversationId,
    pub delivered: u64,
    pub read: u64,
}

impl Request {
    /// The message text it carries (what a batch's size is counted in).
    fn text_len(&self) -> usize {
        match self {
            Request::Append { draft, .. } => draft.author_name.len() + draft.body.len(),
            Request::Cursors { .. } => 0,
        }
    }
}

/// One cursor change of a batch, in queue order.
enum CursorStep<'b> {
    /// An author's own new message: their cursors move onto it when it comes right after their
    /// read cursor (an author has read their own message; see `cursors`).
    Own(&'b ChatMessage),
    /// A receipt's advance.
    Advance(&'b Advance),
}

/// The outcome of one request of a batch.
enum Outcome {
    Append(Result<Appended, StoreError>),
    Cursors(Result<Cursors, StoreError>),
}

/// Runs until every sender is gone and the queue is drained.
pub(super) async fn run(
    pool: Pool,
    mut queue: mpsc::Receiver<Request>,
    hook: Arc<Hook>,
    counters: Arc<Counters>,
) {
    let mut batch = Vec::new();
    while let Some(first) = queue.recv().await {
        // Whatever else is queued, until the batch's text reaches MAX_BATCH_BYTES.
        let mut bytes = first.text_len();
        batch.push(first);
        while batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
            let Ok(request) = queue.try_recv() else { break };
            bytes += request.text_len();
            batch.push(request);
        }
        // What the batch answers, kept outside the attempt: set right before COMMIT is sent, so
        // a commit whose answer is lost (an error or the deadline after that point) can be
        // looked up and, if it happened, completed like any other.
        let mut sent = None;
        let started = std::time::Instant::now();
        let attempt = commit(&pool, &batch, &hook.order, &mut sent);
        let committed = match tokio::time::timeout(BATCH_DEADLINE, attempt).await {
            Ok(Ok(order)) => Ok(order),
            Ok(Err(error)) => Err(error),
            Err(_) => Err(StoreError::Db(format!(
                "the database did not commit a batch within {BATCH_DEADLINE:?}"
            ))),
        };
        let completed = match (committed, sent) {
            (Ok(order), Some(outcomes)) => Ok((outcomes, order)),
            (Err(error), Some(outcomes)) if happened(&pool, &outcomes).await => {
                tracing::warn!(%error, "a batch's commit answer was lost, but it is stored");
                Ok((outcomes, hook.order.lock().await))
            }
            (Ok(_), None) => Err(StoreError::Closed),
            (Err(error), _) => Err(error),
        };
        match completed {
            Ok((outcomes, order)) => {
                let appended: Vec<ChatMessage> = outcomes
                    .iter()
                    .filter_map(|outcome| match outcome {
                        Outcome::Append(Ok(a)) if !a.duplicate => Some(a.message.clone()),
                        _ => None,
                    })
                    .collect();
                crate::metrics::commit_latency(started.elapsed());
                counters.committed(batch.len(), appended.len());
                if !appended.is_empty() {
                    notify(&hook.call, &appended);
                }
                drop(order);
                // A requester may have stopped waiting; what it asked for is stored all the same.
                for (request, outcome) in batch.drain(..).zip(outcomes) {
                    match (request, outcome) {
                        (Request::Append { reply, .. }, Outcome::Append(outcome)) => {
                            let _ = reply.send(outcome);
                        }
                        (Request::Cursors { reply, .. }, Outcome::Cursors(outcome)) => {
                            let _ = reply.send(outcome);
                        }
                        // Outcomes are made in the requests' order and kind; a mismatch would be a
                        // bug here, and its requester hears that the store is closed.
                        _ => tracing::error!("a write outcome did not match its request"),
                    }
                }
            }
            Err(error) => {
                tracing::warn!(%error, requests = batch.len(), "a write batch failed");
                for request in batch.drain(..) {
                    match request {
                        Request::Append { reply, .. } => drop(reply.send(Err(error.clone()))),
                        Request::Cursors { reply, .. } => drop(reply.send(Err(error.clone()))),
                    }
                }
            }
        }
    }
}

/// Whether a batch whose commit answer was lost was committed: it was if its first new message
/// is stored (a batch commits whole or not at all). A batch without new messages counts as not
/// committed (its cursor advances are answered with the error; a retry changes nothing twice).
/// Asked on a fresh connection within [`RESOLVE_DEADLINE`]; no answer counts as not committed.
async fn happened(pool: &Pool, outcomes: &[Outcome]) -> bool {
    let Some(first) = outcomes.iter().find_map(|outcome| match outcome {
        Outcome::Append(Ok(a)) if !a.duplicate => Some(&a.message),
        _ => None,
    }) else {
        return false;
    };
    let ask = async {
        let client = connection(pool).await.ok()?;
        client
            .query_opt(
                "SELECT 1 FROM messages WHERE conversation_id = $1 AND seq = $2
                 AND author = $3 AND client_id = $4",
                &[
                    &to_sql(first.conversation.0),
                    &to_sql(first.seq),
                    &to_sql(first.author.0),
                    &bits_to_sql(first.client_id),
                ],
            )
            .await
            .ok()
    };
    matches!(
        tokio::time::timeout(RESOLVE_DEADLINE, ask).await,
        Ok(Some(Some(_)))
    )
}

/// Applies `batch` in one transaction; the outer error fails it all, an inner one refuses one
/// request. The appends first, then every cursor change in queue order (an advance is clamped
/// to the head the whole batch made).
///
/// The hook's order lock is taken right before COMMIT and handed back held, so the hook sees
/// this batch before any deletion committed after it (see `Hook::order`), while deletions are
/// not kept waiting for the batch's statements.
async fn commit<'o>(
    pool: &Pool,
    batch: &[Request],
    order: &'o tokio::sync::Mutex<()>,
    sent: &mut Option<Vec<Outcome>>,
) -> Result<tokio::sync::MutexGuard<'o, ()>, StoreError> {
    let mut client = connection(pool).await?;
    let txn = client.transaction().await.map_err(db_error)?;
    let drafts: Vec<&Draft> = batch
        .iter()
        .filter_map(|request| match request {
            Request::Append { draft, .. } => Some(draft),
            Request::Cursors { .. } => None,
        })
        .collect();
    let appended = append(&txn, &drafts).await?;
    // The cursor steps in queue order: an author's own new message, or an advance.
    let mut new_messages = appended.iter();
    let steps: Vec<CursorStep> = batch
        .iter()
        .filter_map(|request| match request {
            Request::Append { .. } => match new_messages.next() {
                Some(Ok(a)) if !a.duplicate => Some(CursorStep::Own(&a.message)),
                _ => None,
            },
            Request::Cursors { advance, .. } => Some(CursorStep::Advance(advance)),
        })
        .collect();
    let mut advanced = write_cursors(&txn, &steps).await?.into_iter();
    let mut appended = appended.into_iter();
    let outcomes = batch
        .iter()
        .map(|request| match request {
            Request::Append { .. } => {
                Outcome::Append(appended.next().unwrap_or(Err(StoreError::Closed)))
            }
            Request::Cursors { .. } => {
                Outcome::Cursors(advanced.next().unwrap_or(Err(StoreError::Closed)))
            }
        })
        .collect();
    let order = order.lock().await;
    *sent = Some(outcomes);
    txn.commit().await.map_err(db_error)?;
    Ok(order)
}

/// Appends `drafts` in `txn`, one outcome per draft (an error refuses that draft alone).
async fn append(
    txn: &PooledTransaction<'_>,
    drafts: &[&Draft],
) -> Result<Vec<Result<Appended, StoreError>>, StoreError> {
    if drafts.is_empty() {
        return Ok(Vec::new());
    }
    let mut ids: Vec<i64> = drafts.iter().map(|d| to_sql(d.conversation.0)).collect();
    ids.sort_unstable();
    ids.dedup();
    // (head, last message time) of each conversation that exists, locked until the commit.
    let mut heads: HashMap<u64, (u64, u64)> = txn
        .query(
            &prepared(
                txn,
                "SELECT id, head, last_at_ms FROM conversations
             WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE",
            )
            .await?,
            &[&ids],
        )
        .await
        .map_err(db_error)?
        .iter()
        .map(|row| {
            (
                from_sql(row.get(0)),
                (from_sql(row.get(1)), from_sql(row.get(2))),
            )
        })
        .collect();

    // What is stored already under the drafts' client ids (read after the locks, so a
    // concurrent append of the same id on another node has committed or not begun).
    let (conversations, authors, client_ids): (Vec<i64>, Vec<i64>, Vec<i64>) = drafts
        .iter()
        .map(|d| {
            (
                to_sql(d.conversation.0),
                to_sql(d.author.0),
                bits_to_sql(d.client_id),
            )
        })
        .collect();
    let mut stored: HashMap<(u64, u64, u64), ChatMessage> = txn
        .query(
            &prepared(
                txn,
                "SELECT m.conversation_id, m.seq, m.author, m.author_name, m.client_id,
                    m.sent_at_ms, m.body, m.deleted_at_ms
             FROM messages m
             JOIN unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS k(c, a, id)
               ON m.conversation_id = k.c AND m.author = k.a AND m.client_id = k.id",
            )
            .await?,
            &[&conversations, &authors, &client_ids],
        )
        .await
        .map_err(db_error)?
        .iter()
        .map(|row| {
            let message = to_message(row);
            let key = (
                from_sql(row.get(0)),
                from_sql(row.get(2)),
                from_sql(row.get(4)),
            );
            (key, message)
        })
        .collect();

    let now = now_ms();
    let mut outcomes = Vec::with_capacity(drafts.len());
    let mut rows = NewRows::default();
    for draft in drafts {
        let key = (draft.conversation.0, draft.author.0, draft.client_id);
        if let Some(message) = stored.get(&key) {
            outcomes.push(Ok(Appended {
                message: message.clone(),
                duplicate: true,
            }));
            continue;
        }
        let Some((head, last_at)) = heads.get_mut(&draft.conversation.0) else {
            outcomes.push(Err(StoreError::NotFound));
            continue;
        };
        let seq = head.checked_add(1).ok_or_else(|| {
            StoreError::Corrupt(format!(
                "conversation {} is out of seqs",
                draft.conversation.0
            ))
        })?;
        *head = seq;
        *last_at = now.max(*last_at);
        let message = ChatMessage {
            conversation: draft.conversation,
            seq,
            author: draft.author,
            author_name: draft.author_name.clone(),
            client_id: draft.client_id,
            sent_at_ms: *last_at,
            body: draft.body.clone(),
        };
        rows.push(&message);
        stored.insert(key, message.clone());
        outcomes.push(Ok(Appended {
            message,
            duplicate: false,
        }));
    }
    if rows.is_empty() {
        return Ok(outcomes);
    }
    txn.execute(
        &prepared(
            txn,
            "INSERT INTO messages
             (conversation_id, seq, author, author_name, client_id, sent_at_ms, body)
         SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::text[],
                              $5::bigint[], $6::bigint[], $7::text[])",
        )
        .await?,
        &[
            &rows.conversations,
            &rows.seqs,
            &rows.authors,
            &rows.author_names,
            &rows.client_ids,
            &rows.sent_at,
            &rows.bodies,
        ],
    )
    .await
    .map_err(db_error)?;
    let (ids, (new_heads, last_ats)): (Vec<i64>, (Vec<i64>, Vec<i64>)) = heads
        .iter()
        .map(|(id, (head, at))| (to_sql(*id), (to_sql(*head), to_sql(*at))))
        .unzip();
    txn.execute(
        &prepared(
            txn,
            "UPDATE conversations c SET head = v.head, last_at_ms = v.at
         FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS v(id, head, at)
         WHERE c.id = v.id AND c.head < v.head",
        )
        .await?,
        &[&ids, &new_heads, &last_ats],
    )
    .await
    .map_err(db_error)?;
    Ok(outcomes)
}

/// The new messages of a batch, column by column, for one `INSERT … SELECT unnest(…)`.
#[derive(Default)]
struct NewRows {
    conversations: Vec<i64>,
    seqs: Vec<i64>,
    authors: Vec<i64>,
    author_names: Vec<String>,
    client_ids: Vec<i64>,
    sent_at: Vec<i64>,
    bodies: Vec<String>,
}

impl NewRows {
    fn push(&mut self, message: &ChatMessage) {
        self.conversations.push(to_sql(message.conversation.0));
        self.seqs.push(to_sql(message.seq));
        self.authors.push(to_sql(message.author.0));
        self.author_names.push(message.author_name.clone());
        self.client_ids.push(bits_to_sql(message.client_id));
        self.sent_at.push(to_sql(message.sent_at_ms));
        self.bodies.push(message.body.clone());
    }

    fn is_empty(&self) -> bool {
        self.seqs.is_empty()
    }
}

/// Writes the batch's cursor changes in `txn`, in queue order: an author's cursors move onto
/// their own message when it comes right after their read cursor; an advance is clamped to its
/// conversation's head (as the batch's appends left it), never moves backwards, and keeps
/// delivered at or above read; one outcome per advance. Everything is folded per (user,
/// conversation) and written in ONE upsert in key order, so two nodes' writers take cursor rows
/// in the same order and cannot deadlock.
async fn write_cursors(
    txn: &PooledTransaction<'_>,
    steps: &[CursorStep<'_>],
) -> Result<Vec<Result<Cursors, StoreError>>, StoreError> {
    if steps.is_empty() {
        return Ok(Vec::new());
    }
    let (users, conversations): (Vec<i64>, Vec<i64>) = steps
        .iter()
        .map(|step| match step {
            CursorStep::Own(m) => (to_sql(m.author.0), to_sql(m.conversation.0)),
            CursorStep::Advance(a) => (to_sql(a.user.0), to_sql(a.conversation.0)),
        })
        .unzip();
    let heads: HashMap<u64, u64> = txn
        .query(
            &prepared(txn, "SELECT id, head FROM conversations WHERE id = ANY($1)").await?,
            &[&conversations],
        )
        .await
        .map_err(db_error)?
        .iter()
        .map(|row| (from_sql(row.get(0)), from_sql(row.get(1))))
        .collect();
    let mut current: HashMap<(u64, u64), Cursors> = txn
        .query(
            &prepared(
                txn,
                "SELECT c.user_id, c.conversation_id, c.delivered, c.read FROM cursors c
             JOIN (SELECT DISTINCT * FROM unnest($1::bigint[], $2::bigint[])) AS k(u, c)
               ON c.user_id = k.u AND c.conversation_id = k.c",
            )
            .await?,
            &[&users, &conversations],
        )
        .await
        .map_err(db_error)?
        .iter()
        .map(|row| {
            (
                (from_sql(row.get(0)), from_sql(row.get(1))),
                to_cursors(row.get(2), row.get(3)),
            )
        })
        .collect();
    let mut changed: BTreeMap<(u64, u64), Cursors> = BTreeMap::new();
    let mut outcomes = Vec::new();
    for step in steps {
        let advance = match step {
            CursorStep::Own(message) => {
                let key = (message.author.0, message.conversation.0);
                let old = current.get(&key).copied().unwrap_or_default();
                if old.read + 1 == message.seq {
                    let new = Cursors {
                        delivered: old.delivered.max(message.seq),
                        read: message.seq,
                    };
                    current.insert(key, new);
                    changed.insert(key, new);
                }
                continue;
            }
            CursorStep::Advance(advance) => advance,
        };
        let Some(&head) = heads.get(&advance.conversation.0) else {
            outcomes.push(Err(StoreError::NotFound));
            continue;
        };
        let key = (advance.user.0, advance.conversation.0);
        let old = current.get(&key).copied().unwrap_or_default();
        let read = old.read.max(advance.read.min(head));
        let delivered = old.delivered.max(advance.delivered.min(head)).max(read);
        let new = Cursors { delivered, read };
        if new != old {
            current.insert(key, new);
            changed.insert(key, new);
        }
        outcomes.push(Ok(new));
    }
    if !changed.is_empty() {
        let mut columns: (Vec<i64>, Vec<i64>, Vec<i64>, Vec<i64>) = Default::default();
        for ((user, conversation), cursors) in &changed {
            columns.0.push(to_sql(*user));
            columns.1.push(to_sql(*conversation));
            columns.2.push(to_sql(cursors.delivered));
            columns.3.push(to_sql(cursors.read));
        }
        txn.execute(
            &prepared(
                txn,
                "INSERT INTO cursors (user_id, conversation_id, delivered, read)
             SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[])
             ON CONFLICT (user_id, conversation_id) DO UPDATE
             SET delivered = GREATEST(cursors.delivered, EXCLUDED.delivered),
                 read = GREATEST(cursors.read, EXCLUDED.read)",
            )
            .await?,
            &[&columns.0, &columns.1, &columns.2, &columns.3],
        )
        .await
        .map_err(db_error)?;
    }
    Ok(outcomes)
}

/// `sql` prepared once per pooled connection and reused (each batch runs the same few
/// statements: unprepared, every one was a parse-and-plan round trip before its execution).
async fn prepared(txn: &PooledTransaction<'_>, sql: &str) -> Result<Statement, StoreError> {
    txn.prepare_cached(sql).await.map_err(db_error)
}
