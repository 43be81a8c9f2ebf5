//! Roles, user bans, IP bans, the audit log and password changes over the JSON API, and
//! `quibble admin` against a running server (its admin socket) and a stopped one (its data
//! directory): the real binary, a real redb file.

mod support;

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::time::Duration;

use serde_json::{Value, json};
use support::{Api, TestServer, promote, quibble_admin};

/// Every admin endpoint: method, path, a valid body.
fn admin_endpoints() -> Vec<(&'static str, &'static str, Option<Value>)> {
    vec![
        (
            "POST",
            "/api/admin/promote",
            Some(json!({"username": "mal"})),
        ),
        (
            "POST",
            "/api/admin/demote",
            Some(json!({"username": "ann"})),
        ),
        (
            "POST",
            "/api/users/ban",
            Some(json!({"username": "bob", "reason": "spam"})),
        ),
        ("POST", "/api/users/unban", Some(json!({"username": "bob"}))),
        ("GET", "/api/admin/bans", None),
        ("GET", "/api/admin/ip-bans", None),
        (
            "POST",
            "/api/admin/ip-bans",
            Some(json!({"network": "203.0.113.0/24", "reason": "x"})),
        ),
        (
            "POST",
            "/api/admin/ip-bans/remove",
            Some(json!({"network": "203.0.113.0/24"})),
        ),
        ("GET", "/api/admin/audit", None),
    ]
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

async fn role(api: &Api, token: &str) -> String {
    let (status, me) = api.call("GET", "/api/account", Some(token), None).await;
    assert_eq!(status, 200, "{me}");
    me["role"].as_str().unwrap().to_owned()
}

async fn login_as(api: &Api, username: &str, password: &str) -> (u16, Value) {
    api.call(
        "POST",
        "/api/login",
        None,
        Some(json!({"username": username, "password": password})),
    )
    .await
}

async fn audit(api: &Api, token: &str, query: &str) -> Value {
    let (status, page) = api
        .call(
            "GET",
            &format!("/api/admin/audit{query}"),
            Some(token),
            None,
        )
        .await;
    assert_eq!(status, 200, "{page}");
    page
}

/// (actor, action, target) of each entry of a page, as listed.
fn entries(page: &Value) -> Vec<(String, String, String)> {
    page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["actor"].as_str().unwrap().to_owned(),
                e["action"].as_str().unwrap().to_owned(),
                e["target"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn triple(actor: &str, action: &str, target: &str) -> (String, String, String) {
    (actor.into(), action.into(), target.into())
}

#[tokio::test]
async fn a_user_is_refused_every_admin_endpoint_and_cannot_become_admin() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data"));
    let api = server.api();
    let mal = api.signup("mal").await;
    let ann = api.signup("ann").await;
    api.signup("bob").await;
    assert_eq!(
        role(&api, &mal).await,
        "user",
        "the first account is a user"
    );
    assert_eq!(
        server
            .log()
            .matches("no admin yet: run `quibble admin promote NAME`")
            .count(),
        1,
        "serve says once how to make the first admin"
    );
    promote(&server, "ann");
    assert_eq!(role(&api, &ann).await, "admin");

    for (method, path, body) in admin_endpoints() {
        let (status, answer) = api.call(method, path, None, body.clone()).await;
        assert_eq!((status, code(&answer)), (401, "unauthorized"), "{path}");
        let (status, answer) = api.call(method, path, Some(&mal), body).await;
        assert_eq!((status, code(&answer)), (403, "forbidden"), "{path}");
    }
    // Promoting oneself is the same refusal; nothing changed.
    let (status, _) = api
        .call(
            "POST",
            "/api/admin/promote",
            Some(&mal),
            Some(json!({"username": "mal"})),
        )
        .await;
    assert_eq!(status, 403);
    assert_eq!(role(&api, &mal).await, "user");
    let (status, bans) = api.call("GET", "/api/admin/bans", Some(&ann), None).await;
    assert_eq!((status, bans), (200, json!({"bans": []})));
    let (_, ip_bans) = api
        .call("GET", "/api/admin/ip-bans", Some(&ann), None)
        .await;
    assert_eq!(ip_bans, json!({"ip_bans": []}));
    let page = audit(&api, &ann, "").await;
    assert_eq!(entries(&page), [triple("operator", "promote", "ann")]);
}

#[tokio::test]
async fn admins_promote_demote_ban_and_unban_and_the_audit_log_lists_each_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data"));
    let api = server.api();
    let ann = api.signup("ann").await;
    let bob = api.signup("bob").await;
    let carl = api.signup("carl").await;
    let carl_second = api.login("carl").await;
    promote(&server, "ann");

    // Promote and demote.
    let (status, user) = api
        .call(
            "POST",
            "/api/admin/promote",
            Some(&ann),
            Some(json!({"username": "BOB"})),
        )
        .await;
    assert_eq!(
        (status, user["username"].as_str(), user["role"].as_str()),
        (200, Some("bob"), Some("admin"))
    );
    assert_eq!(role(&api, &bob).await, "admin");
    // An admin cannot be banned without being demoted first.
    let (status, answer) = api
        .call(
            "POST",
            "/api/users/ban",
            Some(&ann),
            Some(json!({"username": "bob", "reason": "test"})),
        )
        .await;
    assert_eq!((status, code(&answer)), (409, "target_is_admin"));
    let (status, user) = api
        .call(
            "POST",
            "/api/admin/demote",
            Some(&ann),
            Some(json!({"username": "bob"})),
        )
        .await;
    assert_eq!((status, user["role"].as_str()), (200, Some("user")));
    assert_eq!(role(&api, &bob).await, "user");

    // Bad bans change nothing.
    for (body, status, expected) in [
        (
            json!({"username": "carl", "reason": "  "}),
            400,
            "invalid_reason",
        ),
        (
            json!({"username": "carl", "reason": "x".repeat(501)}),
            400,
            "invalid_reason",
        ),
        (
            json!({"username": "carl", "reason": "x", "duration_secs": 0}),
            400,
            "invalid_duration",
        ),
        (
            json!({"username": "nobody", "reason": "x"}),
            404,
            "unknown_user",
        ),
        (json!({"username": "carl"}), 400, "bad_request"),
    ] {
        let (got, answer) = api
            .call("POST", "/api/users/ban", Some(&ann), Some(body.clone()))
            .await;
        assert_eq!((got, code(&answer)), (status, expected), "{body}");
    }
    assert_eq!(role(&api, &carl).await, "user", "carl is still signed in");

    // A ban revokes every token and refuses login with the reason.
    let (status, ban) = api
        .call(
            "POST",
            "/api/users/ban",
            Some(&ann),
            Some(json!({"username": "carl", "reason": " spam "})),
        )
        .await;
    assert_eq!(status, 200, "{ban}");
    assert_eq!(ban["user"]["username"], "carl");
    assert_eq!(
        (ban["reason"].as_str(), ban["by"].as_str()),
        (Some("spam"), Some("ann"))
    );
    assert!(ban["until_ms"].is_null());
    for token in [&carl, &carl_second] {
        let (status, _) = api.call("GET", "/api/account", Some(token), None).await;
        assert_eq!(status, 401, "a banned user's old token is refused");
    }
    let (status, answer) = login_as(&api, "carl", "correct horse").await;
    assert_eq!((status, code(&answer)), (403, "banned"));
    assert_eq!(answer["error"]["message"], "banned: spam");
    let (status, answer) = login_as(&api, "carl", "wrong password").await;
    assert_eq!(
        (status, code(&answer)),
        (401, "invalid_credentials"),
        "the ban is told only to who knows the password"
    );
    let (_, bans) = api.call("GET", "/api/admin/bans", Some(&ann), None).await;
    assert_eq!(bans["bans"].as_array().unwrap().len(), 1);
    assert_eq!(bans["bans"][0], ban);

    // Unban lets them in again.
    let (status, answer) = api
        .call(
            "POST",
            "/api/users/unban",
            Some(&ann),
            Some(json!({"username": "carl"})),
        )
        .await;
    assert_eq!(
        (status, answer),
        (200, json!({"user": ban["user"], "changed": true}))
    );
    let (_, answer) = api
        .call(
            "POST",
            "/api/users/unban",
            Some(&ann),
            Some(json!({"username": "carl"})),
        )
        .await;
    assert_eq!(answer["changed"], false);
    let carl = api.login("carl").await;

    // A temporary ban ends by itself.
    let (status, ban) = api
        .call(
            "POST",
            "/api/users/ban",
            Some(&ann),
            Some(json!({"username": "carl", "reason": "cool off", "duration_secs": 1})),
        )
        .await;
    assert_eq!(status, 200);
    let until_ms = ban["until_ms"].as_u64().unwrap();
    assert_eq!(until_ms, ban["created_at_ms"].as_u64().unwrap() + 1000);
    let (status, answer) = api.call("GET", "/api/account", Some(&carl), None).await;
    assert_eq!(status, 401, "{answer}");
    let (status, answer) = login_as(&api, "carl", "correct horse").await;
    assert_eq!((status, code(&answer)), (403, "banned"));
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("banned until 20"),
        "{answer}"
    );
    tokio::time::sleep(Duration::from_millis(1300)).await;
    api.login("carl").await;
    let (_, bans) = api.call("GET", "/api/admin/bans", Some(&ann), None).await;
    assert_eq!(bans, json!({"bans": []}), "an expired ban is not listed");

    // The audit log: each action once, newest first, in pages.
    let expected = [
        triple("ann", "ban", "carl"),
        triple("ann", "unban", "carl"),
        triple("ann", "ban", "carl"),
        triple("ann", "demote", "bob"),
        triple("ann", "promote", "bob"),
        triple("operator", "promote", "ann"),
    ];
    let all = audit(&api, &ann, "").await;
    assert_eq!(entries(&all), expected);
    assert_eq!(all["next"], Value::Null);
    let newest = &all["entries"][0];
    assert_eq!(
        (
            newest["reason"].as_str(),
            newest["actor_id"].as_u64().is_some()
        ),
        (Some("cool off"), true)
    );
    assert!(all["entries"][1]["reason"].is_null());
    let mut paged = Vec::new();
    let mut query = "?limit=4".to_owned();
    loop {
        let page = audit(&api, &ann, &query).await;
        assert!(page["entries"].as_array().unwrap().len() <= 4);
        paged.extend(entries(&page));
        match page["next"].as_u64() {
            Some(next) => query = format!("?limit=4&before={next}"),
            None => break,
        }
    }
    assert_eq!(paged, expected);
    for bad in ["?limit=0", "?limit=501", "?before=x"] {
        let (status, answer) = api
            .call("GET", &format!("/api/admin/audit{bad}"), Some(&ann), None)
            .await;
        assert_eq!((status, code(&answer)), (400, "bad_request"), "{bad}");
    }
}

