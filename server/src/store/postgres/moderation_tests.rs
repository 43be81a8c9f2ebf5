//! Moderation on the PostgreSQL engine, through [`Store`] as the server calls it: roles, bans,
//! IP bans, the audit log and message deletion, each test on a fresh database of a throwaway
//! PostgreSQL server (test-support). Beyond what the embedded engine's tests check, races of
//! two nodes (two handles on one database) show that the row and table locks, not either
//! node, decide: two admins demoting each other, a demotion racing a ban by the demoted admin,
//! a ban racing new sessions, two nodes deleting one message, two nodes sweeping one room's
//! retention, and two nodes taking the last free IP ban row. Each race test fails when the
//! lock it relies on is taken out.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ipnet::IpNet;
use quibble_protocol::wire::{ChatMessage, UserId};
use quibble_test_support::postgres::Postgres as Server;
use tokio_postgres::NoTls;

use crate::auth::hash_token;
use crate::store::{
    Actor, AuditAction, AuditPage, CommitHook, MAX_IP_BANS, Role, Store, StoreError,
};

type Seen = Arc<Mutex<Vec<ChatMessage>>>;

/// A session expiry far off. Not `u64::MAX`: the engine stores times as bigint bit for bit, so
/// that would read as -1 and the session as expired (see the report on `session_user`).
const FOREVER: u64 = i64::MAX as u64;

async fn node(url: &str) -> (Store, Seen) {
    let seen: Seen = Arc::default();
    let sink = Arc::clone(&seen);
    let hook: CommitHook =
        Box::new(move |messages| sink.lock().unwrap().extend_from_slice(messages));
    (Store::connect_postgres(url, hook).await.unwrap(), seen)
}

