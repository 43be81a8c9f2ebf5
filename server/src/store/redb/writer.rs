//! The single writer thread and its group commit.
//!
//! Every write is a [`Request`] sent over a bounded channel with a oneshot for its answer. The
//! thread waits for one request, then takes whatever else is already queued (up to
//! [`MAX_BATCH`] requests and [`MAX_BATCH_BYTES`] of message text), applies them in order in
//! ONE write transaction and commits with full durability (fsync). So the fsync cost is shared
//! by everything that queued while the previous commit was in flight: the busier the store, the
//! larger each batch.
//!
//! Completion. A committed batch's completion calls the commit hook ONCE with the batch's newly
//! appended messages (in commit order), and only then answers each request. When more requests
//! are already waiting, the completion goes to a second thread, the completer, which runs the
//! completions batch after batch in commit order while the writer applies and commits the next
//! batch (on a busy store the hook's fan-out and the wake-ups of every requester would
//! otherwise hold up the next fsync). When nothing waits and the completer has nothing left,
//! the writer runs the completion itself: at light load (a batch of one message per commit) the
//! handoff would only add a thread wake-up per commit, and nothing is held up. Nobody hears
//! "done" (nor sees a message through the hook) before its commit is durable. At most
//! [`COMPLETIONS_QUEUED`] committed batches wait for the completer; then the writer waits too.
//! Readers may see a batch's data before its completion has run: the hub orders live messages
//! by seq, so that is harmless.
//!
//! The clock. Timestamps never go below one handed out before, across restarts too: the `meta`
//! table holds a ceiling ([`CLOCK_AHEAD_MS`] past the time it was written) that no timestamp
//! handed out exceeds, and it is rewritten only once the wall clock passes it, so most commits
//! leave `meta` untouched (every table a commit touches costs it pages to copy, checksum and
//! write). After a restart within that margin, timestamps start at the ceiling.
//!
//! Failures inside a batch. redb's savepoints cannot be taken once a transaction has touched a
//! table, so requests are not isolated by savepoints; instead each operation checks everything
//! that can refuse it (name taken, no such room) BEFORE its first write, and such a refusal
//! ([`StoreError::is_rejection`]) answers that one request while the batch goes on. Requests
//! later in the batch see the writes of earlier ones (two sign-ups of one name in one batch: the
//! second is refused). Any other error (I/O, a corrupt record, a failed commit) may strike after
//! a partial write, so it aborts the whole transaction and every request of the batch gets that
//! error; the thread then carries on with the next batch. Nothing here panics.
//!
//! Deletions. After a batch that deleted a message (or while an earlier erasure is still owed),
//! the writer erases the old bodies from the file's free pages ([`super::scrub`]) before taking
//! the next batch; the deletions' answers wait for that (their hook calls do not), the other
//! requests of the batch are answered at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{SyncSender, sync_channel};
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use quibble_protocol::wire::{ChatMessage, ConversationId, UserId};
use redb::{Database, Durability};
use tokio::sync::{mpsc, oneshot};

use super::append_tables::{AppendOnly, AppendTables};
use super::batch_appends::{BatchAppends, Known};
use super::scrub::Scrubber;
use super::tables::{META_CLOCK_MS, WriteTables};
use super::{Actor, Ban, IpBan, Role, RoleChange, Unbanned, bans, ip_bans};
use super::{
    Added, Appended, CommitHook, Counters, Cursors, Deletion, Removed, Room, StoreError, User,
    accounts, cursors, friends, last_seen, membership, messages, notify, rooms,
};
use super::{Blocked, blocks, retention};
use crate::auth::TokenHash;
use crate::store::retention::{Retained, Retention};

/// The most requests applied in one transaction: everything the request queue can hold
/// (`QUEUE_CAPACITY`), so a full queue is one batch and one fsync.
const MAX_BATCH: usize = super::QUEUE_CAPACITY;
/// A batch stops growing once its messages' text reaches this many bytes, so a batch (and each
/// committed batch waiting for the completer, which holds its messages twice: for the hook and
/// in the answers) stays a few MiB whatever the bodies' size.
const MAX_BATCH_BYTES: usize = 4 << 20;
/// Committed batches that may wait for the completer before the writer waits for it.
const COMPLETIONS_QUEUED: usize = 2;
/// How far ahead of the wall clock the stored clock ceiling is set (see the module doc).
const CLOCK_AHEAD_MS: u64 = 1_000;