#[tokio::test]
async fn ip_bans_round_trip_and_refuse_what_is_not_a_network() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data"));
    let api = server.api();
    let ann = api.signup("ann").await;
    promote(&server, "ann");

    for (given, stored, duration) in [
        ("203.0.113.77/24", "203.0.113.0/24", None),
        ("198.51.100.7", "198.51.100.7/32", Some(3600)),
        ("2001:db8::1", "2001:db8::1/128", None),
        ("2001:db8:5::/48", "2001:db8:5::/48", None),
    ] {
        let mut body = json!({"network": given, "reason": "abuse"});
        if let Some(secs) = duration {
            body["duration_secs"] = json!(secs);
        }
        let (status, ban) = api
            .call("POST", "/api/admin/ip-bans", Some(&ann), Some(body))
            .await;
        assert_eq!(status, 201, "{ban}");
        assert_eq!(
            (ban["network"].as_str(), ban["by"].as_str()),
            (Some(stored), Some("ann"))
        );
        assert_eq!(ban["until_ms"].is_null(), duration.is_none());
    }
    for bad in ["example.com", "10.0.0.0/33", "2001:db8::/129", "", "1.2.3"] {
        let (status, answer) = api
            .call(
                "POST",
                "/api/admin/ip-bans",
                Some(&ann),
                Some(json!({"network": bad, "reason": "x"})),
            )
            .await;
        assert_eq!((status, code(&answer)), (400, "invalid_network"), "{bad:?}");
    }
    let (status, answer) = api
        .call(
            "POST",
            "/api/admin/ip-bans",
            Some(&ann),
            Some(json!({"network": "192.0.2.1", "reason": ""})),
        )
        .await;
    assert_eq!((status, code(&answer)), (400, "invalid_reason"));

    let (_, listed) = api
        .call("GET", "/api/admin/ip-bans", Some(&ann), None)
        .await;
    let networks: Vec<&str> = listed["ip_bans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["network"].as_str().unwrap())
        .collect();
    assert_eq!(
        networks,
        [
            "198.51.100.7/32",
            "2001:db8:5::/48",
            "2001:db8::1/128",
            "203.0.113.0/24"
        ]
    );

    let remove = |network: &'static str| {
        let api = &api;
        let ann = &ann;
        async move {
            api.call(
                "POST",
                "/api/admin/ip-bans/remove",
                Some(ann),
                Some(json!({"network": network})),
            )
            .await
        }
    };
    assert_eq!(
        remove("203.0.113.1/24").await,
        (200, json!({"network": "203.0.113.0/24", "changed": true}))
    );
    assert_eq!(
        remove("203.0.113.0/24").await,
        (200, json!({"network": "203.0.113.0/24", "changed": false}))
    );
    let (status, answer) = remove("nonsense").await;
    assert_eq!((status, code(&answer)), (400, "invalid_network"));
    let (_, listed) = api
        .call("GET", "/api/admin/ip-bans", Some(&ann), None)
        .await;
    assert_eq!(listed["ip_bans"].as_array().unwrap().len(), 3);

    let page = audit(&api, &ann, "?limit=2").await;
    assert_eq!(
        entries(&page),
        [
            triple("ann", "ip_ban_remove", "203.0.113.0/24"),
            triple("ann", "ip_ban_add", "2001:db8:5::/48"),
        ]
    );
    let all = audit(&api, &ann, "").await;
    assert_eq!(
        all["entries"].as_array().unwrap().len(),
        6,
        "4 adds, 1 removal, 1 promotion"
    );
}

