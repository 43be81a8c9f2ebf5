//! The client library's room list against the real `quibble` server: pages with a cursor, and
//! `Api::rooms` pages through to the end.

use quibble_test_support as support;

use quibble_client::{Api, ConversationId};
use support::TestServer;

const PASSWORD: &str = "correct horse battery";

#[tokio::test]
async fn the_room_list_pages_and_rooms_reads_every_page() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path());
    let api = Api::new(&server.url()).unwrap();
    let mut created = Vec::new();
    let mut token = String::new();
    for user in ["alice", "bob"] {
        token = api.signup(user, PASSWORD).await.unwrap().token;
        for i in 0..3 {
            let room = api
                .create_room(&token, &format!("{user} {i}"))
                .await
                .unwrap();
            created.push(room.id);
        }
    }

    let mut paged: Vec<ConversationId> = Vec::new();
    let mut after = None;
    loop {
        let page = api.rooms_page(&token, after, 4).await.unwrap();
        assert!(page.rooms.len() <= 4);
        paged.extend(page.rooms.iter().map(|r| r.id));
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(paged, created);
    let all: Vec<_> = api
        .rooms(&token)
        .await
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(all, created);

    let refused = api.rooms_page(&token, None, 0).await.unwrap_err();
    assert!(refused.to_string().contains("limit"), "{refused}");
}