/// Where a request's answer goes.
pub(super) type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// A write for the writer thread, with the channel for its answer.
pub(super) enum Request {
    CreateUser {
        username: String,
        password_phc: String,
        reply: Reply<User>,
    },
    CreateSession {
        token: TokenHash,
        user: UserId,
        expires_at_ms: u64,
        /// For a login: the password it verified, which must still be the account's.
        verified_phc: Option<String>,
        reply: Reply<()>,
    },
    DeleteSession {
        token: TokenHash,
        reply: Reply<bool>,
    },
    CreateRoom {
        name: String,
        created_by: UserId,
        reply: Reply<Room>,
    },
    Append {
        draft: messages::Draft,
        reply: Reply<Appended>,
    },
    JoinRoom {
        user: UserId,
        room: ConversationId,
        reply: Reply<bool>,
    },
    LeaveRoom {
        user: UserId,
        room: ConversationId,
        reply: Reply<bool>,
    },
    AdvanceCursors {
        user: UserId,
        conversation: ConversationId,
        wanted: Cursors,
        reply: Reply<Cursors>,
    },
    AddFriend {
        user: UserId,
        other: UserId,
        reply: Reply<Added>,
    },
    RemoveFriend {
        user: UserId,
        other: UserId,
        reply: Reply<Removed>,
    },
    RecordLastSeen {
        user: UserId,
        at_ms: u64,
        reply: Reply<()>,
    },
    DeleteMessage {
        conversation: ConversationId,
        seq: u64,
        /// The admin deleting someone else's message (audited).
        moderator: Option<Actor>,
        reply: Reply<Deletion>,
    },
    Block {
        blocker: UserId,
        blocked: UserId,
        reply: Reply<Blocked>,
    },
    SetRetention {
        actor: Actor,
        room: ConversationId,
        retention: Retention,
        reply: Reply<()>,
    },
    /// One retention step: its tombstones go the way of a deletion's.
    Retain {
        room: ConversationId,
        now_ms: u64,
        limit: usize,
        reply: Reply<Retained>,
    },
    Unblock {
        blocker: UserId,
        blocked: UserId,
        reply: Reply<bool>,
    },
    // Moderation and accounts (roles, bans, IP bans, passwords).
    SetRole {
        actor: Actor,
        username: String,
        role: Role,
        reply: Reply<RoleChange>,
    },
    BanUser {
        actor: Actor,
        username: String,
        reason: String,
        duration_ms: Option<u64>,
        reply: Reply<Ban>,
    },
    UnbanUser {
        actor: Actor,
        username: String,
        reply: Reply<Unbanned>,
    },
    AddIpBan {
        actor: Actor,
        network: ipnet::IpNet,
        reason: String,
        duration_ms: Option<u64>,
        reply: Reply<IpBan>,
    },
    RemoveIpBan {
        actor: Actor,
        network: ipnet::IpNet,
        reply: Reply<bool>,
    },
    ChangePassword {
        user: UserId,
        verified_phc: String,
        new_phc: String,
        token: TokenHash,
        expires_at_ms: u64,
        reply: Reply<()>,
    },
}

impl Request {
    /// The bytes of text an append carries (author name and body), counted against
    /// [`MAX_BATCH_BYTES`]; other requests are small and count as 0.
    fn text_bytes(&self) -> usize {
        match self {
            Request::Append { draft, .. } => draft.author_name.len() + draft.body.len(),
            _ => 0,
        }
    }