#[tokio::test]
async fn a_password_change_revokes_other_sessions_and_keeps_the_caller_signed_in() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data"));
    let api = server.api();
    let first = api.signup("dave").await;
    let second = api.login("dave").await;
    let change = |current: &str, new: &str| json!({"current": current, "new": new});

    let (status, answer) = api
        .call(
            "POST",
            "/api/account/password",
            Some(&first),
            Some(change("not it at all", "brand new pass")),
        )
        .await;
    assert_eq!((status, code(&answer)), (403, "wrong_password"));
    let (status, answer) = api
        .call(
            "POST",
            "/api/account/password",
            Some(&first),
            Some(change("correct horse", "short")),
        )
        .await;
    assert_eq!((status, code(&answer)), (400, "invalid_password"));
    let (status, _) = api
        .call(
            "POST",
            "/api/account/password",
            None,
            Some(change("correct horse", "brand new pass")),
        )
        .await;
    assert_eq!(status, 401);
    assert_eq!(
        role(&api, &second).await,
        "user",
        "failed changes revoke nothing"
    );

    let (status, fresh) = api
        .call(
            "POST",
            "/api/account/password",
            Some(&first),
            Some(change("correct horse", "brand new pass")),
        )
        .await;
    assert_eq!(status, 200, "{fresh}");
    assert!(fresh["expires_at_ms"].as_u64().is_some());
    let fresh = fresh["token"].as_str().unwrap();
    for old in [&first, &second] {
        let (status, _) = api.call("GET", "/api/account", Some(old), None).await;
        assert_eq!(status, 401, "old sessions are revoked");
    }
    assert_eq!(
        role(&api, fresh).await,
        "user",
        "the caller stays signed in"
    );
    let (status, _) = login_as(&api, "dave", "correct horse").await;
    assert_eq!(status, 401);
    let (status, _) = login_as(&api, "dave", "brand new pass").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn quibble_admin_works_through_the_socket_and_on_a_stopped_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = TestServer::start(&data);
    let api = server.api();
    api.signup("ann").await;
    let erin = api.signup("erin").await;

    // The socket: only the server's user may use it.
    let socket = data.join("admin.sock");
    let meta = std::fs::metadata(&socket).expect("the admin socket exists");
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);

    // While the server runs: through its socket, effective at once.
    let run = server.admin(&["promote", "ann"]);
    assert!(run.ok, "{run:?}");
    assert_eq!(run.stdout, "admin\tann\n");
    let run = server.admin(&["ban", "erin", "--reason", "spam", "--for", "1h"]);
    assert!(run.ok, "{run:?}");
    assert!(run.stdout.starts_with("banned\terin\t20"), "{run:?}");
    assert!(run.stdout.ends_with("\tspam\n"), "{run:?}");
    let (status, _) = api.call("GET", "/api/account", Some(&erin), None).await;
    assert_eq!(status, 401, "the ban took effect in the running server");
    let run = server.admin(&["ban", "ann", "--reason", "x"]);
    assert!(!run.ok);
    assert!(
        run.stderr.contains("ann is an admin: demote them first"),
        "{run:?}"
    );
    let run = server.admin(&["ip-ban", "add", "192.0.2.0/24", "--reason", "abuse"]);
    assert!(run.ok, "{run:?}");
    let run = server.admin(&["ip-ban", "list"]);
    assert_eq!(run.stdout, "192.0.2.0/24\t-\toperator\tabuse\n", "{run:?}");
    let run = server.admin(&["ip-ban", "add", "not-a-network", "--reason", "x"]);
    assert!(
        !run.ok && run.stderr.contains("not an IP address"),
        "{run:?}"
    );

    // A server that holds the store but has no reachable socket is reported, not bypassed.
    std::fs::rename(&socket, data.join("moved.sock")).unwrap();
    let run = server.admin(&["unban", "erin"]);
    assert!(!run.ok);
    assert!(run.stderr.contains("a server holds the store"), "{run:?}");
    std::fs::rename(data.join("moved.sock"), &socket).unwrap();

    let status = server.stop();
    assert!(status.success());
    assert!(!socket.exists(), "the socket is removed at shutdown");

    // Stopped: on the data directory itself, also past a socket a crashed server left behind.
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    assert!(socket.exists());
    let run = quibble_admin(&data, &["unban", "erin"]);
    assert!(run.ok, "{run:?}");
    assert_eq!(run.stdout, "unbanned\terin\n");
    let run = quibble_admin(&data, &["ip-ban", "remove", "192.0.2.0/24"]);
    assert_eq!(run.stdout, "removed\t192.0.2.0/24\n", "{run:?}");
    let run = quibble_admin(&data, &["audit", "--limit", "10"]);
    assert!(run.ok, "{run:?}");
    let actions: Vec<(String, String, String)> = run
        .stdout
        .lines()
        .map(|line| {
            let fields: Vec<&str> = line.split('\t').collect();
            triple(fields[2], fields[3], fields[4])
        })
        .collect();
    assert_eq!(
        actions,
        [
            triple("operator", "ip_ban_remove", "192.0.2.0/24"),
            triple("operator", "unban", "erin"),
            triple("operator", "ip_ban_add", "192.0.2.0/24"),
            triple("operator", "ban", "erin"),
            triple("operator", "promote", "ann"),
        ]
    );
    let run = quibble_admin(&dir.path().join("elsewhere"), &["audit"]);
    assert!(!run.ok && run.stderr.contains("no store at"), "{run:?}");

    // The next server replaces the stale socket, sees what was done offline, and knows it has
    // an admin.
    let server = TestServer::start(&data);
    let api = server.api();
    let run = server.admin(&["audit", "--limit", "1"]);
    assert!(run.ok, "served by the new server's socket: {run:?}");
    assert_eq!(run.stdout.lines().count(), 1);
    api.login("erin").await;
    let ann = api.login("ann").await;
    assert_eq!(role(&api, &ann).await, "admin");
    assert!(!server.log().contains("no admin yet"));
    let (_, listed) = api
        .call("GET", "/api/admin/ip-bans", Some(&ann), None)
        .await;
    assert_eq!(listed, json!({"ip_bans": []}));
}