/// A plain connection to the database, to look at (or set up) rows directly.
async fn sql(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

/// A fresh database with an operator-made admin `ann` and users `bob` and `cy`, and two nodes
/// on it.
async fn setup() -> (String, Store, Store, [UserId; 3]) {
    let url = Server::shared().fresh_database();
    let ((a, _), (b, _)) = tokio::join!(node(&url), node(&url));
    let mut ids = [UserId(0); 3];
    for (i, name) in ["ann", "bob", "cy"].iter().enumerate() {
        ids[i] = a.create_user(name, format!("phc-{name}")).await.unwrap().id;
    }
    a.set_role(Actor::Operator, "ANN", Role::Admin)
        .await
        .unwrap();
    (url, a, b, ids)
}

async fn actions(store: &Store) -> Vec<(String, &'static str, String)> {
    let page = store.audit_page(None, 500).await.unwrap();
    page.entries
        .into_iter()
        .map(|e| (e.actor, e.action.as_str(), e.target))
        .collect()
}

#[tokio::test]
async fn roles_change_only_through_admins_and_are_audited_once() {
    let (_url, a, b, [ann, bob, _]) = setup().await;
    assert!(a.has_admin().await.unwrap());
    assert!(
        matches!(
            a.set_role(Actor::User(bob), "bob", Role::Admin).await,
            Err(StoreError::NotAdmin)
        ),
        "a user cannot promote themselves"
    );
    let change = b
        .set_role(Actor::User(ann), "Bob", Role::Admin)
        .await
        .unwrap();
    assert!(change.changed);
    assert_eq!((change.user.id, change.user.role), (bob, Role::Admin));
    assert_eq!(a.user(bob).await.unwrap().unwrap().role, Role::Admin);
    let again = a
        .set_role(Actor::User(ann), "bob", Role::Admin)
        .await
        .unwrap();
    assert!(!again.changed, "no change, no audit entry");
    b.set_role(Actor::User(bob), "ann", Role::User)
        .await
        .unwrap();
    assert!(
        matches!(
            a.set_role(Actor::User(ann), "cy", Role::Admin).await,
            Err(StoreError::NotAdmin)
        ),
        "a demoted admin acts no more"
    );
    assert!(matches!(
        a.set_role(Actor::Operator, "nobody", Role::Admin).await,
        Err(StoreError::NotFound)
    ));
    assert!(
        matches!(
            a.set_role(Actor::User(UserId(9_999)), "cy", Role::Admin)
                .await,
            Err(StoreError::NotAdmin)
        ),
        "an actor that does not exist is no admin"
    );
    assert_eq!(
        actions(&a).await,
        [
            ("bob".into(), "demote", "ann".into()),
            ("ann".into(), "promote", "bob".into()),
            ("operator".into(), "promote", "ann".into()),
        ]
    );
    let newest = &a.audit_page(None, 1).await.unwrap().entries[0];
    assert_eq!(
        (newest.actor_id, newest.action, newest.reason.as_deref()),
        (Some(bob), AuditAction::Demote, None)
    );
}

#[tokio::test]
async fn a_ban_revokes_every_session_refuses_new_ones_and_ends() {
    let (_url, store, other_node, [ann, bob, cy]) = setup().await;
    let (one, two, other) = (hash_token("b1"), hash_token("b2"), hash_token("c1"));
    store.create_session(one, bob, FOREVER).await.unwrap();
    other_node.create_session(two, bob, FOREVER).await.unwrap();
    store.create_session(other, cy, FOREVER).await.unwrap();
    assert_eq!(store.sessions_of(bob).await.unwrap().len(), 2);

    let ban = store
        .ban_user(Actor::User(ann), "BOB", "spam", None)
        .await
        .unwrap();
    assert_eq!(
        (
            ban.user,
            ban.username.as_str(),
            ban.by.as_str(),
            ban.until_ms
        ),
        (bob, "bob", "ann", None)
    );
    for token in [one, two] {
        assert_eq!(other_node.session_user(&token, 0).await.unwrap(), None);
    }
    assert!(store.sessions_of(bob).await.unwrap().is_empty());
    assert!(
        store.session_user(&other, 0).await.unwrap().is_some(),
        "others keep theirs"
    );
    match other_node
        .create_session(hash_token("b3"), bob, FOREVER)
        .await
    {
        Err(StoreError::Banned { reason, until_ms }) => {
            assert_eq!((reason.as_str(), until_ms), ("spam", None));
        }
        other => panic!("expected Banned, got {other:?}"),
    }
    assert!(matches!(
        other_node
            .create_login_session(hash_token("b4"), bob, FOREVER, "phc-bob".into())
            .await,
        Err(StoreError::Banned { .. })
    ));
    assert_eq!(
        other_node.active_bans(FOREVER, 10).await.unwrap(),
        std::slice::from_ref(&ban)
    );
    assert_eq!(other_node.ban_of(bob, 0).await.unwrap(), Some(ban));
    assert_eq!(other_node.ban_of(cy, 0).await.unwrap(), None);

    assert!(matches!(
        store.ban_user(Actor::Operator, "ann", "x", None).await,
        Err(StoreError::TargetIsAdmin)
    ));
    assert!(matches!(
        store.ban_user(Actor::User(cy), "bob", "x", None).await,
        Err(StoreError::NotAdmin)
    ));
    assert!(matches!(
        store.ban_user(Actor::Operator, "nobody", "x", None).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.unban_user(Actor::User(cy), "bob").await,
        Err(StoreError::NotAdmin)
    ));
    assert!(matches!(
        store.unban_user(Actor::Operator, "nobody").await,
        Err(StoreError::NotFound)
    ));
    assert!(
        store.ban_of(bob, 0).await.unwrap().is_some(),
        "the refusals changed nothing"
    );

    let lifted = other_node.unban_user(Actor::Operator, "bob").await.unwrap();
    assert_eq!((lifted.user, lifted.changed), (bob, true));
    assert!(
        !store
            .unban_user(Actor::Operator, "bob")
            .await
            .unwrap()
            .changed
    );
    store
        .create_session(hash_token("b3"), bob, FOREVER)
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
    assert_eq!(store.active_bans(until - 1, 10).await.unwrap().len(), 1);
    assert!(store.active_bans(until, 10).await.unwrap().is_empty());
    store
        .ban_user(Actor::Operator, "cy", "blink", Some(1))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    store
        .create_session(hash_token("c2"), cy, FOREVER)
        .await
        .expect("an expired ban refuses no session");
    assert!(
        !store
            .unban_user(Actor::Operator, "cy")
            .await
            .unwrap()
            .changed,
        "an expired ban is no ban"
    );

    assert_eq!(
        actions(&store).await,
        [
            ("operator".into(), "ban", "cy".into()),
            ("operator".into(), "ban", "cy".into()),
            ("operator".into(), "unban", "bob".into()),
            ("ann".into(), "ban", "bob".into()),
            ("operator".into(), "promote", "ann".into()),
        ]
    );
    let page = store.audit_page(None, 5).await.unwrap();
    assert_eq!(page.entries[0].reason.as_deref(), Some("blink"));
    assert_eq!(page.entries[2].reason, None, "an unban has no reason");
}

#[tokio::test]
async fn active_bans_are_by_user_id_and_limited() {
    let (_url, store, _, [_, bob, cy]) = setup().await;
    let dee = store.create_user("dee", "p".into()).await.unwrap().id;
    for name in ["dee", "bob", "cy"] {
        store
            .ban_user(Actor::Operator, name, "r", None)
            .await
            .unwrap();
    }
    let ids = |bans: Vec<crate::store::Ban>| bans.iter().map(|b| b.user).collect::<Vec<_>>();
    assert_eq!(ids(store.active_bans(0, 10).await.unwrap()), [bob, cy, dee]);
    assert_eq!(ids(store.active_bans(0, 2).await.unwrap()), [bob, cy]);
    assert!(store.active_bans(0, 0).await.unwrap().is_empty());
}

#[tokio::test]
async fn ip_bans_are_canonical_expire_and_are_audited() {
    let (url, store, other_node, [ann, bob, _]) = setup().await;
    let range: IpNet = "10.1.2.3/8".parse().unwrap();
    let ban = store
        .add_ip_ban(Actor::User(ann), range, "abuse", None)
        .await
        .unwrap();
    assert_eq!(
        (ban.network.to_string(), ban.by.as_str()),
        ("10.0.0.0/8".into(), "ann")
    );
    let host: IpNet = "::1/128".parse().unwrap();
    let timed = other_node
        .add_ip_ban(Actor::Operator, host, "test", Some(1_000))
        .await
        .unwrap();
    assert_eq!(timed.until_ms, Some(timed.created_at_ms + 1_000));
    assert!(matches!(
        store.add_ip_ban(Actor::User(bob), host, "x", None).await,
        Err(StoreError::NotAdmin)
    ));
    assert!(matches!(
        store.remove_ip_ban(Actor::User(bob), range).await,
        Err(StoreError::NotAdmin)
    ));
    let now = ban.created_at_ms;
    let listed = |bans: Vec<crate::store::IpBan>| -> Vec<String> {
        bans.iter().map(|b| b.network.to_string()).collect()
    };
    // Listed by network text, byte order ("1" < "9" < ":"), whatever the database's collation.
    store
        .add_ip_ban(Actor::Operator, "9.9.9.9/32".parse().unwrap(), "n", None)
        .await
        .unwrap();
    assert_eq!(
        listed(other_node.active_ip_bans(now).await.unwrap()),
        ["10.0.0.0/8", "9.9.9.9/32", "::1/128"]
    );
    assert_eq!(
        listed(store.active_ip_bans(now + 1_000_000).await.unwrap()),
        ["10.0.0.0/8", "9.9.9.9/32"]
    );
    // Re-adding a network replaces its ban (one row per network).
    let replaced = store
        .add_ip_ban(
            Actor::Operator,
            "10.200.0.0/8".parse().unwrap(),
            "again",
            None,
        )
        .await
        .unwrap();
    let now_listed = store.active_ip_bans(now).await.unwrap();
    assert_eq!(now_listed.len(), 3);
    assert_eq!(now_listed[0], replaced);
    let rows: i64 = sql(&url)
        .await
        .query_one("SELECT count(*) FROM ip_bans", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 3);

    let same: IpNet = "10.0.0.0/8".parse().unwrap();
    assert!(store.remove_ip_ban(Actor::User(ann), same).await.unwrap());
    assert!(
        !other_node
            .remove_ip_ban(Actor::User(ann), same)
            .await
            .unwrap()
    );
    assert_eq!(
        actions(&store).await[..5],
        [
            ("ann".into(), "ip_ban_remove", "10.0.0.0/8".into()),
            ("operator".into(), "ip_ban_add", "10.0.0.0/8".into()),
            ("operator".into(), "ip_ban_add", "9.9.9.9/32".into()),
            ("operator".into(), "ip_ban_add", "::1/128".into()),
            ("ann".into(), "ip_ban_add", "10.0.0.0/8".into()),
        ]
    );
}

/// Fills `ip_bans` with `n` unexpired rows (10.x.y.z/32), bypassing the store.
async fn fill_ip_bans(url: &str, n: usize, until_ms: Option<i64>) {
    sql(url)
        .await
        .execute(
            "INSERT INTO ip_bans (network, reason, created_at_ms, until_ms, by_name)
             SELECT '10.' || (i / 65536) || '.' || (i / 256 % 256) || '.' || (i % 256) || '/32',
                    'filler', 0, $2, 'operator'
             FROM generate_series(0, $1 - 1) AS i",
            &[&(n as i32), &until_ms],
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn the_ip_ban_cap_counts_expired_rows_only_until_it_is_reached() {
    let (url, store, _, _) = setup().await;
    fill_ip_bans(&url, MAX_IP_BANS, None).await;
    let new: IpNet = "192.0.2.0/24".parse().unwrap();
    assert!(matches!(
        store.add_ip_ban(Actor::Operator, new, "x", None).await,
        Err(StoreError::TooMany(_))
    ));
    // Replacing an existing network needs no free row.
    store
        .add_ip_ban(Actor::Operator, "10.0.0.5/32".parse().unwrap(), "y", None)
        .await
        .unwrap();
    // An expired row makes room.
    sql(&url)
        .await
        .execute(
            "UPDATE ip_bans SET until_ms = 1 WHERE network = '10.0.0.7/32'",
            &[],
        )
        .await
        .unwrap();
    store
        .add_ip_ban(Actor::Operator, new, "x", None)
        .await
        .unwrap();
    let bans = store.active_ip_bans(2).await.unwrap();
    assert_eq!(bans.len(), MAX_IP_BANS);
    assert!(bans.iter().any(|b| b.network == new));
    assert!(
        !bans.iter().any(|b| b.network.to_string() == "10.0.0.7/32"),
        "the expired row was dropped"
    );
}

#[tokio::test]
async fn two_nodes_cannot_both_take_the_last_ip_ban_row() {
    let (url, a, b, _) = setup().await;
    fill_ip_bans(&url, MAX_IP_BANS - 1, None).await;
    for round in 0..5u8 {
        let (x, y): (IpNet, IpNet) = (
            format!("192.0.2.{round}/32").parse().unwrap(),
            format!("198.51.100.{round}/32").parse().unwrap(),
        );
        let (first, second) = tokio::join!(
            a.add_ip_ban(Actor::Operator, x, "r", None),
            b.add_ip_ban(Actor::Operator, y, "r", None)
        );
        let refused = [&first, &second]
            .iter()
            .filter(|r| matches!(r, Err(StoreError::TooMany(_))))
            .count();
        assert_eq!(refused, 1, "round {round}: {first:?} {second:?}");
        assert_eq!(a.active_ip_bans(0).await.unwrap().len(), MAX_IP_BANS);
        // Free the row again for the next round.
        let won = first.or(second).unwrap().network;
        assert!(a.remove_ip_ban(Actor::Operator, won).await.unwrap());
    }
}

#[tokio::test]
async fn the_audit_log_pages_newest_first_across_nodes() {
    let url = Server::shared().fresh_database();
    let ((a, _), (b, _)) = tokio::join!(node(&url), node(&url));
    for (i, name) in ["u1", "u2", "u3", "u4", "u5"].iter().enumerate() {
        let store = if i % 2 == 0 { &a } else { &b };
        store.create_user(name, "phc".into()).await.unwrap();
        store
            .set_role(Actor::Operator, name, Role::Admin)
            .await
            .unwrap();
    }
    a.close().await;
    let (store, _) = node(&url).await;
    let targets = |page: &AuditPage| -> Vec<String> {
        page.entries.iter().map(|e| e.target.clone()).collect()
    };
    let first = store.audit_page(None, 2).await.unwrap();
    assert_eq!(targets(&first), ["u5", "u4"]);
    let second = store.audit_page(first.next, 2).await.unwrap();
    assert_eq!(targets(&second), ["u3", "u2"]);
    let last = store.audit_page(second.next, 2).await.unwrap();
    assert_eq!(targets(&last), ["u1"]);
    assert_eq!(last.next, None);
    let exact = store.audit_page(None, 5).await.unwrap();
    assert_eq!(exact.entries.len(), 5);
    assert_eq!(exact.next, None, "no older page when the log ends exactly");
    let empty = store.audit_page(None, 0).await.unwrap();
    assert!(empty.entries.is_empty() && empty.next.is_none());
    let entry = &last.entries[0];
    assert_eq!(
        (entry.actor_id, entry.action, entry.reason.as_deref()),
        (None, AuditAction::Promote, None)
    );
}

#[tokio::test]
async fn a_deletion_leaves_a_tombstone_and_tells_the_hook_once() {
    let url = Server::shared().fresh_database();
    let ((a, seen_a), (b, seen_b)) = tokio::join!(node(&url), node(&url));
    let ann = a.create_user("ann", "p".into()).await.unwrap().id;
    let bob = a.create_user("bob", "p".into()).await.unwrap().id;
    a.set_role(Actor::Operator, "ann", Role::Admin)
        .await
        .unwrap();
    let room = a.create_room("room", bob).await.unwrap().id;
    let first = a.append(room, bob, "bob", 7, "secret").await.unwrap();
    a.append(room, bob, "bob", 8, "second").await.unwrap();

    // The author deletes their own: not audited.
    let deletion = a.delete_message(room, 1, None).await.unwrap();
    assert!(deletion.changed);
    assert_eq!(deletion.tombstone, first.message.tombstone());
    assert!(deletion.tombstone.is_deleted());
    assert_eq!(
        a.message(room, 1).await.unwrap(),
        Some(first.message.tombstone())
    );
    let history = b.messages_after(room, 0, 10).await.unwrap();
    assert_eq!(history.len(), 2);
    assert!(history[0].is_deleted() && !history[1].is_deleted());
    assert_eq!(b.deletions_up_to(room, 2, 10, 10).await.unwrap(), [1]);
    // The body is gone from the row; the client id stays, and answers a resend.
    let row = sql(&url)
        .await
        .query_one(
            "SELECT body, client_id, deleted_at_ms FROM messages
             WHERE conversation_id = $1 AND seq = 1",
            &[&(room.0 as i64)],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, &str>(0), "");
    assert_eq!(row.get::<_, i64>(1), 7);
    assert!(row.get::<_, Option<i64>>(2).is_some());
    let resent = b.append(room, bob, "bob", 7, "secret").await.unwrap();
    assert!(resent.duplicate);
    assert_eq!(resent.message, first.message.tombstone());
    assert_eq!(a.head(room).await.unwrap(), 2);

    // Again, on either node: nothing changes, the hook hears nothing more.
    for store in [&a, &b] {
        let again = store.delete_message(room, 1, None).await.unwrap();
        assert!(!again.changed);
        assert_eq!(again.tombstone, first.message.tombstone());
    }
    // An admin deleting someone else's: audited, with the message as the target.
    let by_admin = b
        .delete_message(room, 2, Some(Actor::User(ann)))
        .await
        .unwrap();
    assert!(by_admin.changed);
    assert!(matches!(
        a.delete_message(room, 3, None).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(
        actions(&a).await,
        [
            ("ann".into(), "delete_message", format!("{}/2", room.0)),
            ("operator".into(), "promote", "ann".into()),
        ]
    );

    let bodies = |seen: &Seen| -> Vec<(u64, String)> {
        seen.lock()
            .unwrap()
            .iter()
            .map(|m| (m.seq, m.body.clone()))
            .collect()
    };
    assert_eq!(
        bodies(&seen_a),
        [
            (1, "secret".into()),
            (2, "second".into()),
            (1, String::new())
        ],
        "each node's hook sees what that node committed, a tombstone once"
    );
    assert_eq!(bodies(&seen_b), [(2, String::new())]);
}

/// The hook runs on a runtime worker and blocks it while it holds up message 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn a_tombstone_never_reaches_the_hook_before_its_message() {
    let url = Server::shared().fresh_database();
    let seen: Seen = Arc::default();
    let sink = Arc::clone(&seen);
    let hook: CommitHook = Box::new(move |messages| {
        if messages.iter().any(|m| m.seq == 1 && !m.is_deleted()) {
            // Slow fan-out of the first message: its commit is visible meanwhile. (Off the
            // runtime worker's queue, so the rest of the test runs.)
            tokio::task::block_in_place(|| std::thread::sleep(Duration::from_millis(500)));
        }
        sink.lock().unwrap().extend_from_slice(messages);
    });
    let store = Store::connect_postgres(&url, hook).await.unwrap();
    let bob = store.create_user("bob", "p".into()).await.unwrap().id;
    let room = store.create_room("room", bob).await.unwrap().id;
    let pending = store
        .queue_append(room, bob, "bob", 1, "hello")
        .await
        .unwrap();
    // Delete it as soon as it is committed, while the hook still holds it.
    while store.message(room, 1).await.unwrap().is_none() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert!(
        seen.lock().unwrap().is_empty(),
        "the hook is still busy with the message"
    );
    assert!(store.delete_message(room, 1, None).await.unwrap().changed);
    pending.await.unwrap();
    let seen: Vec<bool> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|m| m.is_deleted())
        .collect();
    assert_eq!(seen, [false, true], "the message, then its tombstone");
}

#[tokio::test]
async fn two_admins_demoting_each_other_on_two_nodes_leave_one_admin() {
    let (_url, a, b, [ann, bob, _]) = setup().await;
    for round in 0..10 {
        for name in ["ann", "bob"] {
            a.set_role(Actor::Operator, name, Role::Admin)
                .await
                .unwrap();
        }
        let (x, y) = tokio::join!(
            a.set_role(Actor::User(ann), "bob", Role::User),
            b.set_role(Actor::User(bob), "ann", Role::User)
        );
        let won = [&x, &y]
            .iter()
            .filter(|r| matches!(r, Ok(change) if change.changed))
            .count();
        let refused = [&x, &y]
            .iter()
            .filter(|r| matches!(r, Err(StoreError::NotAdmin)))
            .count();
        assert_eq!((won, refused), (1, 1), "round {round}: {x:?} {y:?}");
        assert!(a.has_admin().await.unwrap());
        let roles = (
            a.user(ann).await.unwrap().unwrap().role,
            a.user(bob).await.unwrap().unwrap().role,
        );
        assert!(
            roles == (Role::Admin, Role::User) || roles == (Role::User, Role::Admin),
            "round {round}: {roles:?}"
        );
    }
}

#[tokio::test]
async fn a_ban_by_an_admin_being_demoted_elsewhere_is_ordered_by_the_database() {
    let (_url, a, b, [ann, bob, cy]) = setup().await;
    let (mut banned, mut refused) = (0, 0);
    for round in 0..10 {
        a.set_role(Actor::Operator, "bob", Role::Admin)
            .await
            .unwrap();
        a.unban_user(Actor::Operator, "cy").await.unwrap();
        let (demoted, ban) = tokio::join!(
            a.set_role(Actor::User(ann), "bob", Role::User),
            b.ban_user(Actor::User(bob), "cy", "spam", None)
        );
        assert!(demoted.unwrap().changed);
        let log = a.audit_page(None, 2).await.unwrap().entries;
        match ban {
            Ok(ban) => {
                banned += 1;
                assert_eq!(ban.by, "bob");
                assert_eq!(a.ban_of(cy, 0).await.unwrap(), Some(ban));
                // The ban committed first: it is logged before the demotion.
                assert_eq!(
                    (log[1].action, log[0].action),
                    (AuditAction::Ban, AuditAction::Demote),
                    "round {round}"
                );
                assert_eq!(log[1].actor_id, Some(bob));
            }
            Err(StoreError::NotAdmin) => {
                refused += 1;
                assert_eq!(a.ban_of(cy, 0).await.unwrap(), None, "round {round}");
                assert_eq!(log[0].action, AuditAction::Demote);
            }
            Err(other) => panic!("round {round}: {other:?}"),
        }
    }
    assert_eq!(banned + refused, 10);
}

#[tokio::test]
async fn far_off_times_keep_their_order() {
    let (_url, store, _, [_, bob, cy]) = setup().await;
    let endless = store
        .ban_user(Actor::Operator, "bob", "r", Some(u64::MAX))
        .await
        .unwrap();
    assert!(
        endless
            .until_ms
            .is_some_and(|until| until > endless.created_at_ms)
    );
    assert!(matches!(
        store.create_session(hash_token("b"), bob, FOREVER).await,
        Err(StoreError::Banned { .. })
    ));
    assert_eq!(
        store.ban_of(bob, endless.created_at_ms).await.unwrap(),
        Some(endless)
    );
    store
        .ban_user(Actor::Operator, "cy", "r", Some(60_000))
        .await
        .unwrap();
    assert_eq!(store.ban_of(cy, u64::MAX).await.unwrap(), None);
    assert!(
        store.active_bans(u64::MAX, 10).await.unwrap().is_empty(),
        "at the end of time no ban with an end counts"
    );
    let host: IpNet = "192.0.2.1/32".parse().unwrap();
    let timed = store
        .add_ip_ban(Actor::Operator, host, "r", Some(1_000))
        .await
        .unwrap();
    assert_eq!(
        store
            .active_ip_bans(timed.created_at_ms)
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(store.active_ip_bans(u64::MAX).await.unwrap().is_empty());
}

#[tokio::test]
async fn no_session_outlives_a_ban_racing_it_on_another_node() {
    let (_url, a, b, [_, bob, _]) = setup().await;
    for round in 0..10u32 {
        a.unban_user(Actor::Operator, "bob").await.unwrap();
        let logins = async {
            let mut created = 0;
            for i in 0..20 {
                let token = hash_token(&format!("{round}-{i}"));
                match b.create_session(token, bob, FOREVER).await {
                    Ok(()) => created += 1,
                    Err(StoreError::Banned { .. }) => break,
                    Err(other) => panic!("round {round}: {other:?}"),
                }
            }
            created
        };
        let (ban, _) = tokio::join!(a.ban_user(Actor::Operator, "bob", "r", None), logins);
        ban.unwrap();
        assert!(
            b.sessions_of(bob).await.unwrap().is_empty(),
            "round {round}: a session made around the ban survived it"
        );
    }
}

#[tokio::test]
async fn two_nodes_deleting_one_message_change_it_once() {
    let url = Server::shared().fresh_database();
    let ((a, seen_a), (b, seen_b)) = tokio::join!(node(&url), node(&url));
    let bob = a.create_user("bob", "p".into()).await.unwrap().id;
    let room = a.create_room("room", bob).await.unwrap().id;
    for round in 1..=10u64 {
        a.append(room, bob, "bob", round, "m").await.unwrap();
        let (x, y) = tokio::join!(
            a.delete_message(room, round, None),
            b.delete_message(room, round, None)
        );
        let (x, y) = (x.unwrap(), y.unwrap());
        assert!(x.changed != y.changed, "round {round}: {x:?} {y:?}");
        assert_eq!(x.tombstone, y.tombstone);
    }
    let tombstones = seen_a
        .lock()
        .unwrap()
        .iter()
        .chain(seen_b.lock().unwrap().iter())
        .filter(|m| m.is_deleted())
        .count();
    assert_eq!(tombstones, 10, "each deletion reached a hook once");
}

#[tokio::test]
async fn two_nodes_sweeping_one_room_retain_each_message_once() {
    let url = Server::shared().fresh_database();
    let ((a, seen_a), (b, seen_b)) = tokio::join!(node(&url), node(&url));
    let bob = a.create_user("bob", "p".into()).await.unwrap().id;
    let room = a.create_room("room", bob).await.unwrap().id;
    let keep = crate::store::Retention {
        max_age_ms: None,
        max_messages: Some(1),
    };
    a.set_retention(Actor::User(bob), room, keep).await.unwrap();
    let now = crate::tls::unix_ms(std::time::SystemTime::now());
    let mut retained = Vec::new();
    for round in 1..=30u64 {
        a.append(room, bob, "bob", round, "m").await.unwrap();
        // Each node steps in small batches, as a sweep does, at the same moment.
        let (x, y) = tokio::join!(a.retain(room, now, 2), b.retain(room, now, 2));
        for step in [x.unwrap(), y.unwrap()] {
            retained.extend(step.tombstones.iter().map(|m| m.seq));
        }
    }
    // Let both finish what is left.
    loop {
        let (x, y) = tokio::join!(a.retain(room, now, 2), b.retain(room, now, 2));
        let (x, y) = (x.unwrap(), y.unwrap());
        retained.extend(x.tombstones.iter().chain(&y.tombstones).map(|m| m.seq));
        if x.tombstones.is_empty() && y.tombstones.is_empty() && !x.more && !y.more {
            break;
        }
    }
    retained.sort_unstable();
    assert_eq!(retained, (1..=29).collect::<Vec<_>>(), "each retained once");
    let told = seen_a
        .lock()
        .unwrap()
        .iter()
        .chain(seen_b.lock().unwrap().iter())
        .filter(|m| m.is_deleted())
        .count();
    assert_eq!(told, 29, "each tombstone reached a hook once");
}
