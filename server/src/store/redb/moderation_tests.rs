//! Tests of roles, bans, IP bans, the audit log, password changes and the account indexes,
//! against a real redb file in a temporary directory.

use std::path::Path;

use quibble_protocol::wire::UserId;
use redb::{Database, TableHandle};
use tempfile::TempDir;

use super::tables::{ADMINS, META, META_ACCOUNT_INDEXES, USER_SESSIONS};
use super::*;
use crate::auth::hash_token;

const CACHE: usize = 4 * 1024 * 1024;

fn open(path: &Path) -> Redb {
    Redb::open(path, CACHE, Box::new(|_| {})).unwrap()
}

/// A store with an operator-made admin `ann` and users `bob` and `cy`.
async fn setup() -> (TempDir, Redb, [UserId; 3]) {
    let dir = TempDir::new().unwrap();
    let store = open(&dir.path().join("quibble.redb"));
    let mut ids = [UserId(0); 3];
    for (i, name) in ["ann", "bob", "cy"].iter().enumerate() {
        ids[i] = store
            .create_user(name, format!("phc-{name}"))
            .await
            .unwrap()
            .id;
    }
    store
        .set_role(Actor::Operator, "ANN", Role::Admin)
        .await
        .unwrap();
    (dir, store, ids)
}

async fn actions(store: &Redb) -> Vec<(String, &'static str, String)> {
    let page = store.audit_page(None, 500).await.unwrap();
    page.entries
        .into_iter()
        .map(|e| (e.actor, e.action.as_str(), e.target))
        .collect()
}

