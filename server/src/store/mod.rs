//! The store: everything durable — users and sessions, rooms and membership, message history,
//! receipts, friends and DMs, blocks, moderation and its audit log — behind one handle,
//! [`Store`], whatever engine holds it.
//!
//! Engines: [`redb`] (embedded, one file; the single machine's default) and [`postgres`] (the
//! fleet's: any number of nodes on one PostgreSQL database, `--postgres URL`). The rest of the
//! server sees only [`Store`] and the engine-neutral records and errors re-exported here; each
//! engine keeps its own layout, transactions and write path, and guarantees what each method's
//! doc says (durable before it answers; seqs per conversation gap-free and increasing; a
//! resent `(author, client_id)` answered with the original; refusals change nothing).
//!
//! Design: [`Store`] is an enum of engines dispatched with a `match` per method, not a trait
//! object: no allocation or indirect call per store call on the send path, and a method whose
//! engines disagree in shape fails to compile rather than at run time. The [`conformance`]
//! suite is written once against [`Store`] and run on both engines.

mod commit_counts;
#[cfg(test)]
mod conformance;
mod postgres;
mod redb;
pub mod retention;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use ipnet::IpNet;
use quibble_protocol::wire::{ChatMessage, ConversationId, UserId};
use tokio::sync::oneshot;

use crate::auth::TokenHash;

pub use self::redb::{
    Actor, Added, Appended, AuditAction, AuditEntry, AuditPage, Ban, BlockEntry, Blocked,
    ConversationKind, Cursors, Deletion, FriendEntry, FriendState, IpBan, JoinView, LastMessage,
    MAX_BLOCKS, MAX_CONCURRENT_READS, MAX_FRIEND_ENTRIES, MAX_IP_BANS, MAX_MEMBERSHIPS,
    MemberCursors, OPERATOR, PREVIEW_CHARS, Removed, Role, RoleChange, Room, RoomEntry, RoomPage,
    Summary, UNREAD_SCAN, Unbanned, User, WelcomeView,
};
pub use commit_counts::CommitCounts;
use commit_counts::Counters;
pub use retention::{MAX_RETAIN_BATCH, Retained, Retention};

/// A write the writer has queued; resolves once it is committed (or failed).
pub struct Pending<T>(oneshot::Receiver<Result<T, StoreError>>);

impl<T> std::future::Future for Pending<T> {
    type Output = Result<T, StoreError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0)
            .poll(cx)
            .map(|answer| answer.unwrap_or(Err(StoreError::Closed)))
    }
}

/// The most sessions one user keeps: making another first drops their expired sessions, then
/// those that expire soonest (so the sessions tables stay bounded by the accounts).
pub const MAX_SESSIONS_PER_USER: usize = 100;

/// Called once per committed batch with what it appended, in commit order: each newly appended
/// message, and each deletion as the message's tombstone ([`ChatMessage::is_deleted`]; a real
/// message never has an empty body); after the commit is durable and before the requesters hear
/// back (see [`Redb::open`]). Never called with an empty slice.
pub type CommitHook = Box<dyn Fn(&[ChatMessage]) + Send + Sync>;

/// Passes one batch's committed messages to the hook, which must not take the store down (a
/// panic loses the rest of that call's live fan-out: the hub then finds a gap in a stream's
/// seqs and has it resume from the store).
pub(crate) fn notify(hook: &CommitHook, messages: &[ChatMessage]) {
    if catch_unwind(AssertUnwindSafe(|| hook(messages))).is_err() {
        tracing::error!(
            messages = messages.len(),
            first_seq = messages.first().map(|m| m.seq),
            "the store commit hook panicked"
        );
    }
}

/// Errors of the store. Cloneable, so one failed commit can answer every request of its batch.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The (case-insensitive) username or room name is already in use.
    #[error("name taken")]
    NameTaken,
    /// The conversation (or other referenced record) does not exist.
    #[error("not found")]
    NotFound,
    /// A per-user cap (conversations joined, friends and requests) is reached.
    #[error("too many {0}")]
    TooMany(&'static str),
    /// The store no longer accepts writes (closed, or its writer thread is gone).
    #[error("store closed")]
    Closed,
    /// One of the two users blocks the other, so no friendship or request may stand between
    /// them (see `blocks`); deliberately says nothing more.
    #[error("not allowed")]
    Blocked,
    /// redb failed (I/O, full disk, lock held by another process, …).
    #[error("database error: {0}")]
    Db(String),
    /// A record could not be encoded, or a stored record could not be decoded.
    #[error("record encoding error: {0}")]
    Codec(String),
    /// The tables contradict each other or miss something that must exist.
    #[error("store is inconsistent: {0}")]
    Corrupt(String),
    /// The file was written with a schema this server does not know (typically by a newer
    /// server); it is left untouched.
    #[error(
        "store schema version {found} is not supported: this server reads version {supported}; \
         a file from a newer server needs that server or newer"
    )]
    Schema { found: u64, supported: u64 },
    /// The user is banned (no new session).
    #[error("banned: {reason}")]
    Banned {
        reason: String,
        until_ms: Option<u64>,
    },
    /// The target of a ban is an admin (demote first).
    #[error("the target is an admin")]
    TargetIsAdmin,
    /// The acting user is not (or no longer) an admin.
    #[error("not an admin")]
    NotAdmin,
    /// The password verified by the caller is no longer the account's.
    #[error("the password changed")]
    PasswordChanged,
    /// Another process (a running server) has the file open.
    #[error("the store is open in another process (a running server?)")]
    InUse,
}

