//! The JSON API against a real server process: accounts, tokens, rooms, and clear errors.

mod support;

use serde_json::json;
use support::TestServer;

#[tokio::test]
async fn accounts_tokens_and_rooms() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data"));
    let api = server.api();

    let (status, body) = api.call("GET", "/healthz", None, None).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));

    let token = api.signup("Alice").await;
    let (status, me) = api.call("GET", "/api/account", Some(&token), None).await;
    assert_eq!(status, 200);
    assert_eq!(me["username"], "Alice");
    assert_eq!(
        me["role"], "user",
        "no sign-up makes an admin, not even the first"
    );
    let bob = api.signup("bob").await;
    let (_, bob_me) = api.call("GET", "/api/account", Some(&bob), None).await;
    assert_eq!(bob_me["role"], "user");

    // Names are case-insensitively unique.
    let (status, body) = api
        .call(
            "POST",
            "/api/signup",
            None,
            Some(json!({"username": "ALICE", "password": "another pass"})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("name_taken"))
    );

    // Login is case-insensitive on the name; a second token works alongside the first.
    let (status, login) = api
        .call(
            "POST",
            "/api/login",
            None,
            Some(json!({"username": "alice", "password": "correct horse"})),
        )
        .await;
    assert_eq!(status, 200);
    let second = login["token"].as_str().unwrap().to_owned();
    assert_ne!(second, token);

    // Rooms.
    let general = api.create_room(&token, "  General ").await;
    let (status, body) = api
        .call(
            "POST",
            "/api/rooms",
            Some(&bob),
            Some(json!({"name": "general"})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("name_taken"))
    );
    api.create_room(&bob, "banter").await;
    let (status, list) = api.call("GET", "/api/rooms", Some(&bob), None).await;
    assert_eq!(status, 200);
    let names: Vec<&str> = list["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["General", "banter"], "in creation order");
    assert_eq!(list["rooms"][0]["id"].as_u64(), Some(general.0));
    assert_eq!(list["rooms"][0]["head_seq"].as_u64(), Some(0));
    assert!(list["next"].is_null(), "one page");

    // Logout revokes exactly that token.
    let (status, _) = api.call("POST", "/api/logout", Some(&token), None).await;
    assert_eq!(status, 204);
    let (status, body) = api.call("GET", "/api/account", Some(&token), None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
    let (status, _) = api.call("GET", "/api/account", Some(&second), None).await;
    assert_eq!(status, 200);

    // The certificate hash browsers pin.
    let (status, cert) = api.call("GET", "/api/cert", None, None).await;
    assert_eq!(status, 200);
    assert_eq!(cert["sha256_hex"].as_str().unwrap().len(), 64);
    assert_eq!(
        cert["webtransport_port"].as_u64(),
        Some(u64::from(server.port))
    );
}

#[tokio::test]
async fn bad_requests_get_clear_json_errors_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data"));
    let api = server.api();
    let token = api.signup("carol").await;

    let cases = [
        (
            "POST",
            "/api/login",
            None,
            Some(json!({"username": "carol", "password": "wrong password"})),
            401,
            "invalid_credentials",
        ),
        (
            "POST",
            "/api/login",
            None,
            Some(json!({"username": "nobody", "password": "whatever1"})),
            401,
            "invalid_credentials",
        ),
        (
            "POST",
            "/api/signup",
            None,
            Some(json!({"username": "a", "password": "long enough"})),
            400,
            "invalid_username",
        ),
        (
            "POST",
            "/api/signup",
            None,
            Some(json!({"username": "bad name!", "password": "long enough"})),
            400,
            "invalid_username",
        ),
        (
            "POST",
            "/api/signup",
            None,
            Some(json!({"username": "dave", "password": "short"})),
            400,
            "invalid_password",
        ),
        (
            "POST",
            "/api/signup",
            None,
            Some(json!({"username": "dave"})),
            400,
            "bad_request",
        ),
        (
            "POST",
            "/api/rooms",
            Some(token.as_str()),
            Some(json!({"name": "   "})),
            400,
            "invalid_room_name",
        ),
        (
            "POST",
            "/api/rooms",
            None,
            Some(json!({"name": "x"})),
            401,
            "unauthorized",
        ),
        (
            "GET",
            "/api/rooms",
            Some("not-a-token"),
            None,
            401,
            "unauthorized",
        ),
        ("GET", "/api/nope", None, None, 404, "not_found"),
    ];
    for (method, path, auth, body, status, code) in cases {
        let (got, err) = api.call(method, path, auth, body.clone()).await;
        assert_eq!(
            (got, err["error"]["code"].as_str()),
            (status, Some(code)),
            "{method} {path} {body:?}: {err}"
        );
        assert!(
            err["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }

    // Not JSON at all, and too large.
    let resp = api
        .http
        .post(format!("{}/api/signup", api.base))
        .body("username=x")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 415);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unsupported_media_type");
    let huge = json!({"username": "x".repeat(100_000), "password": "long enough"});
    let (status, err) = api.call("POST", "/api/signup", None, Some(huge)).await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (413, Some("payload_too_large"))
    );

    // None of that created anything.
    let (_, rooms) = api.call("GET", "/api/rooms", Some(&token), None).await;
    assert_eq!(rooms["rooms"].as_array().unwrap().len(), 0);
    let (status, _) = api
        .call(
            "POST",
            "/api/login",
            None,
            Some(json!({"username": "dave", "password": "short"})),
        )
        .await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn password_guessing_is_rate_limited() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data"));
    let api = server.api();
    api.signup("erin").await;
    // Logging in often (scripts do) is never limited: only failures count.
    for _ in 0..25 {
        api.login("erin").await;
    }
    let mut statuses = Vec::new();
    for _ in 0..12 {
        let (status, _) = api
            .call(
                "POST",
                "/api/login",
                None,
                Some(json!({"username": "erin", "password": "guess guess"})),
            )
            .await;
        statuses.push(status);
    }
    assert!(statuses[..10].iter().all(|s| *s == 401), "{statuses:?}");
    assert_eq!(statuses[11], 429, "{statuses:?}");
    let resp = api
        .http
        .post(format!("{}/api/login", api.base))
        .json(&json!({"username": "erin", "password": "correct horse"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        429,
        "even the right password waits out the lockout"
    );
    assert!(resp.headers().get("retry-after").is_some());
}
