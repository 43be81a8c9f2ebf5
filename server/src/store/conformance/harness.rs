//! The conformance suite's harness: how a test gets a store of the engine under test
//! ([`Harness`], one small implementation per engine), the store opened with a commit hook that
//! records every call ([`Fixture`], [`Hooked`]), and the helpers the tests share.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use quibble_protocol::wire::{ChatMessage, ConversationId, UserId};
use tempfile::TempDir;

use crate::store::{Added, CommitHook, Room, Store, StoreError};

/// An engine under test: a place where a store keeps its data, opened as often as a test
/// likes. Each test gets a new, empty place.
pub(super) trait Harness: Sized {
    /// A new, empty place for a store; nothing is open on it yet.
    async fn new() -> Self;

    /// Opens the store kept at this place with `hook` as its commit hook. Opening it again,
    /// once the store opened before is closed and dropped, finds everything that store made
    /// durable (a restart).
    async fn open(&self, hook: CommitHook) -> Result<Store, StoreError>;
}

/// The embedded engine: a redb file in a temporary directory, removed with the harness.
pub(super) struct RedbHarness {
    dir: TempDir,
}

/// A small page cache: the tests' files are small.
const REDB_CACHE: usize = 4 << 20;

impl Harness for RedbHarness {
    async fn new() -> Self {
        RedbHarness {
            dir: TempDir::new().expect("a temporary directory for the store"),
        }
    }

    async fn open(&self, hook: CommitHook) -> Result<Store, StoreError> {
        Store::open(&self.dir.path().join("quibble.redb"), REDB_CACHE, hook)
    }
}

/// The fleet's engine: a fresh database on the test binary's throwaway PostgreSQL server
/// (test-support: one server per test binary, a database per harness).
pub(super) struct PostgresHarness {
    url: String,
}

impl Harness for PostgresHarness {
    async fn new() -> Self {
        let url = tokio::task::spawn_blocking(|| {
            quibble_test_support::postgres::Postgres::shared().fresh_database()
        })
        .await
        .expect("a database for the store");
        PostgresHarness { url }
    }

    async fn open(&self, hook: CommitHook) -> Result<Store, StoreError> {
        Store::connect_postgres(&self.url, hook).await
    }
}

/// A store of the engine `H` and what its commit hook was told since it was opened.
pub(super) struct Fixture<H> {
    harness: H,
    pub store: Store,
    /// Every call of the commit hook (empty when the test gave its own hook).
    pub hooked: Hooked,
}

impl<H: Harness> Fixture<H> {
    /// A new, empty store with a recording hook.
    pub async fn new() -> Self {
        Self::open_on(H::new().await).await
    }

    /// A new, empty store whose commit hook is `hook` (`hooked` records nothing).
    pub async fn with_hook(hook: CommitHook) -> Self {
        let harness = H::new().await;
        let store = harness.open(hook).await.expect("the store opens");
        Fixture {
            harness,
            store,
            hooked: Hooked::default(),
        }
    }

    /// A restart: closes the store, drops it, and opens the same place again with a new
    /// recording hook. The test must hold no other handle to the old store.
    pub async fn reopen(self) -> Self {
        self.store.close().await;
        let Fixture { harness, store, .. } = self;
        drop(store);
        Self::open_on(harness).await
    }

    async fn open_on(harness: H) -> Self {
        let hooked = Hooked::default();
        let store = harness.open(hooked.hook()).await.expect("the store opens");
        Fixture {
            harness,
            store,
            hooked,
        }
    }
}

/// The calls of a recording commit hook, each with the messages it was given.
#[derive(Clone, Default)]
pub(super) struct Hooked(Arc<Mutex<Vec<Vec<ChatMessage>>>>);

impl Hooked {
    /// A hook that records each call here.
    pub fn hook(&self) -> CommitHook {
        let calls = self.clone();
        Box::new(move |batch| calls.lock().push(batch.to_vec()))
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Vec<ChatMessage>>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every call so far, in the order made.
    pub fn calls(&self) -> Vec<Vec<ChatMessage>> {
        self.lock().clone()
    }

    /// Every message of every call so far, in the order told.
    pub fn messages(&self) -> Vec<ChatMessage> {
        self.lock().iter().flatten().cloned().collect()
    }

    /// Whether the hook has been told `message`.
    pub fn told(&self, message: &ChatMessage) -> bool {
        self.lock().iter().flatten().any(|m| m == message)
    }
}

/// A conversation id no test creates (ids are handed out from small numbers up).
pub(super) const NO_CONVERSATION: ConversationId = ConversationId(999_999);
/// A user id no test creates.
pub(super) const NO_USER: UserId = UserId(999_999);

/// Signs `name` up (password hash `phc-NAME`) and returns the id.
pub(super) async fn user(store: &Store, name: &str) -> UserId {
    store
        .create_user(name, format!("phc-{name}"))
        .await
        .expect("the sign-up is stored")
        .id
}

/// Creates the room `name` as `creator` and returns its id.
pub(super) async fn room(store: &Store, name: &str, creator: UserId) -> ConversationId {
    store
        .create_room(name, creator)
        .await
        .expect("the room is stored")
        .id
}

/// Makes `a` and `b` friends and returns their DM.
pub(super) async fn befriend(store: &Store, a: UserId, b: UserId) -> ConversationId {
    assert_eq!(store.add_friend(a, b).await.unwrap(), Added::Requested);
    match store.add_friend(b, a).await.unwrap() {
        Added::Accepted(dm) => dm,
        other => panic!("expected an acceptance, got {other:?}"),
    }
}

/// Every room, paging through the list two at a time.
pub(super) async fn all_rooms(store: &Store) -> Vec<Room> {
    let mut rooms = Vec::new();
    let mut after = None;
    loop {
        let page = store.rooms_page(after, 2).await.unwrap();
        assert!(page.rooms.len() <= 2);
        rooms.extend(page.rooms.into_iter().map(|entry| entry.room));
        match page.next {
            Some(next) => after = Some(next),
            None => return rooms,
        }
    }
}

/// The seqs of `messages`, in their order.
pub(super) fn seqs(messages: &[ChatMessage]) -> Vec<u64> {
    messages.iter().map(|m| m.seq).collect()
}