impl StoreError {
    /// Whether this is a refusal of one request, decided before that request wrote anything,
    /// rather than a failure of the whole write transaction.
    fn is_rejection(&self) -> bool {
        matches!(
            self,
            StoreError::NameTaken
                | StoreError::NotFound
                | StoreError::TooMany(_)
                | StoreError::Blocked
        ) || matches!(
            self,
            StoreError::Banned { .. }
                | StoreError::TargetIsAdmin
                | StoreError::NotAdmin
                | StoreError::PasswordChanged
        )
    }
}

/// A handle to the store; clones share one engine (one database, one writer).
#[derive(Clone)]
pub struct Store {
    engine: Engine,
}

/// The engine behind a [`Store`].
#[derive(Clone)]
enum Engine {
    Redb(self::redb::Redb),
    Postgres(self::postgres::Postgres),
}

impl Store {
    /// Opens (creating if needed) the embedded store: the redb file at `path` with a page cache
    /// of at most `cache_bytes`, and its writer thread.
    ///
    /// `on_commit` is called after each commit is durable, once per commit with its newly
    /// appended messages (in seq order per conversation) and deletions (the tombstones), in
    /// commit order, BEFORE the requesters' futures complete; keep it short and non-blocking.
    /// A panic in it is caught and logged.
    ///
    /// A file of an older schema version is migrated (in one transaction: all or nothing); a
    /// file of a newer or unknown version is refused with [`StoreError::Schema`] and left
    /// untouched.
    pub fn open(
        path: &Path,
        cache_bytes: usize,
        on_commit: CommitHook,
    ) -> Result<Store, StoreError> {
        Ok(Store {
            engine: Engine::Redb(self::redb::Redb::open(path, cache_bytes, on_commit)?),
        })
    }

    /// Connects to the fleet's store: the PostgreSQL database at `url`, whose schema is
    /// migrated to this server's version (refused with [`StoreError::Schema`] if a newer
    /// server migrated it). `on_commit` is called as [`Store::open`] says, for the appends this
    /// node commits.
    pub async fn connect_postgres(url: &str, on_commit: CommitHook) -> Result<Store, StoreError> {
        Ok(Store {
            engine: Engine::Postgres(self::postgres::Postgres::connect(url, on_commit).await?),
        })
    }

    /// The store's epoch: a random non-zero number made when the store was created, stable
    /// across reopening. Resume cursors from another epoch are void.
    pub fn epoch(&self) -> u64 {
        match &self.engine {
            Engine::Redb(s) => s.epoch(),
            Engine::Postgres(s) => s.epoch(),
        }
    }

