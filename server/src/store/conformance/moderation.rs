//! Conformance: moderation — roles changed only by admins or the operator, user bans (session
//! revocation, refusals, expiry, replacement), IP bans (canonical networks, expiry,
//! replacement), moderators' deletions, and the audit log of all of them, paged newest first.

use ipnet::IpNet;
use quibble_protocol::wire::UserId;

use crate::auth::hash_token;
use crate::store::{Actor, AuditAction, AuditPage, MAX_IP_BANS, OPERATOR, Role, Store, StoreError};

use super::harness::{Fixture, Harness, room, user};

/// A store with an operator-made admin `ann` and users `bob` and `cy`.
async fn setup<H: Harness>() -> (Fixture<H>, [UserId; 3]) {
    let t = Fixture::<H>::new().await;
    let mut ids = [UserId::NOBODY; 3];
    for (i, name) in ["ann", "bob", "cy"].iter().enumerate() {
        ids[i] = user(&t.store, name).await;
    }
    t.store
        .set_role(Actor::Operator, "ANN", Role::Admin)
        .await
        .unwrap();
    (t, ids)
}

/// The whole audit log, newest first, as (actor, action, target).
async fn actions(store: &Store) -> Vec<(String, &'static str, String)> {
    let page = store.audit_page(None, 500).await.unwrap();
    page.entries
        .into_iter()
        .map(|e| (e.actor, e.action.as_str(), e.target))
        .collect()
}

fn net(text: &str) -> IpNet {
    text.parse().expect("a network")
}

pub(super) async fn roles_change_only_through_admins_and_are_audited_once<H: Harness>() {
    let (t, [ann, bob, _]) = setup::<H>().await;
    let store = &t.store;
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
    assert_eq!((change.user.id, change.user.role), (bob, Role::Admin));
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
        actions(store).await,
        [
            ("bob".into(), "demote", "ann".into()),
            ("ann".into(), "promote", "bob".into()),
            ("operator".into(), "promote", "ann".into()),
        ]
    );
    store
        .set_role(Actor::User(bob), "bob", Role::User)
        .await
        .unwrap();
    assert!(!store.has_admin().await.unwrap(), "the last admin left");
}

