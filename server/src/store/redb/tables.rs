//! The redb table definitions, the keys of the `meta` table, the schema version, and
//! [`WriteTables`], every table opened once per write transaction.
//!
//! Integer and tuple-of-integer keys compare numerically in redb, so range scans over
//! `(conversation, seq)` come back in seq order. Record values are postcard bytes
//! (see [`super::records`]).

use redb::{ReadableTable, Table, TableDefinition, WriteTransaction};

use super::StoreError;

/// The on-disk schema this code reads and writes. Bump it (and add a migration in
/// [`super::migrate`]) whenever a table or a record layout changes; a file with a newer version
/// is refused.
///
/// Version 2: client ids are de-duplicated per conversation ([`CLIENT_IDS`] replaced v1's
/// `dedupe`), and room names are unique by look-alike key ([`ROOM_NAME_KEYS`] replaced v1's
/// case-folded `room_names`).
///
/// Membership, cursors, friendships, DMs, last-seen times and blocks live in tables of their
/// own that version 2 files simply lack until first opened here (opening creates them empty),
/// so they need no bump; so does the deletions index ([`DELETIONS`]; a tombstone is an
/// ordinary message record). So do bans, IP bans and the audit log; the two account indexes ([`USER_SESSIONS`],
/// [`ADMINS`]) are filled from the existing rows once, at the first open that has them
/// ([`META_ACCOUNT_INDEXES`]). So does per-room retention ([`RETENTION`]).
pub(super) const SCHEMA_VERSION: u64 = 2;

/// Redb-wide counters and constants: `meta` key → value.
pub(super) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// User id → [`super::records::UserRecord`].
pub(super) const USERS: TableDefinition<u64, &[u8]> = TableDefinition::new("users");
/// Folded username → user id.
pub(super) const USERNAMES: TableDefinition<&str, u64> = TableDefinition::new("usernames");
/// Session token hash → (user id, expires at ms).
pub(super) const SESSIONS: TableDefinition<&[u8; 32], (u64, u64)> =
    TableDefinition::new("sessions");
/// Room conversation id → [`super::records::RoomRecord`].
pub(super) const ROOMS: TableDefinition<u64, &[u8]> = TableDefinition::new("rooms");
/// Room name key ([`crate::auth::room_name_key`]) → room conversation id.
pub(super) const ROOM_NAME_KEYS: TableDefinition<&str, u64> =
    TableDefinition::new("room_name_keys");
/// (conversation id, seq) → [`super::records::MessageRecord`].
pub(super) const MESSAGES: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("messages");
/// Conversation id → its highest seq.
pub(super) const HEADS: TableDefinition<u64, u64> = TableDefinition::new("heads");
/// (author, conversation id, client id) → seq of the message it produced.
pub(super) const CLIENT_IDS: TableDefinition<(u64, u64, u64), u64> =
    TableDefinition::new("client_ids");
/// (user, conversation id) → when the user joined, ms: the conversations a user is in (rooms
/// joined, and DMs).
pub(super) const MEMBERSHIPS: TableDefinition<(u64, u64), u64> =
    TableDefinition::new("memberships");
/// (conversation id, user) → (): the same rows the other way round, for a conversation's
/// members.
pub(super) const MEMBERS: TableDefinition<(u64, u64), ()> = TableDefinition::new("members");
/// (user, conversation id) → (delivered seq, read seq), each only ever moving forwards.
pub(super) const CURSORS: TableDefinition<(u64, u64), (u64, u64)> = TableDefinition::new("cursors");
/// (user, other user) → [`super::friends::FriendState`] as seen by `user`; every pair is stored
/// both ways.
pub(super) const FRIENDS: TableDefinition<(u64, u64), u8> = TableDefinition::new("friends");
/// DM conversation id → its two members (lower user id first).
pub(super) const DMS: TableDefinition<u64, (u64, u64)> = TableDefinition::new("dms");
/// User id → when they were last online, ms.
pub(super) const LAST_SEEN: TableDefinition<u64, u64> = TableDefinition::new("last_seen");
/// (lower user id, higher user id) → their DM conversation id: one DM per pair.
pub(super) const DM_PAIRS: TableDefinition<(u64, u64), u64> = TableDefinition::new("dm_pairs");
/// (conversation id, seq) → when the message was deleted, ms: the deletions index, from which a
/// resumed join learns of deletions at or before its resume point (see [`super::messages`]).
pub(super) const DELETIONS: TableDefinition<(u64, u64), u64> = TableDefinition::new("deletions");
/// (blocker, blocked) → since when, ms (see [`super::blocks`]).
pub(super) const BLOCKS: TableDefinition<(u64, u64), u64> = TableDefinition::new("blocks");

// Moderation (roles, bans, IP bans, audit log).
/// (user id, session token hash) → (): every session of a user, so they can all be revoked.
pub(super) const USER_SESSIONS: TableDefinition<(u64, &[u8; 32]), ()> =
    TableDefinition::new("user_sessions");
/// User id → (): the users whose role is admin.
pub(super) const ADMINS: TableDefinition<u64, ()> = TableDefinition::new("admins");
/// User id → [`super::records::BanRecord`]: the user's ban (possibly expired).
pub(super) const BANS: TableDefinition<u64, &[u8]> = TableDefinition::new("bans");
/// Canonical network (`ipnet::IpNet` truncated to its prefix, as text) →
/// [`super::records::IpBanRecord`] (possibly expired).
pub(super) const IP_BANS: TableDefinition<&str, &[u8]> = TableDefinition::new("ip_bans");
/// Audit entry id (ascending with time) → [`super::records::AuditRecord`].
pub(super) const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");
/// Room conversation id → (max age ms, max messages, retained through seq), 0 for a rule that
/// is off (see [`super::retention`]).
pub(super) const RETENTION: TableDefinition<u64, (u64, u64, u64)> =
    TableDefinition::new("retention");

