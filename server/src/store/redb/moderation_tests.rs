//! The redb engine's own test of its account indexes (admins, each user's sessions), filled
//! once in a file from before they existed; a real redb file in a temporary directory. Roles,
//! bans, IP bans, the audit log and password changes are tested for every engine in
//! `store::conformance`.

use std::path::Path;

use redb::{Database, TableHandle};
use tempfile::TempDir;

use super::tables::{ADMINS, META, META_ACCOUNT_INDEXES, USER_SESSIONS};
use super::*;
use crate::auth::hash_token;

const CACHE: usize = 4 * 1024 * 1024;

fn open(path: &Path) -> Redb {
    Redb::open(path, CACHE, Box::new(|_| {})).unwrap()
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
