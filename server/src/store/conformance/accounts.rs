//! Conformance: accounts and sessions — unique case-insensitive names, everyone starting as a
//! user, session tokens with their expiry and revocation (logout, password change), the
//! connection's token check, and "last seen".

use crate::auth::hash_token;
use crate::store::{Actor, MAX_SESSIONS_PER_USER, Role, StoreError};

use super::harness::{Fixture, Harness, NO_USER, user};

pub(super) async fn users_are_unique_case_insensitively_and_all_start_as_users<H: Harness>() {
    let t = Fixture::<H>::new().await;
    let store = &t.store;

    let alice = store.create_user("Alice", "phc-a".into()).await.unwrap();
    assert_ne!(alice.id, quibble_protocol::wire::UserId::NOBODY);
    assert_eq!(alice.username, "Alice");
    assert_eq!(alice.password_phc, "phc-a");
    assert_eq!(
        alice.role,
        Role::User,
        "not even the first account is an admin"
    );
    assert!(alice.created_at_ms > 0);
    assert!(!store.has_admin().await.unwrap());

    assert!(matches!(
        store.create_user("aLICE", "phc-x".into()).await,
        Err(StoreError::NameTaken)
    ));

    let bob = store.create_user("bob", "phc-b".into()).await.unwrap();
    assert_eq!(bob.role, Role::User);
    assert_ne!(bob.id, alice.id);

    assert_eq!(store.user(alice.id).await.unwrap(), Some(alice.clone()));
    assert_eq!(store.user_by_name("ALICE").await.unwrap(), Some(alice));
    assert_eq!(store.user_by_name("BoB").await.unwrap(), Some(bob));
    assert_eq!(store.user_by_name("carol").await.unwrap(), None);
    assert_eq!(store.user(NO_USER).await.unwrap(), None);
}

pub(super) async fn sessions_expire_and_can_be_deleted<H: Harness>() {
    let t = Fixture::<H>::new().await;
    let store = &t.store;
    let alice = store.create_user("alice", "phc".into()).await.unwrap();
    let token = hash_token("token-1");

    store.create_session(token, alice.id, 1_000).await.unwrap();
    assert_eq!(
        store.session_user(&token, 999).await.unwrap(),
        Some(alice.clone())
    );
    assert_eq!(store.session_user(&token, 1_000).await.unwrap(), None);
    assert_eq!(
        store.session_user(&hash_token("other"), 0).await.unwrap(),
        None
    );

    assert!(store.delete_session(token).await.unwrap());
    assert_eq!(store.session_user(&token, 0).await.unwrap(), None);
    assert!(!store.delete_session(token).await.unwrap());
}

pub(super) async fn sessions_are_listed_expired_ones_too_until_revoked<H: Harness>() {
    let t = Fixture::<H>::new().await;
    let store = &t.store;
    let (alice, bob) = (user(store, "alice").await, user(store, "bob").await);
    let (old, live, theirs) = (hash_token("old"), hash_token("live"), hash_token("bob"));
    // (The expired one last: making a session drops the user's expired ones.)
    store.create_session(live, alice, u64::MAX).await.unwrap();
    store.create_session(old, alice, 10).await.unwrap();
    store.create_session(theirs, bob, u64::MAX).await.unwrap();

    let mut listed = store.sessions_of(alice).await.unwrap();
    listed.sort_unstable_by_key(|t| t.0);
    let mut expected = vec![old, live];
    expected.sort_unstable_by_key(|t| t.0);
    assert_eq!(
        listed, expected,
        "an expired session is listed until revoked"
    );
    assert_eq!(store.session_user(&old, 10).await.unwrap(), None);

    assert!(store.delete_session(old).await.unwrap());
    assert_eq!(store.sessions_of(alice).await.unwrap(), [live]);
    assert_eq!(store.sessions_of(bob).await.unwrap(), [theirs]);
    assert!(matches!(
        store
            .create_session(hash_token("x"), NO_USER, u64::MAX)
            .await,
        Err(StoreError::NotFound)
    ));
    assert!(store.sessions_of(NO_USER).await.unwrap().is_empty());
}

pub(super) async fn a_users_sessions_are_capped_and_expired_ones_dropped<H: Harness>() {
    let t = Fixture::<H>::new().await;
    let store = &t.store;
    let (alice, bob) = (user(store, "alice").await, user(store, "bob").await);
    let far = 4_000_000_000_000u64;
    store
        .create_session(hash_token("expired"), alice, 10)
        .await
        .unwrap();
    store
        .create_session(hash_token("bob"), bob, 20)
        .await
        .unwrap();
    // Later expiries for later sessions: the first made is the first to go past the cap.
    for i in 0..MAX_SESSIONS_PER_USER as u64 {
        store
            .create_session(hash_token(&format!("s{i}")), alice, far + i)
            .await
            .unwrap();
    }
    let held = store.sessions_of(alice).await.unwrap();
    assert_eq!(
        held.len(),
        MAX_SESSIONS_PER_USER,
        "the expired one was dropped"
    );
    assert!(!held.contains(&hash_token("expired")));
    store
        .create_session(hash_token("one more"), alice, far + 1000)
        .await
        .unwrap();
    let held = store.sessions_of(alice).await.unwrap();
    assert_eq!(held.len(), MAX_SESSIONS_PER_USER);
    assert!(
        !held.contains(&hash_token("s0")),
        "the soonest to expire went"
    );
    assert!(held.contains(&hash_token("s1")) && held.contains(&hash_token("one more")));
    assert_eq!(
        store
            .session_user(&hash_token("s1"), 0)
            .await
            .unwrap()
            .map(|u| u.id),
        Some(alice)
    );
    assert_eq!(
        store.session_user(&hash_token("s0"), 0).await.unwrap(),
        None
    );
    assert_eq!(
        store.sessions_of(bob).await.unwrap(),
        [hash_token("bob")],
        "another user's expired session is theirs to keep until they sign in"
    );
}