    /// Answers the request with `error` without applying it.
    fn fail(self, error: StoreError) {
        // A requester that stopped waiting is no concern of the writer's.
        match self {
            Request::CreateUser { reply, .. } => drop(reply.send(Err(error))),
            Request::CreateSession { reply, .. } => drop(reply.send(Err(error))),
            Request::DeleteSession { reply, .. } => drop(reply.send(Err(error))),
            Request::CreateRoom { reply, .. } => drop(reply.send(Err(error))),
            Request::Append { reply, .. } => drop(reply.send(Err(error))),
            Request::JoinRoom { reply, .. } => drop(reply.send(Err(error))),
            Request::LeaveRoom { reply, .. } => drop(reply.send(Err(error))),
            Request::AdvanceCursors { reply, .. } => drop(reply.send(Err(error))),
            Request::AddFriend { reply, .. } => drop(reply.send(Err(error))),
            Request::RemoveFriend { reply, .. } => drop(reply.send(Err(error))),
            Request::RecordLastSeen { reply, .. } => drop(reply.send(Err(error))),
            Request::DeleteMessage { reply, .. } => drop(reply.send(Err(error))),
            Request::Block { reply, .. } => drop(reply.send(Err(error))),
            Request::SetRetention { reply, .. } => drop(reply.send(Err(error))),
            Request::Retain { reply, .. } => drop(reply.send(Err(error))),
            Request::Unblock { reply, .. } => drop(reply.send(Err(error))),
            Request::SetRole { reply, .. } => drop(reply.send(Err(error))),
            Request::BanUser { reply, .. } => drop(reply.send(Err(error))),
            Request::UnbanUser { reply, .. } => drop(reply.send(Err(error))),
            Request::AddIpBan { reply, .. } => drop(reply.send(Err(error))),
            Request::RemoveIpBan { reply, .. } => drop(reply.send(Err(error))),
            Request::ChangePassword { reply, .. } => drop(reply.send(Err(error))),
        }
    }
}

/// An applied request's answer, held until the batch's commit succeeds or fails: called with
/// `None` it sends the request's own result, with `Some(error)` it sends that error instead.
type Answer = Box<dyn FnOnce(Option<StoreError>) + Send>;

/// Starts the writer thread (and its completer); it runs until every sender of `requests` is
/// gone and the queue is drained, and returns once every answer is sent.
pub(super) fn spawn(
    db: Arc<Database>,
    requests: mpsc::Receiver<Request>,
    hook: CommitHook,
    clock_ms: u64,
    scrubber: Scrubber,
    counters: Arc<Counters>,
) -> Result<JoinHandle<()>, StoreError> {
    let hook = Arc::new(hook);
    let (completions, completed) = sync_channel::<Completion>(COMPLETIONS_QUEUED);
    let outstanding = Arc::new(AtomicUsize::new(0));
    let completer = {
        let hook = Arc::clone(&hook);
        let outstanding = Arc::clone(&outstanding);
        std::thread::Builder::new()
            .name("quibble-store-completer".into())
            .spawn(move || {
                for completion in completed {
                    completion.run(&hook);
                    // Release: the writer that reads 0 sees everything this completion did.
                    outstanding.fetch_sub(1, Ordering::Release);
                }
            })
            .map_err(|e| StoreError::Db(format!("cannot start the completer thread: {e}")))?
    };
    let writer = Writer {
        db,
        hook,
        clock_ms,
        clock_ceiling: clock_ms,
        scrubber,
        counters,
        completions,
        outstanding,
        known: Known::default(),
    };
    std::thread::Builder::new()
        .name("quibble-store-writer".into())
        .spawn(move || {
            writer.run(requests);
            if completer.join().is_err() {
                tracing::error!("the store completer thread panicked");
            }
        })
        .map_err(|e| StoreError::Db(format!("cannot start the writer thread: {e}")))
}

/// What is left to do for a batch once its commit is over, done by the completer in order:
/// the hook sees `appended` (in order), then each request is answered, with `failure` if given
/// (the batch failed and `appended` is empty, or the deletions' erasure failed).
struct Completion {
    appended: Vec<ChatMessage>,
    answers: Vec<Answer>,
    failure: Option<StoreError>,
}

impl Completion {
    fn run(self, hook: &CommitHook) {
        if !self.appended.is_empty() {
            notify(hook, &self.appended);
        }
        for answer in self.answers {
            answer(self.failure.clone());
        }
    }
}

struct Writer {
    db: Arc<Database>,
    /// Shared with the completer; called here only if the completer is gone.
    hook: Arc<CommitHook>,
    /// The latest timestamp handed out; timestamps never go below it.
    clock_ms: u64,
    /// The clock ceiling stored in `meta` by the last commit that wrote one.
    clock_ceiling: u64,
    /// Erases deleted bodies from free pages; knows whether that is owed.
    scrubber: Scrubber,
    counters: Arc<Counters>,
    /// The way to the completer; dropped (ending it) when the writer ends.
    completions: SyncSender<Completion>,
    /// Completions handed to the completer that it has not finished yet.
    outstanding: Arc<AtomicUsize>,
    /// Conversations known to exist, so appends need not read `rooms` and `dms`.
    known: Known,
}

