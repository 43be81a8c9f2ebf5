//! The append writer: one task per node that group-commits appends into PostgreSQL.
//!
//! Appends queue on a bounded channel with a oneshot for their answer. The task waits for one,
//! takes whatever else is already queued (up to [`MAX_BATCH`]), and appends them all in ONE
//! transaction: it locks the conversations' rows in id order (so writers on different nodes
//! never deadlock, and each conversation's seqs are handed out by one writer at a time), looks
//! up every `(conversation, author, client id)` already stored in one statement, inserts the
//! new messages in one statement and moves the heads in one more. The commit is synchronous, so
//! the cost of waiting for the WAL's fsync is shared by the whole batch; the busier the node,
//! the larger its batches.
//!
//! Completion: after the commit the hook sees the batch's new messages (in seq order per
//! conversation), then each append hears back. The hook's order lock ([`Hook::order`]) is held
//! from before the commit until then, so a deletion's tombstone never reaches the hook before
//! the message it deletes. Nobody hears "done", nor sees a message through the hook, before its
//! commit is durable.
//!
//! Failures: an append to a conversation that does not exist is refused alone while its batch
//! goes on (checked before anything is written). Any other error (the database gone, a
//! statement timeout, a failed commit) answers every append of the batch with it and changes
//! nothing; the task carries on with the next batch on a fresh connection. A commit whose
//! answer was lost (the link broke after COMMIT was sent) may have happened: the client's
//! retry with the same client id then gets the stored message back, not a second copy.

use std::collections::HashMap;
use std::sync::Arc;

use deadpool_postgres::Pool;
use quibble_protocol::wire::ChatMessage;
use tokio::sync::{mpsc, oneshot};

use super::errors::db_error;
use super::messages::{Draft, to_message};
use super::{Hook, StoreError, connection, from_sql, now_ms, to_sql};
use crate::store::{Appended, Counters, notify};

/// The most appends in one transaction: everything the queue can hold, as the embedded
/// engine, so a full queue is one commit.
const MAX_BATCH: usize = super::QUEUE_CAPACITY;

/// An append for the writer, with the channel for its answer.
pub(super) struct Append {
    pub draft: Draft,
    pub reply: oneshot::Sender<Result<Appended, StoreError>>,
}

/// Runs until every sender is gone and the queue is drained.
pub(super) async fn run(
    pool: Pool,
    mut queue: mpsc::Receiver<Append>,
    hook: Arc<Hook>,
    counters: Arc<Counters>,
) {
    let mut batch = Vec::new();
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let drafts: Vec<&Draft> = batch.iter().map(|append| &append.draft).collect();
        let order = hook.order.lock().await;
        match commit(&pool, &drafts).await {
            Ok(outcomes) => {
                let appended: Vec<ChatMessage> = outcomes
                    .iter()
                    .filter_map(|outcome| match outcome {
                        Ok(a) if !a.duplicate => Some(a.message.clone()),
                        _ => None,
                    })
                    .collect();
                counters.committed(batch.len(), appended.len());
                if !appended.is_empty() {
                    notify(&hook.call, &appended);
                }
                drop(order);
                for (append, outcome) in batch.drain(..).zip(outcomes) {
                    // The appender may have stopped waiting; its message is stored all the same.
                    let _ = append.reply.send(outcome);
                }
            }
            Err(error) => {
                drop(order);
                tracing::warn!(%error, appends = batch.len(), "an append batch failed");
                for append in batch.drain(..) {
                    let _ = append.reply.send(Err(error.clone()));
                }
            }
        }
    }
}

/// Appends `drafts` in one transaction; the outer error fails them all, an inner one refuses
/// one draft.
async fn commit(
    pool: &Pool,
    drafts: &[&Draft],
) -> Result<Vec<Result<Appended, StoreError>>, StoreError> {
    let mut client = connection(pool).await?;
    let txn = client.transaction().await.map_err(db_error)?;

    let mut ids: Vec<i64> = drafts.iter().map(|d| to_sql(d.conversation.0)).collect();
    ids.sort_unstable();
    ids.dedup();
    // (head, last message time) of each conversation that exists, locked until the commit.
    let mut heads: HashMap<u64, (u64, u64)> = txn
        .query(
            "SELECT id, head, last_at_ms FROM conversations
             WHERE id = ANY($1) ORDER BY id FOR UPDATE",
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
                to_sql(d.client_id),
            )
        })
        .collect();
    let mut stored: HashMap<(u64, u64, u64), ChatMessage> = txn
        .query(
            "SELECT m.conversation_id, m.seq, m.author, m.author_name, m.client_id,
                    m.sent_at_ms, m.body, m.deleted_at_ms
             FROM messages m
             JOIN unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS k(c, a, id)
               ON m.conversation_id = k.c AND m.author = k.a AND m.client_id = k.id",
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
        "INSERT INTO messages
             (conversation_id, seq, author, author_name, client_id, sent_at_ms, body)
         SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::text[],
                              $5::bigint[], $6::bigint[], $7::text[])",
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
        "UPDATE conversations c SET head = v.head, last_at_ms = v.at
         FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS v(id, head, at)
         WHERE c.id = v.id AND c.head < v.head",
        &[&ids, &new_heads, &last_ats],
    )
    .await
    .map_err(db_error)?;
    txn.commit().await.map_err(db_error)?;
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
        self.client_ids.push(to_sql(message.client_id));
        self.sent_at.push(to_sql(message.sent_at_ms));
        self.bodies.push(message.body.clone());
    }

    fn is_empty(&self) -> bool {
        self.seqs.is_empty()
    }
}