/// `meta` key: the schema version of the file.
pub(super) const META_SCHEMA_VERSION: &str = "schema_version";
/// `meta` key: the random non-zero epoch made with the file.
pub(super) const META_EPOCH: &str = "epoch";
/// `meta` key: the next user id to hand out (absent means 1).
pub(super) const META_NEXT_USER_ID: &str = "next_user_id";
/// `meta` key: the next conversation id to hand out, shared by rooms and DMs (absent means 1).
pub(super) const META_NEXT_CONVERSATION_ID: &str = "next_conversation_id";
/// `meta` key: the latest timestamp the writer handed out, so time never runs backwards across
/// restarts.
pub(super) const META_CLOCK_MS: &str = "clock_ms";
/// `meta` key: present (1) while a deleted body may still sit in the file's free pages, from the
/// deletion's commit until [`super::scrub`] has overwritten them (so a restart finishes the job).
pub(super) const META_SCRUB_OWED: &str = "scrub_owed";
/// `meta` key: the next audit entry id to hand out (absent means 1).
pub(super) const META_NEXT_AUDIT_ID: &str = "next_audit_id";
/// `meta` key: present once [`USER_SESSIONS`] and [`ADMINS`] were filled from the sessions and
/// users written before those tables existed.
pub(super) const META_ACCOUNT_INDEXES: &str = "account_indexes";

/// Every table, opened in one write transaction. Opening them creates the missing ones.
/// Must be dropped before the transaction commits.
pub(super) struct WriteTables<'txn> {
    pub meta: Table<'txn, &'static str, u64>,
    pub users: Table<'txn, u64, &'static [u8]>,
    pub usernames: Table<'txn, &'static str, u64>,
    pub sessions: Table<'txn, &'static [u8; 32], (u64, u64)>,
    pub rooms: Table<'txn, u64, &'static [u8]>,
    pub room_name_keys: Table<'txn, &'static str, u64>,
    pub messages: Table<'txn, (u64, u64), &'static [u8]>,
    pub heads: Table<'txn, u64, u64>,
    pub client_ids: Table<'txn, (u64, u64, u64), u64>,
    pub memberships: Table<'txn, (u64, u64), u64>,
    pub members: Table<'txn, (u64, u64), ()>,
    pub cursors: Table<'txn, (u64, u64), (u64, u64)>,
    pub friends: Table<'txn, (u64, u64), u8>,
    pub dms: Table<'txn, u64, (u64, u64)>,
    pub dm_pairs: Table<'txn, (u64, u64), u64>,
    pub last_seen: Table<'txn, u64, u64>,
    pub deletions: Table<'txn, (u64, u64), u64>,
    pub blocks: Table<'txn, (u64, u64), u64>,
    pub user_sessions: Table<'txn, (u64, &'static [u8; 32]), ()>,
    pub admins: Table<'txn, u64, ()>,
    pub bans: Table<'txn, u64, &'static [u8]>,
    pub ip_bans: Table<'txn, &'static str, &'static [u8]>,
    pub audit: Table<'txn, u64, &'static [u8]>,
    pub retention: Table<'txn, u64, (u64, u64, u64)>,
}

impl<'txn> WriteTables<'txn> {
    pub fn open(txn: &'txn WriteTransaction) -> Result<Self, StoreError> {
        Ok(WriteTables {
            meta: txn.open_table(META)?,
            users: txn.open_table(USERS)?,
            usernames: txn.open_table(USERNAMES)?,
            sessions: txn.open_table(SESSIONS)?,
            rooms: txn.open_table(ROOMS)?,
            room_name_keys: txn.open_table(ROOM_NAME_KEYS)?,
            messages: txn.open_table(MESSAGES)?,
            heads: txn.open_table(HEADS)?,
            client_ids: txn.open_table(CLIENT_IDS)?,
            memberships: txn.open_table(MEMBERSHIPS)?,
            members: txn.open_table(MEMBERS)?,
            cursors: txn.open_table(CURSORS)?,
            friends: txn.open_table(FRIENDS)?,
            dms: txn.open_table(DMS)?,
            dm_pairs: txn.open_table(DM_PAIRS)?,
            last_seen: txn.open_table(LAST_SEEN)?,
            deletions: txn.open_table(DELETIONS)?,
            blocks: txn.open_table(BLOCKS)?,
            user_sessions: txn.open_table(USER_SESSIONS)?,
            admins: txn.open_table(ADMINS)?,
            bans: txn.open_table(BANS)?,
            ip_bans: txn.open_table(IP_BANS)?,
            audit: txn.open_table(AUDIT)?,
            retention: txn.open_table(RETENTION)?,
        })
    }

    /// Reads a `meta` value.
    pub fn meta_get(&self, key: &str) -> Result<Option<u64>, StoreError> {
        Ok(self.meta.get(key)?.map(|v| v.value()))
    }

    /// Hands out the id counter `key` (starting at 1) and advances it.
    pub fn next_id(&mut self, key: &str) -> Result<u64, StoreError> {
        let id = self.meta_get(key)?.unwrap_or(1);
        let next = id
            .checked_add(1)
            .ok_or_else(|| StoreError::Corrupt(format!("id counter {key} overflowed")))?;
        self.meta.insert(key, next)?;
        Ok(id)
    }
}