impl Writer {
    fn run(mut self, mut requests: mpsc::Receiver<Request>) {
        // An erasure interrupted by a stop or crash.
        if self.scrubber.owed
            && let Err(error) = self.scrubber.scrub(&self.db)
        {
            tracing::error!(%error, "cannot erase deleted messages from the store file");
        }
        while let Some(first) = requests.blocking_recv() {
            let mut batch = Vec::with_capacity(MAX_BATCH.min(requests.len() + 1));
            let mut bytes = first.text_bytes();
            batch.push(first);
            while batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
                match requests.try_recv() {
                    Ok(request) => {
                        bytes += request.text_bytes();
                        batch.push(request);
                    }
                    Err(_) => break,
                }
            }
            self.run_batch(batch, &requests);
        }
    }

    /// Applies and commits one batch, and completes it (see [`Writer::complete`]).
    fn run_batch(&mut self, batch: Vec<Request>, requests: &mpsc::Receiver<Request>) {
        let now_ms = self.tick();
        let append_only = batch.iter().all(|r| matches!(r, Request::Append { .. }));
        let mut queue = batch.into_iter();
        let mut answers = Vec::with_capacity(queue.len());
        let mut appended = Vec::new();
        let mut deletions = Vec::new();
        let batch = Outcomes {
            answers: &mut answers,
            appended: &mut appended,
            deletions: &mut deletions,
        };
        match self.write(&mut queue, append_only, now_ms, batch) {
            Ok(()) => {
                let completion = Completion {
                    appended,
                    answers,
                    failure: None,
                };
                self.complete(completion, requests.is_empty());
                self.scrub_if_owed(deletions);
            }
            Err(error) => {
                tracing::error!(%error, "store write batch failed");
                answers.extend(deletions);
                let completion = Completion {
                    appended: Vec::new(),
                    answers,
                    failure: Some(error.clone()),
                };
                self.complete(completion, requests.is_empty());
                for request in queue {
                    request.fail(error.clone());
                }
            }
        }
    }

    /// Runs `completion` here when no request waits (`idle`) and the completer has finished
    /// every earlier one (so commit order holds); otherwise hands it to the completer (waiting
    /// while it is behind), or does it here should the completer be gone.
    fn complete(&self, completion: Completion, idle: bool) {
        // Acquire: pairs with the completer's Release, so its completions are all done.
        if idle && self.outstanding.load(Ordering::Acquire) == 0 {
            completion.run(&self.hook);
            return;
        }
        self.outstanding.fetch_add(1, Ordering::Relaxed);
        if let Err(returned) = self.completions.send(completion) {
            self.outstanding.fetch_sub(1, Ordering::Relaxed);
            returned.0.run(&self.hook);
        }
    }

    /// Erases deleted bodies from free pages if that is owed, then answers `deletions` (with
    /// the erasure's error if it failed; see `Scrubber::due` for when it is tried again).
    fn scrub_if_owed(&mut self, deletions: Vec<Answer>) {
        let failure = if self.scrubber.due(!deletions.is_empty()) {
            let failure = self.scrubber.scrub(&self.db).err();
            if let Some(error) = &failure {
                tracing::error!(%error, "cannot erase deleted messages from the store file");
            }
            failure
        } else {
            None
        };
        if !deletions.is_empty() {
            let completion = Completion {
                appended: Vec::new(),
                answers: deletions,
                failure,
            };
            self.complete(completion, false);
        }
    }

    /// Applies the requests of `queue` in one transaction and commits it; a batch of appends
    /// only (`append_only`) opens only the tables they use ([`AppendOnly`]). Appends keep their
    /// heads and cursors in memory until the next other request or the commit
    /// ([`BatchAppends`]). On error the transaction is dropped (aborted); the requests not yet
    /// taken from `queue` stay there.
    fn write(
        &mut self,
        queue: &mut impl Iterator<Item = Request>,
        append_only: bool,
        now_ms: u64,
        mut batch: Outcomes<'_>,
    ) -> Result<(), StoreError> {
        let started = std::time::Instant::now();
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        let ceiling = (now_ms > self.clock_ceiling).then(|| now_ms.saturating_add(CLOCK_AHEAD_MS));
        let mut appends = BatchAppends::new(std::mem::take(&mut self.known));
        if append_only {
            let mut tables = AppendOnly::open(&txn)?;
            if let Some(ceiling) = ceiling {
                tables.meta()?.insert(META_CLOCK_MS, ceiling)?;
            }
            for request in queue.by_ref() {
                let fatal = match request {
                    Request::Append { draft, reply } => {
                        apply_append(&mut tables, &mut appends, now_ms, draft, reply, &mut batch)
                    }
                    // Not in an append-only batch (see `run_batch`); refused, not applied.
                    other => {
                        other.fail(StoreError::Db("not an append".into()));
                        None
                    }
                };
                if let Some(fatal) = fatal {
                    return Err(fatal);
                }
            }
            appends.flush(&mut tables)?;
        } else {
            let mut tables = WriteTables::open(&txn)?;
            if let Some(ceiling) = ceiling {
                tables.meta.insert(META_CLOCK_MS, ceiling)?;
            }
            for request in queue.by_ref() {
                if !matches!(request, Request::Append { .. })
                    && let Err(fatal) = appends.flush(&mut tables)
                {
                    request.fail(fatal.clone());
                    return Err(fatal);
                }
                if let Some(fatal) = apply(&mut tables, &mut appends, now_ms, request, &mut batch) {
                    return Err(fatal);
                }
            }
            appends.flush(&mut tables)?;
        }
        txn.commit()?;
        crate::metrics::commit_latency(started.elapsed());
        self.known = appends.committed();
        if let Some(ceiling) = ceiling {
            self.clock_ceiling = ceiling;
        }
        let deleted = batch.appended.iter().filter(|m| m.is_deleted()).count();
        if deleted > 0 {
            self.scrubber.owed = true;
        }
        self.counters.committed(
            batch.answers.len() + batch.deletions.len(),
            batch.appended.len() - deleted,
        );
        Ok(())
    }

    /// The timestamp for the next batch: the wall clock, but never earlier than the last one.
    fn tick(&mut self) -> u64 {
        let wall_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        self.clock_ms = self.clock_ms.max(wall_ms);
        self.clock_ms
    }
}

