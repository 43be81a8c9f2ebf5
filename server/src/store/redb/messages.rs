//! Message history: appending (seq assignment per conversation, starting at 1, and
//! de-duplication on `(author, conversation, client id)`), the head seq, paging forwards
//! and backwards through `(conversation, seq)`, and deletion.
//!
//! Deletion replaces the stored record with its tombstone ([`ChatMessage::tombstone`]: author,
//! name and time kept, client id 0, body erased), so seqs stay contiguous and every later read
//! (replay, history, the conversation list's last message) carries the tombstone; nothing else
//! in the store holds a body or its preview (summaries read the last message's record). The
//! deletion is also recorded in the deletions index `(conversation, seq) → deleted at`, which a
//! resumed join reads for deletions at or before its resume point ([`Redb::deletions_up_to`]).
//! The old body is then erased from the file's free pages ([`super::scrub`]).

use std::ops::Bound;

use quibble_protocol::wire::{ChatMessage, ConversationId, UserId};
use redb::{ReadTransaction, ReadableTable};

use super::append_tables::AppendTables;
use super::audit::{self, Actor, AuditAction};
use super::batch_appends::BatchAppends;
use super::records::{MessageRecord, decode, encode, encode_into};
use super::tables::{DELETIONS, HEADS, MESSAGES, META_SCRUB_OWED, WriteTables};
use super::writer::Request;
use super::{Pending, Redb, StoreError};

/// The outcome of [`Redb::append`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// The durable message: the new one, or for a duplicate the one stored the first time.
    pub message: ChatMessage,
    /// Whether `(author, conversation, client_id)` had been appended before, so nothing new was
    /// stored.
    pub duplicate: bool,
}

impl Redb {
    pub async fn append(
        &self,
        conversation: ConversationId,
        author: UserId,
        author_name: &str,
        client_id: u64,
        body: &str,
    ) -> Result<Appended, StoreError> {
        self.queue_append(conversation, author, author_name, client_id, body)
            .await?
            .await
    }

    pub async fn queue_append(
        &self,
        conversation: ConversationId,
        author: UserId,
        author_name: &str,
        client_id: u64,
        body: &str,
    ) -> Result<Pending<Appended>, StoreError> {
        let author_name = author_name.to_owned();
        let body = body.to_owned();
        let draft = Draft {
            conversation,
            author,
            author_name,
            client_id,
            body,
        };
        self.submit(|reply| Request::Append { draft, reply }).await
    }

    pub async fn head(&self, conversation: ConversationId) -> Result<u64, StoreError> {
        self.read(move |txn| read_head(txn, conversation)).await
    }

    pub async fn heads(
        &self,
        conversations: Vec<ConversationId>,
    ) -> Result<Vec<(ConversationId, u64)>, StoreError> {
        self.read(move |txn| {
            conversations
                .into_iter()
                .map(|conversation| Ok((conversation, read_head(txn, conversation)?)))
                .collect()
        })
        .await
    }

    pub async fn messages_after(
        &self,
        conversation: ConversationId,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<ChatMessage>, StoreError> {
        self.read(move |txn| read_messages_after(txn, conversation, after_seq, limit))
            .await
    }

    pub async fn messages_before(
        &self,
        conversation: ConversationId,
        before_seq: u64,
        limit: usize,
    ) -> Result<Vec<ChatMessage>, StoreError> {
        self.read(move |txn| {
            let messages = txn.open_table(MESSAGES)?;
            let range = messages.range((conversation.0, 0)..(conversation.0, before_seq))?;
            let mut page = range
                .rev()
                .take(limit)
                .map(|entry| {
                    let (key, bytes) = entry?;
                    let (conversation, seq) = key.value();
                    to_message(ConversationId(conversation), seq, bytes.value())
                })
                .collect::<Result<Vec<_>, _>>()?;
            page.reverse();
            Ok(page)
        })
        .await
    }
}

/// The outcome of [`Redb::delete_message`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deletion {
    /// The tombstone now stored.
    pub tombstone: ChatMessage,
    /// Whether this call deleted it (false: it was deleted before).
    pub changed: bool,
}

impl Redb {
    pub async fn message(
        &self,
        conversation: ConversationId,
        seq: u64,
    ) -> Result<Option<ChatMessage>, StoreError> {
        self.read(move |txn| {
            let messages = txn.open_table(MESSAGES)?;
            messages
                .get((conversation.0, seq))?
                .map(|bytes| to_message(conversation, seq, bytes.value()))
                .transpose()
        })
        .await
    }

    pub async fn delete_message(
        &self,
        conversation: ConversationId,
        seq: u64,
        moderator: Option<Actor>,
    ) -> Result<Deletion, StoreError> {
        self.request(|reply| Request::DeleteMessage {
            conversation,
            seq,
            moderator,
            reply,
        })
        .await
    }

    pub async fn deletions_up_to(
        &self,
        conversation: ConversationId,
        up_to: u64,
        window: u64,
        limit: usize,
    ) -> Result<Vec<u64>, StoreError> {
        self.read(move |txn| {
            let deletions = txn.open_table(DELETIONS)?;
            let from = up_to.saturating_sub(window);
            let mut seqs = deletions
                .range((
                    Bound::Excluded((conversation.0, from)),
                    Bound::Included((conversation.0, up_to)),
                ))?
                .rev()
                .take(limit)
                .map(|entry| Ok(entry?.0.value().1))
                .collect::<Result<Vec<u64>, StoreError>>()?;
            seqs.reverse();
            Ok(seqs)
        })
        .await
    }
}

