//! Rooms through the JSON API of a real server process: look-alike names are one name (or
//! refused), room creation is rate-limited per user, and the room list comes in pages.

mod support;

use serde_json::{Value, json};
use support::TestServer;

async fn post_room(api: &support::Api, token: &str, name: &str) -> (u16, Value) {
    api.call(
        "POST",
        "/api/rooms",
        Some(token),
        Some(json!({ "name": name })),
    )
    .await
}

fn code(body: &Value) -> Option<&str> {
    body["error"]["code"].as_str()
}

#[tokio::test]
async fn look_alike_room_names_are_taken_or_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data"));
    let api = server.api();
    let alice = api.signup("alice").await;
    let bob = api.signup("bob").await;
    api.create_room(&alice, "General").await;
    api.create_room(&alice, "Caf\u{e9}").await;

    // Each of these shows as "General" (or "Café") and must not become a second room.
    for (name, expected) in [
        ("general", "name_taken"),
        ("Genera\u{217c}", "name_taken"),
        ("G\u{435}neral", "name_taken"),
        ("Cafe\u{301}", "name_taken"),
        ("general\u{200b}", "invalid_room_name"),
        ("gen\u{202e}eral", "invalid_room_name"),
        ("\u{200b}\u{2060}", "invalid_room_name"),
    ] {
        let (status, body) = post_room(&api, &bob, name).await;
        let want = if expected == "name_taken" { 409 } else { 400 };
        assert_eq!(
            (status, code(&body)),
            (want, Some(expected)),
            "{name:?}: {body}"
        );
        assert!(!body["error"]["message"].as_str().unwrap_or("").is_empty());
    }
    let (_, body) = post_room(&api, &bob, "gen\u{202e}eral").await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("bidirectional"),
        "{body}"
    );

    // Names in other scripts and with emoji are fine, stored in NFC.
    for name in [
        "Общий чат",
        "一般",
        "عام",
        "👨\u{200d}👩\u{200d}👧 family",
        "\u{2764}\u{fe0f}",
    ] {
        let (status, body) = post_room(&api, &bob, name).await;
        assert_eq!(status, 201, "{name:?}: {body}");
        assert_eq!(body["name"].as_str(), Some(name));
    }
    let (_, list) = api.call("GET", "/api/rooms", Some(&bob), None).await;
    let names: Vec<&str> = list["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 7, "{names:?}");
    assert_eq!(names[..2], ["General", "Caf\u{e9}"]);
}

#[tokio::test]
async fn room_creation_is_rate_limited_per_user() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with_config(
        &dir.path().join("data"),
        "rooms_per_hour = 1\nroom_burst = 3\n",
    );
    let api = server.api();
    let alice = api.signup("alice").await;
    let bob = api.signup("bob").await;
    for i in 0..3 {
        api.create_room(&alice, &format!("room {i}")).await;
    }
    let response = api
        .http
        .post(format!("{}/api/rooms", server.http()))
        .bearer_auth(&alice)
        .json(&json!({"name": "one too many"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 429);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=3600).contains(&retry_after), "{retry_after}");
    let body: Value = response.json().await.unwrap();
    assert_eq!(code(&body), Some("rate_limited"));

    // Nothing was created, and the quota is per user.
    let (_, list) = api.call("GET", "/api/rooms", Some(&bob), None).await;
    assert_eq!(list["rooms"].as_array().unwrap().len(), 3);
    api.create_room(&bob, "bob's room").await;
}

#[tokio::test]
async fn the_room_list_comes_in_pages() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data"));
    let api = server.api();
    let mut created = Vec::new();
    for user in ["alice", "bob"] {
        let token = api.signup(user).await;
        for i in 0..4 {
            created.push(api.create_room(&token, &format!("{user} {i}")).await.0);
        }
    }
    let token = api.login("alice").await;

    let mut listed = Vec::new();
    let mut path = "/api/rooms?limit=3".to_owned();
    let mut pages = 0;
    loop {
        let (status, page) = api.call("GET", &path, Some(&token), None).await;
        assert_eq!(status, 200, "{page}");
        let rooms = page["rooms"].as_array().unwrap();
        assert!(rooms.len() <= 3);
        listed.extend(rooms.iter().map(|r| r["id"].as_u64().unwrap()));
        pages += 1;
        match page["next"].as_u64() {
            Some(next) => path = format!("/api/rooms?limit=3&after={next}"),
            None => break,
        }
    }
    assert_eq!(listed, created, "every room once, in creation order");
    assert_eq!(pages, 3);

    for bad in [
        "/api/rooms?limit=0",
        "/api/rooms?limit=501",
        "/api/rooms?limit=-1",
        "/api/rooms?after=abc",
    ] {
        let (status, body) = api.call("GET", bad, Some(&token), None).await;
        assert_eq!(
            (status, code(&body)),
            (400, Some("bad_request")),
            "{bad}: {body}"
        );
    }
}