pub(super) async fn the_connections_token_check_answers_as_session_user<H: Harness>() {
    let t = Fixture::<H>::new().await;
    let store = &t.store;
    let alice = store.create_user("alice", "phc".into()).await.unwrap();
    let token = hash_token("hello");
    store.create_session(token, alice.id, 5_000).await.unwrap();

    assert_eq!(
        store.hello_user(&token, 4_999).await.unwrap(),
        Some(alice.clone())
    );
    assert_eq!(
        store.hello_user(&token, 4_999).await.unwrap(),
        store.session_user(&token, 4_999).await.unwrap()
    );
    assert_eq!(
        store.hello_user(&token, 5_000).await.unwrap(),
        None,
        "expired"
    );
    assert_eq!(
        store.hello_user(&hash_token("nope"), 0).await.unwrap(),
        None
    );
    store.delete_session(token).await.unwrap();
    assert_eq!(store.hello_user(&token, 0).await.unwrap(), None, "revoked");
}

pub(super) async fn a_password_change_replaces_every_session_with_one_new_one<H: Harness>() {
    let t = Fixture::<H>::new().await;
    let store = &t.store;
    let bob = user(store, "bob").await;
    let (old, other, new) = (hash_token("old"), hash_token("other"), hash_token("new"));
    store.create_session(old, bob, u64::MAX).await.unwrap();
    store.create_session(other, bob, u64::MAX).await.unwrap();
    assert!(matches!(
        store
            .change_password(bob, "stale".into(), "phc-2".into(), new, u64::MAX)
            .await,
        Err(StoreError::PasswordChanged)
    ));
    assert_eq!(
        store.sessions_of(bob).await.unwrap().len(),
        2,
        "refused: nothing written"
    );
    store
        .change_password(bob, "phc-bob".into(), "phc-2".into(), new, u64::MAX)
        .await
        .unwrap();
    assert_eq!(store.sessions_of(bob).await.unwrap(), [new]);
    assert_eq!(store.session_user(&old, 0).await.unwrap(), None);
    let user = store.session_user(&new, 0).await.unwrap().unwrap();
    assert_eq!(user.password_phc, "phc-2");
    // A login that verified the old password loses the race.
    assert!(matches!(
        store
            .create_login_session(hash_token("late"), bob, u64::MAX, "phc-bob".into())
            .await,
        Err(StoreError::PasswordChanged)
    ));
    store
        .create_login_session(hash_token("ok"), bob, u64::MAX, "phc-2".into())
        .await
        .unwrap();
    // Nor does a change that a ban overtook.
    store
        .ban_user(Actor::Operator, "bob", "spam", None)
        .await
        .unwrap();
    assert!(matches!(
        store
            .change_password(
                bob,
                "phc-2".into(),
                "phc-3".into(),
                hash_token("n"),
                u64::MAX
            )
            .await,
        Err(StoreError::Banned { .. })
    ));
    assert!(store.sessions_of(bob).await.unwrap().is_empty());
    assert_eq!(
        store.user(bob).await.unwrap().unwrap().password_phc,
        "phc-2",
        "the refused change wrote nothing"
    );
}

pub(super) async fn accounts_sessions_and_revocations_survive_a_reopen<H: Harness>() {
    let t = Fixture::<H>::new().await;
    let alice = t.store.create_user("Alice", "phc-1".into()).await.unwrap();
    let (first, second, kept) = (hash_token("1"), hash_token("2"), hash_token("3"));
    t.store
        .create_session(first, alice.id, u64::MAX)
        .await
        .unwrap();
    t.store
        .change_password(alice.id, "phc-1".into(), "phc-2".into(), second, u64::MAX)
        .await
        .unwrap();
    t.store.create_session(kept, alice.id, 77).await.unwrap();
    t.store.record_last_seen(alice.id, 1_234).await.unwrap();

    let t = t.reopen().await;
    let store = &t.store;
    let after = store.user_by_name("alice").await.unwrap().unwrap();
    assert_eq!((after.id, after.username.as_str()), (alice.id, "Alice"));
    assert_eq!(after.password_phc, "phc-2");
    assert_eq!(
        store.session_user(&first, 0).await.unwrap(),
        None,
        "still revoked"
    );
    assert_eq!(
        store.session_user(&second, 0).await.unwrap(),
        Some(after.clone())
    );
    assert_eq!(store.session_user(&kept, 76).await.unwrap(), Some(after));
    assert_eq!(
        store.session_user(&kept, 77).await.unwrap(),
        None,
        "its expiry too"
    );
    assert_eq!(
        store.last_seen(vec![alice.id]).await.unwrap(),
        [(alice.id, 1_234)]
    );
    assert!(matches!(
        store.create_user("ALICE", "phc".into()).await,
        Err(StoreError::NameTaken)
    ));
}

pub(super) async fn last_seen_only_moves_forwards<H: Harness>() {
    let t = Fixture::<H>::new().await;
    let store = &t.store;
    let (alice, bob) = (user(store, "alice").await, user(store, "bob").await);
    store.record_last_seen(alice, 200).await.unwrap();
    store.record_last_seen(alice, 100).await.unwrap();
    assert_eq!(
        store.last_seen(vec![alice, bob]).await.unwrap(),
        vec![(alice, 200)]
    );
    store.record_last_seen(alice, 300).await.unwrap();
    assert_eq!(store.last_seen(vec![alice]).await.unwrap(), [(alice, 300)]);
}