/// What applying a batch's requests produced, for after its commit.
struct Outcomes<'a> {
    /// Answers to send once the commit is durable.
    answers: &'a mut Vec<Answer>,
    /// For the commit hook, in order: new messages, and deleted ones' tombstones.
    appended: &'a mut Vec<ChatMessage>,
    /// Answers to deletions, sent once the deleted bodies are erased from free pages.
    deletions: &'a mut Vec<Answer>,
}

/// Applies one request, queueing its answer and what the hook must see in `batch`. Returns the
/// error that must abort the whole batch, if any.
fn apply(
    tables: &mut WriteTables<'_>,
    appends: &mut BatchAppends,
    now_ms: u64,
    request: Request,
    batch: &mut Outcomes<'_>,
) -> Option<StoreError> {
    let answers = &mut *batch.answers;
    let appended = &mut *batch.appended;
    match request {
        Request::CreateUser {
            username,
            password_phc,
            reply,
        } => settle(
            reply,
            accounts::create_user(tables, now_ms, &username, &password_phc),
            answers,
        ),
        Request::CreateSession {
            token,
            user,
            expires_at_ms,
            verified_phc,
            reply,
        } => settle(
            reply,
            accounts::create_session(
                tables,
                now_ms,
                token,
                user,
                expires_at_ms,
                verified_phc.as_deref(),
            ),
            answers,
        ),
        Request::DeleteSession { token, reply } => {
            settle(reply, accounts::delete_session(tables, token), answers)
        }
        Request::CreateRoom {
            name,
            created_by,
            reply,
        } => settle(
            reply,
            rooms::create_room(tables, now_ms, &name, created_by),
            answers,
        ),
        Request::Append { draft, reply } => {
            apply_append(tables, appends, now_ms, draft, reply, batch)
        }
        Request::JoinRoom { user, room, reply } => settle(
            reply,
            membership::join_room(tables, now_ms, user, room),
            answers,
        ),
        Request::LeaveRoom { user, room, reply } => {
            settle(reply, membership::leave_room(tables, user, room), answers)
        }
        Request::AdvanceCursors {
            user,
            conversation,
            wanted,
            reply,
        } => settle(
            reply,
            cursors::advance(tables, user, conversation, wanted),
            answers,
        ),
        Request::AddFriend { user, other, reply } => {
            settle(reply, friends::add(tables, now_ms, user, other), answers)
        }
        Request::RemoveFriend { user, other, reply } => {
            settle(reply, friends::remove(tables, user, other), answers)
        }
        Request::RecordLastSeen { user, at_ms, reply } => {
            settle(reply, last_seen::record(tables, user, at_ms), answers)
        }
        Request::DeleteMessage {
            conversation,
            seq,
            moderator,
            reply,
        } => {
            let result = messages::delete(tables, now_ms, conversation, seq, moderator);
            if let Ok(done) = &result
                && done.changed
            {
                appended.push(done.tombstone.clone());
            }
            settle(reply, result, batch.deletions)
        }
        Request::SetRetention {
            actor,
            room,
            retention,
            reply,
        } => settle(
            reply,
            retention::set(tables, now_ms, actor, room, retention),
            answers,
        ),
        Request::Retain {
            room,
            now_ms: rule_now_ms,
            limit,
            reply,
        } => {
            let result = retention::retain(tables, now_ms, room, rule_now_ms, limit);
            match &result {
                // Answered after the scrub, as deletions are.
                Ok(done) if !done.tombstones.is_empty() => {
                    appended.extend(done.tombstones.iter().cloned());
                    settle(reply, result, batch.deletions)
                }
                _ => settle(reply, result, answers),
            }
        }
        Request::Block {
            blocker,
            blocked,
            reply,
        } => settle(
            reply,
            blocks::block(tables, now_ms, blocker, blocked),
            answers,
        ),
        Request::Unblock {
            blocker,
            blocked,
            reply,
        } => settle(reply, blocks::unblock(tables, blocker, blocked), answers),
        Request::SetRole {
            actor,
            username,
            role,
            reply,
        } => settle(
            reply,
            accounts::set_role(tables, now_ms, actor, &username, role),
            answers,
        ),
        Request::BanUser {
            actor,
            username,
            reason,
            duration_ms,
            reply,
        } => settle(
            reply,
            bans::ban(tables, now_ms, actor, &username, &reason, duration_ms),
            answers,
        ),
        Request::UnbanUser {
            actor,
            username,
            reply,
        } => settle(
            reply,
            bans::unban(tables, now_ms, actor, &username),
            answers,
        ),
        Request::AddIpBan {
            actor,
            network,
            reason,
            duration_ms,
            reply,
        } => settle(
            reply,
            ip_bans::add(tables, now_ms, actor, network, &reason, duration_ms),
            answers,
        ),
        Request::RemoveIpBan {
            actor,
            network,
            reply,
        } => settle(
            reply,
            ip_bans::remove(tables, now_ms, actor, network),
            answers,
        ),
        Request::ChangePassword {
            user,
            verified_phc,
            new_phc,
            token,
            expires_at_ms,
            reply,
        } => settle(
            reply,
            accounts::change_password(
                tables,
                now_ms,
                user,
                &verified_phc,
                &new_phc,
                token,
                expires_at_ms,
            ),
            answers,
        ),
    }
}

/// Applies one append (in a mixed or an append-only batch), queueing its answer and, if it is
/// new, its message for the hook. Returns the error that must abort the whole batch, if any.
fn apply_append<'t>(
    tables: &mut impl AppendTables<'t>,
    appends: &mut BatchAppends,
    now_ms: u64,
    draft: messages::Draft,
    reply: Reply<Appended>,
    batch: &mut Outcomes<'_>,
) -> Option<StoreError> {
    let result = messages::append(tables, appends, now_ms, draft);
    if let Ok(done) = &result
        && !done.duplicate
    {
        batch.appended.push(done.message.clone());
    }
    settle(reply, result, batch.answers)
}

/// Queues the answer `result` for `reply`; returns the error if it must abort the batch.
fn settle<T: Send + 'static>(
    reply: Reply<T>,
    result: Result<T, StoreError>,
    answers: &mut Vec<Answer>,
) -> Option<StoreError> {
    let fatal = match &result {
        Err(error) if !error.is_rejection() => Some(error.clone()),
        _ => None,
    };
    answers.push(Box::new(move |failure| {
        // A requester that stopped waiting is no concern of the writer's.
        drop(reply.send(match failure {
            Some(error) => Err(error),
            None => result,
        }));
    }));
    fatal
}