    /// The engine's name, as `/healthz` reports it: `redb` or `postgres`.
    pub fn engine(&self) -> &'static str {
        match &self.engine {
            Engine::Redb(_) => "redb",
            Engine::Postgres(_) => "postgres",
        }
    }

    /// Whether the store can take writes now, answered within a couple of seconds: the
    /// embedded engine while its writer runs; PostgreSQL while a pooled connection answers.
    pub async fn check(&self) -> Result<(), StoreError> {
        match &self.engine {
            Engine::Redb(s) => s.check(),
            Engine::Postgres(s) => s.check().await,
        }
    }

    /// What the writer has committed since the store was opened.
    pub fn commit_counts(&self) -> CommitCounts {
        match &self.engine {
            Engine::Redb(s) => s.commit_counts(),
            Engine::Postgres(s) => s.commit_counts(),
        }
    }

    /// Stop accepting writes, finish queued ones, commit, and stop the writer.
    ///
    /// Writes after (or racing with) `close` fail with [`StoreError::Closed`]; reads keep
    /// working.
    pub async fn close(&self) {
        match &self.engine {
            Engine::Redb(s) => s.close().await,
            Engine::Postgres(s) => s.close().await,
        }
    }

    /// Creates an account, as a [`Role::User`]. [`StoreError::NameTaken`] if the username,
    /// compared case-insensitively, exists. The caller validates the username and hashes the
    /// password.
    pub async fn create_user(
        &self,
        username: &str,
        password_phc: String,
    ) -> Result<User, StoreError> {
        match &self.engine {
            Engine::Redb(s) => s.create_user(username, password_phc).await,
            Engine::Postgres(s) => s.create_user(username, password_phc).await,
        }
    }

    /// Records a session: `token` (a hash) belongs to `user` until `expires_at_ms`.
    /// [`StoreError::Banned`] while the user is banned; [`StoreError::NotFound`] without such a
    /// user.
    pub async fn create_session(
        &self,
        token: TokenHash,
        user: UserId,
        expires_at_ms: u64,
    ) -> Result<(), StoreError> {
        match &self.engine {
            Engine::Redb(s) => s.create_session(token, user, expires_at_ms).await,
            Engine::Postgres(s) => s.create_session(token, user, expires_at_ms).await,
        }
    }

    /// [`Store::create_session`] for a login that verified the password `verified_phc`:
    /// refused with [`StoreError::PasswordChanged`] if the account's password changed since.
    pub async fn create_login_session(
        &self,
        token: TokenHash,
        user: UserId,
        expires_at_ms: u64,
        verified_phc: String,
    ) -> Result<(), StoreError> {
        match &self.engine {
            Engine::Redb(s) => {
                s.create_login_session(token, user, expires_at_ms, verified_phc)
                    .await
            }
            Engine::Postgres(s) => {
                s.create_login_session(token, user, expires_at_ms, verified_phc)
                    .await
            }
        }
    }

    /// Sets the role of the user called `username` (compared case-insensitively), as `actor`,
    /// and audits a change. [`StoreError::NotFound`] without such a user,
    /// [`StoreError::NotAdmin`] if a user actor is no longer an admin.
    pub async fn set_role(
        &self,
        actor: Actor,
        username: &str,
        role: Role,
    ) -> Result<RoleChange, StoreError> {
        match &self.engine {
            Engine::Redb(s) => s.set_role(actor, username, role).await,
            Engine::Postgres(s) => s.set_role(actor, username, role).await,
        }
    }

    /// Replaces the password of `user`, whose current password the caller verified as
    /// `verified_phc`, with `new_phc`; revokes every session of the user and records `token`
    /// as their one new session until `expires_at_ms`. [`StoreError::PasswordChanged`] if the
    /// password changed since it was verified, [`StoreError::Banned`] if the user is banned
    /// (nothing is written).
    pub async fn change_password(
        &self,
        user: UserId,
        verified_phc: String,
        new_phc: String,
        token: TokenHash,
        expires_at_ms: u64,
    ) -> Result<(), StoreError> {
        match &self.engine {
            Engine::Redb(s) => {
                s.change_password(user, verified_phc, new_phc, token, expires_at_ms)
                    .await
            }
            Engine::Postgres(s) => {
                s.change_password(user, verified_phc, new_phc, token, expires_at_ms)
                    .await
            }
        }
    }

    /// Whether any user is an admin.
    pub async fn has_admin(&self) -> Result<bool, StoreError> {
        match &self.engine {
            Engine::Redb(s) => s.has_admin().await,
            Engine::Postgres(s) => s.has_admin().await,
        }
    }

    /// The hashes of every session token of `user` (expired ones included, until revoked).
    pub async fn sessions_of(&self, user: UserId) -> Result<Vec<TokenHash>, StoreError> {
        match &self.engine {
            Engine::Redb(s) => s.sessions_of(user).await,
            Engine::Postgres(s) => s.sessions_of(user).await,
        }
    }

    /// Revokes a session; whether it existed.
    pub async fn delete_session(&self, token: TokenHash) -> Result<bool, StoreError> {
        match &self.engine {
            Engine::Redb(s) => s.delete_session(token).await,
            Engine::Postgres(s) => s.delete_session(token).await,
        }
    }

    /// The user with id `id`.
    pub async fn user(&self, id: UserId) -> Result<Option<User>, StoreError> {
        match &self.engine {
            Engine::Redb(s) => s.user(id).await,
            Engine::Postgres(s) => s.user(id).await,
        }
    }

    /// The user called `username`, compared case-insensitively.
    pub async fn user_by_name(&self, username: &str) -> Result<Option<User>, StoreError> {
        match &self.engine {
            Engine::Redb(s) => s.user_by_name(username).await,
            Engine::Postgres(s) => s.user_by_name(username).await,
        }
    }

    /// The user a session token belongs to; `None` if there is no such session, it has expired
    /// (`expires_at_ms <= now_ms`), or its user is gone.
    pub async fn session_user(
        &self,
        token: &TokenHash,
        now_ms: u64,
    ) -> Result<Option<User>, StoreError> {
        match &self.engine {
            Engine::Redb(s) => s.session_user(token, now_ms).await,
            Engine::Postgres(s) => s.session_user(token, now_ms).await,
        }
    }

    /// Up to `limit` entries with ids below `before` (all, without it), newest first.
    pub async fn audit_page(
        &self,
        before: Option<u64>,
        limit: usize,
    ) -> Result<AuditPage, StoreError> {
        match &self.engine {
            Engine::Redb(s) => s.audit_page(before, limit).await,
            Engine::Postgres(s) => s.audit_page(before, limit).await,
        }
    }

    /// Bans the user called `username` as `actor`, for `duration_ms` (`None`: until lifted),
    /// replacing any earlier ban; revokes all their sessions and audits it. The caller checks
    /// the reason. [`StoreError::NotFound`] without such a user, [`StoreError::TargetIsAdmin`]
    /// for an admin, [`StoreError::NotAdmin`] if a user actor is no longer an admin.
    pub async fn ban_user(
        &self,
        actor: Actor,
        username: &str,
        reason: &str,
        duration_ms: Option<u64>,
    ) -> Result<Ban, StoreError> {
        match &self.engine {
            Engine::Redb(s) => s.ban_user(actor, username, reason, duration_ms).await,
            Engine::Postgres(s) => s.ban_user(actor, username, reason, duration_ms).await,
        }
    }

    /// Lifts the ban of the user called `username`, as `actor`; audited when a ban was active.
    pub async fn unban_user(&self, actor: Actor, username: &str) -> Result<Unbanned, StoreError> {
        match &self.engine {
            Engine::Redb(s) => s.unban_user(actor, username).await,
            Engine::Postgres(s) => s.unban_user(actor, username).await,
        }
    }

    /// The bans active at `now_ms`, by user id, at most `limit`.
    pub async fn active_bans(&self, now_ms: u64, limit: usize) -> Result<Vec<Ban>, StoreError> {
        match &self.engine {
            Engine::Redb(s) => s.active_bans(now_ms, limit).await,
            Engine::Postgres(s) => s.active_bans(now_ms, limit).await,
        }
    }

    /// The ban of `user` active at `now_ms`, if any.
    pub async fn ban_of(&self, user: UserId, now_ms: u64) -> Result<Option<Ban>, StoreError> {
        match &self.engine {
            Engine::Redb(s) => s.ban_of(user, now_ms).await,
            Engine::Postgres(s) => s.ban_of(user, now_ms).await,
        }
    }

    /// `blocker` blocks `blocked`, ending any friendship or request between them.
    /// [`StoreError::NotFound`] if `blocked` does not exist, [`StoreError::TooMany`] past
    /// [`MAX_BLOCKS`]. The caller refuses `blocker == blocked`.
    pub async fn block(&self, blocker: UserId, blocked: UserId) -> Result<Blocked, StoreError> {
        match &self.engine {
            Engine::Redb(s) => s.block(blocker, blocked).await,
            Engine::Postgres(s) => s.block(blocker, blocked).await,
        }
    }

    /// `blocker` stops blocking `blocked`; `Ok(false)` if they did not.
    pub async fn unblock(&self, blocker: UserId, blocked: UserId) -> Result<bool, StoreError> {
        match &self.engine {
            Engine::Redb(s) => s.unblock(blocker, blocked).await,
            Engine::Postgres(s) => s.unblock(blocker, blocked).await,
        }
    }

    /// Whether `blocker` blocks `blocked`.
    pub async fn blocks(&self, blocker: UserId, blocked: UserId) -> Result<bool, StoreError> {
        match &self.engine {
            Engine::Redb(s) => s.blocks(blocker, blocked).await,
            Engine::Postgres(s) => s.blocks(blocker, blocked).await,
        }
    }

    /// The users `blocker` blocks, ascending by id (at most [`MAX_BLOCKS`]).
    pub async fn blocked_users(&self, blocker: UserId) -> Result<Vec<UserId>, StoreError> {
        match &self.engine {
            Engine::Redb(s) => s.blocked_users(blocker).await,
            Engine::Postgres(s) => s.blocked_users(blocker).await,
        }
    }

    /// `blocker`'s block list with names, ascending by user id, read in one transaction.
    pub async fn block_list(&self, blocker: UserId) -> Result<Vec<BlockEntry>, StoreError> {
        match &self.engine {
            Engine::Redb(s) => s.block_list(blocker).await,
            Engine::Postgres(s) => s.block_list(blocker).await,
        }
    }

    /// Moves `user`'s cursors in `conversation` forwards to `delivered` and `read` (each
    /// clamped to the head, neither ever moving back) and returns the stored cursors.
    /// [`StoreError::NotFound`] if there is no such conversation. The caller checks access.
    pub async fn advance_cursors(
        &self,
        user: UserId,
        conversation: ConversationId,
        delivered: u64,
        read: u64,
    ) -> Result<Cursors, StoreError> {
        match &self.engine {
            Engine::Redb(s) => s.advance_cursors(user, conversation, delivered, read).await,
            Engine::Postgres(s) => s.advance_cursors(user, conversation, delivered, read).await,
        }
    }

    /// `user`'s cursors in `conversation` (zero when never reported).
    pub async fn cursors(
        &self,
        user: UserId,
        conversation: ConversationId,
    ) -> Result<Cursors, StoreError> {
        match &self.engine {
            Engine::Redb(s) => s.cursors(user, conversation).await,
            Engine::Postgres(s) => s.cursors(user, conversation).await,
        }
    }

    /// The cursors of up to `limit` members of `conversation` (in ascending user id order),
    /// read in one transaction.
    pub async fn member_cursors(
        &self,
        conversation: ConversationId,
        limit: usize,
    ) -> Result<Vec<MemberCursors>, StoreError> {
        match &self.engine {
            Engine::Redb(s) => s.member_cursors(conversation, limit).await,
            Engine::Postgres(s) => s.member_cursors(conversation, limit).await,
        }
    }

    /// `user` adds `other`: a request, or an acceptance if `other` asked first (which makes
    /// their DM on first friendship). [`StoreError::NotFound`] if `other` does not exist,
    /// [`StoreError::Blocked`] if either blocks the other, [`StoreError::TooMany`] if either
    /// has no room for another entry. The caller refuses
    /// `user == other`.
    pub async fn add_friend(&self, user: UserId, other: UserId) -> Result<Added, StoreError> {
        match &self.engine {
            Engine::Redb(s) => s.add_friend(user, other).await,
            Engine::Postgres(s) => s.add_friend(user, other).await,
        }
    }

    /// `user` removes `other`: declines, cancels or unfriends.
    pub async fn remove_friend(&self, user: UserId, other: UserId) -> Result<Removed, StoreError> {
        match &self.engine {
            Engine::Redb(s) => s.remove_friend(user, other).await,
            Engine::Postgres(s) => s.remove_friend(user, other).await,
        }
    }

    /// How `user` stands with `other`, if at all.
    pub async fn friend_state(
        &self,
        user: UserId,
        other: UserId,
    ) -> Result<Option<FriendState>, StoreError> {
        match &self.engine {
            Engine::Redb(s) => s.friend_state(user, other).await,
            Engine::Postgres(s) => s.friend_state(user, other).await,
        }
    }

    /// `user`'s friends and requests, in ascending user id order (at most
    /// [`MAX_FRIEND_ENTRIES`]), with names and DMs, read in one transaction.
    pub async fn friends(&self, user: UserId) -> Result<Vec<FriendEntry>, StoreError> {
        match &self.engine {
            Engine::Redb(s) => s.friends(user).await,
            Engine::Postgres(s) => s.friends(user).await,
        }
    }

    /// The DM conversation of `a` and `b`, if it was ever made.
    pub async fn dm_between(
        &self,
        a: UserId,
        b: UserId,
    ) -> Result<Option<ConversationId>, StoreError> {
        match &self.engine {
            Engine::Redb(s) => s.dm_between(a, b).await,
            Engine::Postgres(s) => s.dm_between(a, b).await,
        }
    }

    /// Bans `network` (made canonical) as `actor` for `duration_ms` (`None`: until removed),
    /// replacing an earlier ban of the same network; audited. The caller checks the reason.
    /// [`StoreError::TooMany`] when [`MAX_IP_BANS`] unexpired bans exist.
    pub async fn add_ip_ban(
        &self,
        actor: Actor,
        network: IpNet,
        reason: &str,
        duration_ms: Option<u64>,
    ) -> Result<IpBan, StoreError> {
        match &self.engine {
            Engine::Redb(s) => s.add_ip_ban(actor, network, reason, duration_ms).await,
            Engine::Postgres(s) => s.add_ip_ban(actor, network, reason, duration_ms).await,
        }
    }

    /// Removes the ban of `network` (made canonical), as `actor`; whether there was one
    /// (audited then).
    pub async fn remove_ip_ban(&self, actor: Actor, network: IpNet) -> Result<bool, StoreError> {
        match &self.engine {
            Engine::Redb(s) => s.remove_ip_ban(actor, network).await,
            Engine::Postgres(s) => s.remove_ip_ban(actor, network).await,
        }
    }

    /// Every IP ban active at `now_ms`, ordered by network text.
    pub async fn active_ip_bans(&self, now_ms: u64) -> Result<Vec<IpBan>, StoreError> {
        match &self.engine {
            Engine::Redb(s) => s.active_ip_bans(now_ms).await,
            Engine::Postgres(s) => s.active_ip_bans(now_ms).await,
        }
    }

    /// Records that `user` was last online at `at_ms` (an earlier time than the stored one
    /// changes nothing).
    pub async fn record_last_seen(&self, user: UserId, at_ms: u64) -> Result<(), StoreError> {
        match &self.engine {
            Engine::Redb(s) => s.record_last_seen(user, at_ms).await,
            Engine::Postgres(s) => s.record_last_seen(user, at_ms).await,
        }
    }

    /// When each of `users` was last online, for those ever recorded.
    pub async fn last_seen(&self, users: Vec<UserId>) -> Result<Vec<(UserId, u64)>, StoreError> {
        match &self.engine {
            Engine::Redb(s) => s.last_seen(users).await,
            Engine::Postgres(s) => s.last_seen(users).await,
        }
    }

    /// Puts `user` in the room `room`; `Ok(true)` if newly joined, `Ok(false)` if already in.
    /// [`StoreError::NotFound`] if there is no such room (a DM cannot be joined),
    /// [`StoreError::TooMany`] past [`MAX_MEMBERSHIPS`].
    pub async fn join_room(&self, user: UserId, room: ConversationId) -> Result<bool, StoreError> {
        match &self.engine {
            Engine::Redb(s) => s.join_room(user, room).await,
            Engine::Postgres(s) => s.join_room(user, room).await,
        }
    }

    /// Takes `user` out of the room `room`; `Ok(false)` if they were not in it.
    /// [`StoreError::NotFound`] if `room` is not a room (DMs cannot be left).
    pub async fn leave_room(&self, user: UserId, room: ConversationId) -> Result<bool, StoreError> {
        match &self.engine {
            Engine::Redb(s) => s.leave_room(user, room).await,
            Engine::Postgres(s) => s.leave_room(user, room).await,
        }
    }

    /// Whether `user` is in `conversation`.
    pub async fn is_member(
        &self,
        user: UserId,
        conversation: ConversationId,
    ) -> Result<bool, StoreError> {
        match &self.engine {
            Engine::Redb(s) => s.is_member(user, conversation).await,
            Engine::Postgres(s) => s.is_member(user, conversation).await,
        }
    }

    /// The conversations `user` is in, in ascending id order (at most [`MAX_MEMBERSHIPS`]).
    pub async fn memberships(&self, user: UserId) -> Result<Vec<ConversationId>, StoreError> {
        match &self.engine {
            Engine::Redb(s) => s.memberships(user).await,
            Engine::Postgres(s) => s.memberships(user).await,
        }
    }

    /// What `conversation` is, or `None` if there is no such conversation.
    pub async fn conversation_kind(
        &self,
        conversation: ConversationId,
    ) -> Result<Option<ConversationKind>, StoreError> {
        match &self.engine {
            Engine::Redb(s) => s.conversation_kind(conversation).await,
            Engine::Postgres(s) => s.conversation_kind(conversation).await,
        }
    }

    /// Appends a message to `conversation` with the next seq, and answers once it is durable
    /// (after the commit hook has seen it). [`StoreError::NotFound`] if there is no such
    /// conversation (room or DM). Whether the author may send there is the caller's question
    /// (`crate::access`).
    ///
    /// A repeat of an earlier `(author, conversation, client_id)` stores nothing, does not call
    /// the hook, and returns the original message with `duplicate: true`. The same client id
    /// in another conversation is a different message.
    pub async fn append(
        &self,
        conversation: ConversationId,
        author: UserId,
        author_name: &str,
        client_id: u64,
        body: &str,
    ) -> Result<Appended, StoreError> {
        match &self.engine {
            Engine::Redb(s) => {
                s.append(conversation, author, author_name, client_id, body)
                    .await
            }
            Engine::Postgres(s) => {
                s.append(conversation, author, author_name, client_id, body)
                    .await
            }
        }
    }

    /// Queue an append and return its commit to await later. Appends one caller queues are
    /// applied (and given seqs) in the order queued, so a sender can pipeline its messages.
    pub async fn queue_append(
        &self,
        conversation: ConversationId,
        author: UserId,
        author_name: &str,
        client_id: u64,
        body: &str,
    ) -> Result<Pending<Appended>, StoreError> {
        match &self.engine {
            Engine::Redb(s) => {
                s.queue_append(conversation, author, author_name, client_id, body)
                    .await
            }
            Engine::Postgres(s) => {
                s.queue_append(conversation, author, author_name, client_id, body)
                    .await
            }
        }
    }

    /// The highest seq of `conversation`; 0 when it has no messages.
    pub async fn head(&self, conversation: ConversationId) -> Result<u64, StoreError> {
        match &self.engine {
            Engine::Redb(s) => s.head(conversation).await,
            Engine::Postgres(s) => s.head(conversation).await,
        }
    }

    /// The highest seq of each of `conversations` (0 for one with no messages or unknown), in
    /// the order asked, read at one moment: what a fleet node compares its deliveries with.
    pub async fn heads(
        &self,
        conversations: Vec<ConversationId>,
    ) -> Result<Vec<(ConversationId, u64)>, StoreError> {
        match &self.engine {
            Engine::Redb(s) => s.heads(conversations).await,
            Engine::Postgres(s) => s.heads(conversations).await,
        }
    }

    /// Up to `limit` messages with seq > `after_seq`, ascending.
    pub async fn messages_after(
        &self,
        conversation: ConversationId,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<ChatMessage>, StoreError> {
        match &self.engine {
            Engine::Redb(s) => s.messages_after(conversation, after_seq, limit).await,
            Engine::Postgres(s) => s.messages_after(conversation, after_seq, limit).await,
        }
    }

    /// The `limit` newest messages with seq < `before_seq`, ascending.
    pub async fn messages_before(
        &self,
        conversation: ConversationId,
        before_seq: u64,
        limit: usize,
    ) -> Result<Vec<ChatMessage>, StoreError> {
        match &self.engine {
            Engine::Redb(s) => s.messages_before(conversation, before_seq, limit).await,
            Engine::Postgres(s) => s.messages_before(conversation, before_seq, limit).await,
        }
    }

    /// The message `(conversation, seq)`, if stored (a tombstone once deleted).
    pub async fn message(
        &self,
        conversation: ConversationId,
        seq: u64,
    ) -> Result<Option<ChatMessage>, StoreError> {
        match &self.engine {
            Engine::Redb(s) => s.message(conversation, seq).await,
            Engine::Postgres(s) => s.message(conversation, seq).await,
        }
    }

    /// Deletes the message `(conversation, seq)`: its record becomes the tombstone, the
    /// deletion is indexed, and the commit hook gets the tombstone. On the embedded engine it
    /// answers once the old body is also erased from the file's free pages (`redb::scrub`);
    /// on PostgreSQL the old row version stays in the table's dead tuples and the WAL until
    /// vacuum and WAL recycling remove it (the operator's backups keep it). Deleting a tombstone again
    /// changes nothing. [`StoreError::NotFound`] if there is no such message. Who may delete is
    /// the caller's question (`crate::access::may_delete`); `moderator` is the admin deleting
    /// someone else's message, recorded in the audit log with the deletion.
    pub async fn delete_message(
        &self,
        conversation: ConversationId,
        seq: u64,
        moderator: Option<Actor>,
    ) -> Result<Deletion, StoreError> {
        match &self.engine {
            Engine::Redb(s) => s.delete_message(conversation, seq, moderator).await,
            Engine::Postgres(s) => s.delete_message(conversation, seq, moderator).await,
        }
    }

    /// The seqs of deleted messages of `conversation` in `(up_to - window, up_to]`, ascending;
    /// the `limit` highest when there are more.
    pub async fn deletions_up_to(
        &self,
        conversation: ConversationId,
        up_to: u64,
        window: u64,
        limit: usize,
    ) -> Result<Vec<u64>, StoreError> {
        match &self.engine {
            Engine::Redb(s) => s.deletions_up_to(conversation, up_to, window, limit).await,
            Engine::Postgres(s) => s.deletions_up_to(conversation, up_to, window, limit).await,
        }
    }

    /// Creates a room named `name` (the caller normalizes it), with its creator as its first
    /// member. [`StoreError::NameTaken`] if a room whose name looks like it ([`room_name_key`])
    /// exists, [`StoreError::TooMany`] if the creator is in too many conversations already.
    pub async fn create_room(&self, name: &str, created_by: UserId) -> Result<Room, StoreError> {
        match &self.engine {
            Engine::Redb(s) => s.create_room(name, created_by).await,
            Engine::Postgres(s) => s.create_room(name, created_by).await,
        }
    }

    /// Up to `limit` rooms with ids above `after` (from the first room if `None`), in
    /// ascending id order, each with its head seq; read in one transaction.
    pub async fn rooms_page(
        &self,
        after: Option<ConversationId>,
        limit: usize,
    ) -> Result<RoomPage, StoreError> {
        match &self.engine {
            Engine::Redb(s) => s.rooms_page(after, limit).await,
            Engine::Postgres(s) => s.rooms_page(after, limit).await,
        }
    }

    /// The room with id `id`, if there is one (a DM is not a room).
    pub async fn room(&self, id: ConversationId) -> Result<Option<Room>, StoreError> {
        match &self.engine {
            Engine::Redb(s) => s.room(id).await,
            Engine::Postgres(s) => s.room(id).await,
        }
    }

    /// Sets the retention of the room `room` as `actor` (the caller checks who may:
    /// `crate::access::may_set_retention`), audited; [`Retention::default`] turns it off.
    /// [`StoreError::NotFound`] unless `room` is a room (DMs have no retention).
    pub async fn set_retention(
        &self,
        actor: Actor,
        room: ConversationId,
        retention: Retention,
    ) -> Result<(), StoreError> {
        match &self.engine {
            Engine::Redb(s) => s.set_retention(actor, room, retention).await,
            Engine::Postgres(s) => s.set_retention(actor, room, retention).await,
        }
    }

    /// The retention of `room` (off for a room without one, or for no room).
    pub async fn retention(&self, room: ConversationId) -> Result<Retention, StoreError> {
        match &self.engine {
            Engine::Redb(s) => s.retention(room).await,
            Engine::Postgres(s) => s.retention(room).await,
        }
    }

    /// Up to `limit` rooms with retention on, with ids above `after`, ascending: what the
    /// background sweep walks.
    pub async fn retention_page(
        &self,
        after: Option<ConversationId>,
        limit: usize,
    ) -> Result<Vec<(ConversationId, Retention)>, StoreError> {
        match &self.engine {
            Engine::Redb(s) => s.retention_page(after, limit).await,
            Engine::Postgres(s) => s.retention_page(after, limit).await,
        }
    }

    /// One retention step for `room` (see [`retention`]): in one transaction, every live
    /// message of the next at most `limit` (capped at [`MAX_RETAIN_BATCH`]) seqs that its
    /// retention at `now_ms` no longer keeps becomes a tombstone, through the deletion path
    /// (the commit hook gets the tombstones; no audit entry). Idempotent: a tombstone is never
    /// made twice, whichever node runs the step. A room without retention retains nothing.
    pub async fn retain(
        &self,
        room: ConversationId,
        now_ms: u64,
        limit: usize,
    ) -> Result<Retained, StoreError> {
        match &self.engine {
            Engine::Redb(s) => s.retain(room, now_ms, limit).await,
            Engine::Postgres(s) => s.retain(room, now_ms, limit).await,
        }
    }

    /// `Hello`'s token check, on the calling task: the user a session token belongs to, as
    /// [`Store::session_user`] answers it.
    pub async fn hello_user(
        &self,
        token: &TokenHash,
        now_ms: u64,
    ) -> Result<Option<User>, StoreError> {
        match &self.engine {
            Engine::Redb(s) => s.hello_user(token, now_ms),
            Engine::Postgres(s) => s.hello_user(token, now_ms).await,
        }
    }

    /// The user's accepted friends with their last-seen times, conversation summaries and
    /// blocked users, in one read transaction on the blocking pool.
    pub async fn welcome_view(&self, user: UserId) -> Result<WelcomeView, StoreError> {
        match &self.engine {
            Engine::Redb(s) => s.welcome_view(user).await,
            Engine::Postgres(s) => s.welcome_view(user).await,
        }
    }

    /// `Join`'s reads in one transaction: the conversation's kind (`None`: no such
    /// conversation), given to `check`, which decides whether `user` may read it; only if it
    /// may: the membership, the head, and the first `limit` messages after `start(head)`.
    /// A refusal by `check` is the inner `Err`. On the calling task when `recent` (the batch is
    /// the conversation's last messages), else on the blocking pool (see the module doc).
    pub async fn join_view<G, E>(
        &self,
        user: UserId,
        conversation: ConversationId,
        check: impl FnOnce(Option<ConversationKind>) -> Result<G, E> + Send + 'static,
        start: impl FnOnce(u64) -> u64 + Send + 'static,
        recent: bool,
        limit: usize,
    ) -> Result<Result<JoinView<G>, E>, StoreError>
    where
        G: Send + 'static,
        E: Send + 'static,
    {
        match &self.engine {
            Engine::Redb(s) => {
                s.join_view(user, conversation, check, start, recent, limit)
                    .await
            }
            Engine::Postgres(s) => s.join_view(user, conversation, check, start, limit).await,
        }
    }

    /// Every conversation `user` is in, most recent activity first (ties: higher id first).
    pub async fn summaries(&self, user: UserId) -> Result<Vec<Summary>, StoreError> {
        match &self.engine {
            Engine::Redb(s) => s.summaries(user).await,
            Engine::Postgres(s) => s.summaries(user).await,
        }
    }

    /// [`Store::summaries`], and the users `user` blocks (ascending), read in one transaction:
    /// what a connection needs to start.
    pub async fn summaries_and_blocks(
        &self,
        user: UserId,
    ) -> Result<(Vec<Summary>, Vec<UserId>), StoreError> {
        match &self.engine {
            Engine::Redb(s) => s.summaries_and_blocks(user).await,
            Engine::Postgres(s) => s.summaries_and_blocks(user).await,
        }
    }

    /// `conversation` as `user` sees it, if they are in it.
    pub async fn summary(
        &self,
        user: UserId,
        conversation: ConversationId,
    ) -> Result<Option<Summary>, StoreError> {
        match &self.engine {
            Engine::Redb(s) => s.summary(user, conversation).await,
            Engine::Postgres(s) => s.summary(user, conversation).await,
        }
    }
}

/// A random non-zero epoch, for a new store.
fn new_epoch() -> u64 {
    loop {
        let epoch: u64 = rand::random();
        if epoch != 0 {
            return epoch;
        }
    }
}