#[tokio::test]
async fn roles_change_only_through_admins_and_are_audited_once() {
    let (_dir, store, [ann, bob, _]) = setup().await;
    assert!(store.has_admin().await.unwrap());
    assert!(
        matches!(
            store.set_role(Actor::User(bob), "bob", Role::Admin).await,
            Err(StoreError::NotAdmin)
        ),
        "a user cannot promote themselves"
    );
    let change = store
        .set_role(Actor::User(ann), "bob", Role::Admin)
        .await
        .unwrap();
    assert!(change.changed);
    assert_eq!(store.user(bob).await.unwrap().unwrap().role, Role::Admin);
    let again = store
        .set_role(Actor::User(ann), "bob", Role::Admin)
        .await
        .unwrap();
    assert!(!again.changed, "no change, no audit entry");
    store
        .set_role(Actor::User(bob), "ann", Role::User)
        .await
        .unwrap();
    assert!(
        matches!(
            store.set_role(Actor::User(ann), "cy", Role::Admin).await,
            Err(StoreError::NotAdmin)
        ),
        "a demoted admin acts no more"
    );
    assert!(matches!(
        store.set_role(Actor::Operator, "nobody", Role::Admin).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(
        actions(&store).await,
        [
            ("bob".into(), "demote", "ann".into()),
            ("ann".into(), "promote", "bob".into()),
            ("operator".into(), "promote", "ann".into()),
        ]
    );
}

#[tokio::test]
async fn a_ban_revokes_every_session_refuses_new_ones_and_ends() {
    let (_dir, store, [ann, bob, cy]) = setup().await;
    let (one, two, other) = (hash_token("b1"), hash_token("b2"), hash_token("c1"));
    store.create_session(one, bob, u64::MAX).await.unwrap();
    store.create_session(two, bob, u64::MAX).await.unwrap();
    store.create_session(other, cy, u64::MAX).await.unwrap();
    assert_eq!(store.sessions_of(bob).await.unwrap().len(), 2);

    let ban = store
        .ban_user(Actor::User(ann), "BOB", "spam", None)
        .await
        .unwrap();
    assert_eq!((ban.user, ban.by.as_str()), (bob, "ann"));
    for token in [one, two] {
        assert_eq!(store.session_user(&token, 0).await.unwrap(), None);
    }
    assert!(store.sessions_of(bob).await.unwrap().is_empty());
    assert!(
        store.session_user(&other, 0).await.unwrap().is_some(),
        "others keep theirs"
    );
    match store.create_session(hash_token("b3"), bob, u64::MAX).await {
        Err(StoreError::Banned { reason, until_ms }) => {
            assert_eq!((reason.as_str(), until_ms), ("spam", None));
        }
        other => panic!("expected Banned, got {other:?}"),
    }
    assert_eq!(store.active_bans(u64::MAX - 1, 10).await.unwrap(), [ban]);

    assert!(matches!(
        store.ban_user(Actor::Operator, "ann", "x", None).await,
        Err(StoreError::TargetIsAdmin)
    ));
    assert!(matches!(
        store.ban_user(Actor::User(cy), "bob", "x", None).await,
        Err(StoreError::NotAdmin)
    ));

    let lifted = store.unban_user(Actor::Operator, "bob").await.unwrap();
    assert!(lifted.changed);
    assert!(
        !store
            .unban_user(Actor::Operator, "bob")
            .await
            .unwrap()
            .changed
    );
    store
        .create_session(hash_token("b3"), bob, u64::MAX)
        .await
        .unwrap();

    // A ban with an end stops counting by itself.
    let timed = store
        .ban_user(Actor::Operator, "cy", "cool off", Some(60_000))
        .await
        .unwrap();
    let until = timed.until_ms.unwrap();
    assert_eq!(until, timed.created_at_ms + 60_000);
    assert!(store.ban_of(cy, until - 1).await.unwrap().is_some());
    assert_eq!(store.ban_of(cy, until).await.unwrap(), None);
    assert!(store.active_bans(until, 10).await.unwrap().is_empty());
    store
        .ban_user(Actor::Operator, "cy", "blink", Some(1))
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    assert!(
        !store
            .unban_user(Actor::Operator, "cy")
            .await
            .unwrap()
            .changed,
        "an expired ban is no ban"
    );

    let logged = actions(&store).await;
    assert_eq!(
        logged,
        [
            ("operator".into(), "ban", "cy".into()),
            ("operator".into(), "ban", "cy".into()),
            ("operator".into(), "unban", "bob".into()),
            ("ann".into(), "ban", "bob".into()),
            ("operator".into(), "promote", "ann".into()),
        ]
    );
}

#[tokio::test]
async fn ip_bans_are_canonical_expire_and_are_audited() {
    let (_dir, store, [ann, bob, _]) = setup().await;
    let range: ipnet::IpNet = "10.1.2.3/8".parse().unwrap();
    let ban = store
        .add_ip_ban(Actor::User(ann), range, "abuse", None)
        .await
        .unwrap();
    assert_eq!(ban.network.to_string(), "10.0.0.0/8");
    let host: ipnet::IpNet = "::1/128".parse().unwrap();
    store
        .add_ip_ban(Actor::Operator, host, "test", Some(1_000))
        .await
        .unwrap();
    assert!(matches!(
        store.add_ip_ban(Actor::User(bob), host, "x", None).await,
        Err(StoreError::NotAdmin)
    ));
    let now = ban.created_at_ms;
    let listed: Vec<String> = store
        .active_ip_bans(now)
        .await
        .unwrap()
        .iter()
        .map(|b| b.network.to_string())
        .collect();
    assert_eq!(listed, ["10.0.0.0/8", "::1/128"]);
    assert_eq!(
        store.active_ip_bans(now + 1_000_000).await.unwrap().len(),
        1
    );

    let same: ipnet::IpNet = "10.0.0.0/8".parse().unwrap();
    assert!(store.remove_ip_ban(Actor::User(ann), same).await.unwrap());
    assert!(!store.remove_ip_ban(Actor::User(ann), same).await.unwrap());
    assert_eq!(
        actions(&store).await[..3],
        [
            ("ann".into(), "ip_ban_remove", "10.0.0.0/8".into()),
            ("operator".into(), "ip_ban_add", "::1/128".into()),
            ("ann".into(), "ip_ban_add", "10.0.0.0/8".into()),
        ]
    );
}

#[tokio::test]
async fn the_audit_log_pages_newest_first_and_survives_reopening() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("quibble.redb");
    let store = open(&path);
    for name in ["u1", "u2", "u3", "u4", "u5"] {
        store.create_user(name, "phc".into()).await.unwrap();
        store
            .set_role(Actor::Operator, name, Role::Admin)
            .await
            .unwrap();
    }
    store.close().await;
    drop(store);
    let store = open(&path);
    let first = store.audit_page(None, 2).await.unwrap();
    let targets = |page: &AuditPage| -> Vec<String> {
        page.entries.iter().map(|e| e.target.clone()).collect()
    };
    assert_eq!(targets(&first), ["u5", "u4"]);
    let second = store.audit_page(first.next, 2).await.unwrap();
    assert_eq!(targets(&second), ["u3", "u2"]);
    let last = store.audit_page(second.next, 2).await.unwrap();
    assert_eq!(targets(&last), ["u1"]);
    assert_eq!(last.next, None);
    let entry = &last.entries[0];
    assert_eq!(
        (entry.actor_id, entry.action, entry.reason.as_deref()),
        (None, AuditAction::Promote, None)
    );
}

#[tokio::test]
async fn a_password_change_replaces_every_session_with_one_new_one() {
    let (_dir, store, [_, bob, _]) = setup().await;
    let (old, other, new) = (hash_token("old"), hash_token("other"), hash_token("new"));
    store.create_session(old, bob, u64::MAX).await.unwrap();
    store.create_session(other, bob, u64::MAX).await.unwrap();
    assert!(matches!(
        store
            .change_password(bob, "stale".into(), "phc-2".into(), new, u64::MAX)
            .await,
        Err(StoreError::PasswordChanged)
    ));
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
}

#[tokio::test]
async fn an_older_file_gets_its_account_indexes_filled_once() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("quibble.redb");
    let store = open(&path);
    let admin = store.create_user("root", "phc".into()).await.unwrap().id;
    store
        .set_role(Actor::Operator, "root", Role::Admin)
        .await
        .unwrap();
    let token = hash_token("t");
    store.create_session(token, admin, u64::MAX).await.unwrap();
    store.close().await;
    drop(store);
    {
        // As a server from before these tables left it.
        let db = Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        assert!(txn.delete_table(USER_SESSIONS).unwrap());
        assert!(txn.delete_table(ADMINS).unwrap());
        txn.open_table(META)
            .unwrap()
            .remove(META_ACCOUNT_INDEXES)
            .unwrap();
        txn.commit().unwrap();
        let txn = db.begin_read().unwrap();
        let names: Vec<String> = txn
            .list_tables()
            .unwrap()
            .map(|t| t.name().to_owned())
            .collect();
        assert!(!names.iter().any(|n| n == "admins"));
    }
    let store = open(&path);
    assert!(store.has_admin().await.unwrap());
    assert_eq!(store.sessions_of(admin).await.unwrap(), [token]);
    store.create_user("bob", "phc".into()).await.unwrap();
    store
        .ban_user(Actor::User(admin), "bob", "x", None)
        .await
        .unwrap();
}