/// Writer side of [`Redb::delete_message`]; refuses (no such message) before writing.
pub(super) fn delete(
    tables: &mut WriteTables<'_>,
    now_ms: u64,
    conversation: ConversationId,
    seq: u64,
    moderator: Option<Actor>,
) -> Result<Deletion, StoreError> {
    let message = match tables.messages.get((conversation.0, seq))? {
        Some(bytes) => to_message(conversation, seq, bytes.value())?,
        None => return Err(StoreError::NotFound),
    };
    let tombstone = message.tombstone();
    if message.is_deleted() {
        return Ok(Deletion {
            tombstone,
            changed: false,
        });
    }
    if let Some(actor) = moderator {
        // First, since it may still refuse (an actor no longer admin) before anything is written.
        audit::record(
            tables,
            now_ms,
            actor,
            AuditAction::DeleteMessage,
            &format!("{}/{seq}", conversation.0),
            None,
        )?;
    }
    let record = encode(&MessageRecord {
        author: tombstone.author.0,
        author_name: tombstone.author_name.as_str(),
        client_id: tombstone.client_id,
        sent_at_ms: tombstone.sent_at_ms,
        body: tombstone.body.as_str(),
    })?;
    tables
        .messages
        .insert((conversation.0, seq), record.as_slice())?;
    tables.deletions.insert((conversation.0, seq), now_ms)?;
    tables.meta.insert(META_SCRUB_OWED, 1)?;
    Ok(Deletion {
        tombstone,
        changed: true,
    })
}

/// A message to append, as its author sent it.
pub(super) struct Draft {
    pub conversation: ConversationId,
    pub author: UserId,
    pub author_name: String,
    pub client_id: u64,
    pub body: String,
}

/// Writer side of [`Redb::append`]; refuses before writing anything. The draft's name and
/// body become the returned message.
pub(super) fn append<'t>(
    tables: &mut impl AppendTables<'t>,
    appends: &mut BatchAppends,
    now_ms: u64,
    draft: Draft,
) -> Result<Appended, StoreError> {
    let Draft {
        conversation,
        author,
        author_name,
        client_id,
        body,
    } = draft;
    let original = tables
        .client_ids()
        .get((author.0, conversation.0, client_id))?
        .map(|seq| seq.value());
    if let Some(original_seq) = original {
        let bytes = tables
            .messages()
            .get((conversation.0, original_seq))?
            .ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "client id {client_id} of user {} names missing message {original_seq} of \
                     conversation {}",
                    author.0, conversation.0
                ))
            })?;
        let message = to_message(conversation, original_seq, bytes.value())?;
        return Ok(Appended {
            message,
            duplicate: true,
        });
    }
    if !appends.exists(tables, conversation)? {
        return Err(StoreError::NotFound);
    }
    let head = appends.head(tables, conversation)?;
    let seq = head.checked_add(1).ok_or_else(|| {
        StoreError::Corrupt(format!("conversation {} is out of seqs", conversation.0))
    })?;
    let record = MessageRecord {
        author: author.0,
        author_name: author_name.as_str(),
        client_id,
        sent_at_ms: now_ms,
        body: body.as_str(),
    };
    // Sized for the record up front (two strings and four varints), so encoding never regrows.
    let record = encode_into(&record, author_name.len() + body.len() + 48)?;
    tables
        .messages()
        .insert((conversation.0, seq), record.as_slice())?;
    tables
        .client_ids()
        .insert((author.0, conversation.0, client_id), seq)?;
    appends.appended(tables, author, conversation, seq)?;
    Ok(Appended {
        message: ChatMessage {
            conversation,
            seq,
            author,
            author_name,
            client_id,
            sent_at_ms: now_ms,
            body,
        },
        duplicate: false,
    })
}

/// Decodes the message stored under `(conversation, seq)`.
fn to_message(
    conversation: ConversationId,
    seq: u64,
    bytes: &[u8],
) -> Result<ChatMessage, StoreError> {
    let record: MessageRecord<String> = decode("messages", bytes)?;
    Ok(ChatMessage {
        conversation,
        seq,
        author: UserId(record.author),
        author_name: record.author_name,
        client_id: record.client_id,
        sent_at_ms: record.sent_at_ms,
        body: record.body,
    })
}

/// When the message stored as `bytes` under `(conversation, seq)` was sent.
pub(super) fn sent_at_ms(
    conversation: ConversationId,
    seq: u64,
    bytes: &[u8],
) -> Result<u64, StoreError> {
    Ok(to_message(conversation, seq, bytes)?.sent_at_ms)
}

/// The head seq of `conversation` (0 if it has no messages), in a read transaction.
pub(super) fn read_head(
    txn: &ReadTransaction,
    conversation: ConversationId,
) -> Result<u64, StoreError> {
    let head = txn.open_table(HEADS)?.get(conversation.0)?;
    Ok(head.map_or(0, |seq| seq.value()))
}

/// Up to `limit` messages of `conversation` with seq > `after_seq`, ascending, in a read
/// transaction.
pub(super) fn read_messages_after(
    txn: &ReadTransaction,
    conversation: ConversationId,
    after_seq: u64,
    limit: usize,
) -> Result<Vec<ChatMessage>, StoreError> {
    let messages = txn.open_table(MESSAGES)?;
    let range = messages.range((
        Bound::Excluded((conversation.0, after_seq)),
        Bound::Included((conversation.0, u64::MAX)),
    ))?;
    range
        .take(limit)
        .map(|entry| {
            let (key, bytes) = entry?;
            let (conversation, seq) = key.value();
            to_message(ConversationId(conversation), seq, bytes.value())
        })
        .collect()
}