pub(super) async fn a_ban_revokes_every_session_refuses_new_ones_and_ends<H: Harness>() {
    let (t, [ann, bob, cy]) = setup::<H>().await;
    let store = &t.store;
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
    assert_eq!(
        (ban.username.as_str(), ban.reason.as_str()),
        ("bob", "spam")
    );
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
    assert!(matches!(
        store.ban_user(Actor::Operator, "nobody", "x", None).await,
        Err(StoreError::NotFound)
    ));

    let lifted = store.unban_user(Actor::Operator, "bob").await.unwrap();
    assert!(lifted.changed);
    assert_eq!(lifted.user, bob);
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

    let logged = actions(store).await;
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

pub(super) async fn a_ban_is_replaced_refuses_logins_and_survives_a_reopen<H: Harness>() {
    let (t, [ann, bob, cy]) = setup::<H>().await;
    let first = t
        .store
        .ban_user(Actor::User(ann), "bob", "spam", Some(3_600_000))
        .await
        .unwrap();
    let second = t
        .store
        .ban_user(Actor::Operator, "bob", "worse", None)
        .await
        .unwrap();
    assert_eq!((second.until_ms, second.by.as_str()), (None, OPERATOR));
    let now = second.created_at_ms;
    assert_eq!(
        t.store.active_bans(now, 10).await.unwrap(),
        std::slice::from_ref(&second),
        "one ban per user: the later replaced the earlier"
    );
    assert!(first.until_ms.is_some());
    assert!(matches!(
        t.store
            .create_login_session(hash_token("x"), bob, u64::MAX, "phc-bob".into())
            .await,
        Err(StoreError::Banned { reason, until_ms: None }) if reason == "worse"
    ));

    let t = t.reopen().await;
    let store = &t.store;
    assert_eq!(store.ban_of(bob, now).await.unwrap(), Some(second.clone()));
    assert_eq!(store.ban_of(cy, now).await.unwrap(), None);
    assert_eq!(store.active_bans(now, 10).await.unwrap(), [second]);
    assert!(matches!(
        store.create_session(hash_token("y"), bob, u64::MAX).await,
        Err(StoreError::Banned { .. })
    ));
    // `limit` caps the list.
    store
        .ban_user(Actor::Operator, "cy", "too", None)
        .await
        .unwrap();
    assert_eq!(store.active_bans(now, 10).await.unwrap().len(), 2);
    assert_eq!(store.active_bans(now, 1).await.unwrap().len(), 1);
}

pub(super) async fn ip_bans_are_canonical_expire_and_are_audited<H: Harness>() {
    let (t, [ann, bob, _]) = setup::<H>().await;
    let store = &t.store;
    let ban = store
        .add_ip_ban(Actor::User(ann), net("10.1.2.3/8"), "abuse", None)
        .await
        .unwrap();
    assert_eq!(ban.network.to_string(), "10.0.0.0/8");
    assert_eq!((ban.reason.as_str(), ban.by.as_str()), ("abuse", "ann"));
    let host = net("::1/128");
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

    let same = net("10.0.0.0/8");
    assert!(matches!(
        store.remove_ip_ban(Actor::User(bob), same).await,
        Err(StoreError::NotAdmin)
    ));
    assert!(store.remove_ip_ban(Actor::User(ann), same).await.unwrap());
    assert!(!store.remove_ip_ban(Actor::User(ann), same).await.unwrap());
    assert_eq!(
        actions(store).await[..3],
        [
            ("ann".into(), "ip_ban_remove", "10.0.0.0/8".into()),
            ("operator".into(), "ip_ban_add", "::1/128".into()),
            ("ann".into(), "ip_ban_add", "10.0.0.0/8".into()),
        ]
    );
}

pub(super) async fn ip_bans_are_replaced_per_network_and_survive_a_reopen<H: Harness>() {
    let (t, [ann, ..]) = setup::<H>().await;
    let first = t
        .store
        .add_ip_ban(Actor::User(ann), net("192.0.2.0/24"), "first", Some(1_000))
        .await
        .unwrap();
    // The same network written another way replaces it.
    let second = t
        .store
        .add_ip_ban(Actor::Operator, net("192.0.2.77/24"), "second", None)
        .await
        .unwrap();
    let v6 = t
        .store
        .add_ip_ban(Actor::Operator, net("2001:db8::1/32"), "six", None)
        .await
        .unwrap();
    assert_eq!(v6.network.to_string(), "2001:db8::/32");
    let now = first.created_at_ms;
    assert_eq!(
        t.store.active_ip_bans(now).await.unwrap(),
        [second.clone(), v6.clone()]
    );

    let t = t.reopen().await;
    let store = &t.store;
    let later = now + 10_000;
    assert_eq!(
        store.active_ip_bans(later).await.unwrap(),
        [second, v6],
        "no end: still active later"
    );
    assert!(
        store
            .remove_ip_ban(Actor::Operator, net("192.0.2.1/24"))
            .await
            .unwrap()
    );
    let left: Vec<String> = store
        .active_ip_bans(later)
        .await
        .unwrap()
        .iter()
        .map(|b| b.network.to_string())
        .collect();
    assert_eq!(left, ["2001:db8::/32"]);
}

pub(super) async fn the_audit_log_pages_newest_first_and_survives_reopening<H: Harness>() {
    let t = Fixture::<H>::new().await;
    for name in ["u1", "u2", "u3", "u4", "u5"] {
        user(&t.store, name).await;
        t.store
            .set_role(Actor::Operator, name, Role::Admin)
            .await
            .unwrap();
    }
    let t = t.reopen().await;
    let store = &t.store;
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
    let all = store.audit_page(None, 10).await.unwrap();
    assert_eq!(all.entries.len(), 5);
    assert_eq!(all.next, None);
    assert!(
        all.entries.windows(2).all(|w| w[0].id > w[1].id),
        "newest first"
    );
    assert!(
        all.entries.windows(2).all(|w| w[0].at_ms >= w[1].at_ms),
        "ids ascend with time"
    );
    // New entries continue after the old ones.
    store
        .set_role(Actor::Operator, "u1", Role::User)
        .await
        .unwrap();
    let newest = &store.audit_page(None, 1).await.unwrap().entries[0];
    assert!(newest.id > all.entries[0].id);
    assert_eq!(
        (newest.action, newest.target.as_str()),
        (AuditAction::Demote, "u1")
    );
}

pub(super) async fn the_audit_log_keeps_who_why_and_the_actors_name_then<H: Harness>() {
    let (t, [ann, ..]) = setup::<H>().await;
    let store = &t.store;
    store
        .ban_user(Actor::User(ann), "bob", "spam links", Some(60_000))
        .await
        .unwrap();
    store
        .add_ip_ban(Actor::User(ann), net("198.51.100.0/24"), "flood", None)
        .await
        .unwrap();
    store.unban_user(Actor::User(ann), "bob").await.unwrap();
    let page = store.audit_page(None, 3).await.unwrap();
    let got: Vec<_> = page
        .entries
        .iter()
        .map(|e| {
            (
                e.actor_id,
                e.actor.as_str(),
                e.action,
                e.target.as_str(),
                e.reason.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (Some(ann), "ann", AuditAction::Unban, "bob", None),
            (
                Some(ann),
                "ann",
                AuditAction::IpBanAdd,
                "198.51.100.0/24",
                Some("flood")
            ),
            (
                Some(ann),
                "ann",
                AuditAction::Ban,
                "bob",
                Some("spam links")
            ),
        ]
    );
    assert!(page.entries.iter().all(|e| e.at_ms > 0));
    assert!(page.next.is_some(), "the operator's promotion is older");
}

pub(super) async fn a_moderators_deletion_is_audited_once_and_an_authors_is_not<H: Harness>() {
    let (t, [ann, bob, cy]) = setup::<H>().await;
    let store = &t.store;
    let lobby = room(store, "lobby", bob).await;
    for (i, (author, name)) in [(bob, "bob"), (cy, "cy"), (bob, "bob")]
        .into_iter()
        .enumerate()
    {
        store
            .append(lobby, author, name, i as u64, "text")
            .await
            .unwrap();
    }
    let told = t.hooked.messages().len();
    let audited = actions(store).await.len();

    let done = store
        .delete_message(lobby, 2, Some(Actor::User(ann)))
        .await
        .unwrap();
    assert!(done.changed && done.tombstone.is_deleted());
    assert_eq!(
        done.tombstone.author, cy,
        "the author stays on the tombstone"
    );
    let entry = &store.audit_page(None, 1).await.unwrap().entries[0];
    assert_eq!(
        (
            entry.actor_id,
            entry.actor.as_str(),
            entry.action,
            entry.target.as_str(),
            entry.reason.as_deref()
        ),
        (
            Some(ann),
            "ann",
            AuditAction::DeleteMessage,
            format!("{}/2", lobby.0).as_str(),
            None
        )
    );
    // An author's own deletion is no moderation; deleting a tombstone again audits nothing.
    store.delete_message(lobby, 3, None).await.unwrap();
    assert!(
        !store
            .delete_message(lobby, 2, Some(Actor::Operator))
            .await
            .unwrap()
            .changed
    );
    store
        .delete_message(lobby, 1, Some(Actor::Operator))
        .await
        .unwrap();
    let log = actions(store).await;
    assert_eq!(log.len(), audited + 2);
    assert_eq!(
        log[0],
        (
            OPERATOR.to_owned(),
            "delete_message",
            format!("{}/1", lobby.0)
        )
    );
    assert_eq!(
        t.hooked.messages().len(),
        told + 3,
        "each deletion told once"
    );
    assert_eq!(
        store.deletions_up_to(lobby, 3, 3, 10).await.unwrap(),
        [1, 2, 3]
    );
}

pub(super) async fn ip_bans_are_capped_and_expired_ones_make_room<H: Harness>() {
    let t = Fixture::<H>::new().await;
    let store = &t.store;
    // A /32 per ban: 10.0.0.0 upwards. The first expires almost at once.
    let network = |i: usize| -> IpNet {
        let i = u32::try_from(i).expect("small");
        IpNet::from(std::net::IpAddr::from(std::net::Ipv4Addr::from(
            0x0a00_0000 + i,
        )))
    };
    let blink = store
        .add_ip_ban(Actor::Operator, network(0), "blink", Some(1))
        .await
        .unwrap();
    let mut adds = tokio::task::JoinSet::new();
    for i in 1..MAX_IP_BANS {
        let store = store.clone();
        adds.spawn(async move {
            store
                .add_ip_ban(Actor::Operator, network(i), "flood", None)
                .await
        });
    }
    while let Some(done) = adds.join_next().await {
        done.unwrap().unwrap();
    }
    // Full of bans that have not ended (the blink ends after its own commit's clock).
    let active = store.active_ip_bans(blink.created_at_ms).await.unwrap();
    assert_eq!(active.len(), MAX_IP_BANS);
    // Replacing one is no new row, so it is allowed when full.
    store
        .add_ip_ban(Actor::Operator, network(5), "again", None)
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    // The blink has ended by now: its row makes room for one more, and then the table is full.
    store
        .add_ip_ban(Actor::Operator, net("192.0.2.1/32"), "one more", None)
        .await
        .unwrap();
    let audited = store.audit_page(None, 1).await.unwrap().entries[0].id;
    assert!(matches!(
        store
            .add_ip_ban(Actor::Operator, net("192.0.2.2/32"), "too many", None)
            .await,
        Err(StoreError::TooMany(_))
    ));
    assert_eq!(
        store.audit_page(None, 1).await.unwrap().entries[0].id,
        audited,
        "a refusal is not audited"
    );
    assert!(
        store
            .remove_ip_ban(Actor::Operator, network(7))
            .await
            .unwrap()
    );
    store
        .add_ip_ban(
            Actor::Operator,
            net("192.0.2.2/32"),
            "now there is room",
            None,
        )
        .await
        .unwrap();
    let now = blink.created_at_ms + 1_000;
    let active = store.active_ip_bans(now).await.unwrap();
    assert_eq!(active.len(), MAX_IP_BANS);
    assert!(!active.iter().any(|b| b.network == network(0)));
    assert!(active.iter().any(|b| b.network == net("192.0.2.2/32")));
}
