//! End-to-end tests of `quibble-chat`'s social commands: the real binary against the real
//! `quibble` server. The scripted commands (`add`, `friends`, `remove`, `dm`, `join`, `leave`,
//! `conversations` with unread counts) run to completion; the interactive chat's `/dm`,
//! `/friends`, "seen by", "is typing…" and a live deletion are driven over its stdin while
//! another user acts through the client library. Every run is bounded.

mod chat_cli;

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use chat_cli::{LIMIT, PASSWORD, chat_command, fails, ok};
use quibble_client::{Api, Client, ClientEvent, ClientOptions, Event, TransportChoice};
use quibble_test_support::{TestServer, wait_with_limit};

/// How long the interactive chat gets to print an expected line.
const LINE_WAIT: Duration = Duration::from_secs(20);

#[test]
fn friends_dms_membership_and_unread_counts_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path());
    for user in ["alice", "bob"] {
        assert_eq!(
            ok(&server, user, &["signup"]),
            format!("signed up {user}\n")
        );
    }
    assert_eq!(ok(&server, "alice", &["add", "bob"]), "requested\tbob\n");
    assert_eq!(ok(&server, "bob", &["friends"]), "incoming\talice\n");
    assert_eq!(ok(&server, "bob", &["add", "alice"]), "accepted\talice\n");
    assert_eq!(ok(&server, "alice", &["friends"]), "friend\tbob\n");
    assert_eq!(
        ok(&server, "alice", &["dm", "bob", "hello", "bob"]),
        "sent 1\n"
    );

    ok(&server, "alice", &["create-room", "Lobby"]);
    assert_eq!(ok(&server, "bob", &["join", "lobby"]), "joined Lobby\n");
    assert_eq!(ok(&server, "bob", &["join", "lobby"]), "already in Lobby\n");
    assert_eq!(ok(&server, "alice", &["send", "lobby", "one"]), "sent 1\n");
    assert_eq!(ok(&server, "alice", &["send", "lobby", "two"]), "sent 2\n");

    // Most recent activity first, with Bob's unread counts.
    let listed = ok(&server, "bob", &["conversations"]);
    let rows: Vec<Vec<&str>> = listed.lines().map(|l| l.split('\t').collect()).collect();
    let shape: Vec<(&str, &str, &str)> = rows.iter().map(|r| (r[1], r[2], r[3])).collect();
    assert_eq!(
        shape,
        [("room", "Lobby", "2"), ("dm", "alice", "1")],
        "{listed}"
    );

    assert_eq!(ok(&server, "bob", &["leave", "lobby"]), "left Lobby\n");
    assert_eq!(ok(&server, "bob", &["leave", "lobby"]), "not in Lobby\n");
    let listed = ok(&server, "bob", &["conversations"]);
    assert_eq!(listed.lines().count(), 1, "{listed}");
    assert!(listed.contains("\tdm\talice\t1"), "{listed}");

    assert_eq!(
        ok(&server, "bob", &["remove", "alice"]),
        "unfriended\talice\n"
    );
    assert_eq!(ok(&server, "alice", &["friends"]), "");
    let refused = fails(&server, "alice", &["dm", "bob", "still there?"]);
    assert!(refused.contains("not your friend"), "{refused}");
    let unknown = fails(&server, "alice", &["add", "nobody"]);
    assert!(unknown.contains("no user named \"nobody\""), "{unknown}");
}

/// Lines of a child's stdout, read on a thread.
struct Lines {
    rx: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Lines {
    /// Wait for a line containing `text`; panics with everything seen if none comes in time.
    fn expect(&mut self, text: &str) {
        let deadline = Instant::now() + LINE_WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => {
                    let found = line.contains(text);
                    self.seen.push(line);
                    if found {
                        return;
                    }
                }
                Err(_) => panic!("no line with {text:?}; output so far:\n{:#?}", self.seen),
            }
        }
    }
}

async fn wait_for(client: &Client, mut pick: impl FnMut(&Event) -> bool) {
    let deadline = tokio::time::Instant::now() + LINE_WAIT;
    loop {
        let event = tokio::time::timeout_at(deadline, client.next_event())
            .await
            .expect("the awaited event in time")
            .expect("the client is still running");
        if let ClientEvent::Session(event) = event
            && pick(&event)
        {
            return;
        }
    }
}

// Multi-threaded: the test blocks on the chat's output while Bob's client works on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_interactive_chat_opens_a_dm_and_shows_seen_typing_and_requests() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path());
    let api = Api::new(&server.url()).unwrap();
    api.signup("alice", PASSWORD).await.unwrap();
    let bob_login = api.signup("bob", PASSWORD).await.unwrap();
    let carol = api.signup("carol", PASSWORD).await.unwrap();
    api.add_friend(&bob_login.token, "alice").await.unwrap();
    // Alice accepts from the terminal, further down.
    let bob = Client::connect(
        ClientOptions::new(server.url(), &bob_login.token).transport(TransportChoice::WebSocket),
    )
    .await
    .expect("connect");

    let mut command = chat_command(&server, "alice", &[]);
    command.stdin(Stdio::piped());
    let mut child = command.spawn().expect("start quibble-chat");
    let mut stdin = child.stdin.take().expect("stdin");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut out = Lines {
        rx,
        seen: Vec::new(),
    };
    let mut type_line = |line: &str| {
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .expect("write to the chat");
    };
    out.expect("logged in as alice");
    type_line("/friends");
    out.expect("bob asked to be your friend");
    type_line("/add bob");
    out.expect("bob: accepted");
    out.expect("(bob and you are friends: /dm bob)");
    type_line("/dm bob");
    out.expect("joining @bob");
    type_line("hello bob");
    out.expect("me: hello bob (sent #1)");

    // Bob reads it: Alice sees it seen. Bob types: Alice sees that too.
    let dm = api
        .dm(&bob_login.token, "alice")
        .await
        .unwrap()
        .conversation;
    bob.join(dm);
    bob.set_viewing(Some(dm));
    wait_for(
        &bob,
        |e| matches!(e, Event::Message(m) if m.body == "hello bob"),
    )
    .await;
    out.expect("(seen by bob)");
    bob.typing(dm);
    out.expect("bob is typing…");
    type_line("/friends");
    out.expect("bob (online)");

    // A request arriving while chatting is announced.
    api.add_friend(&carol.token, "alice").await.unwrap();
    out.expect("(carol asked to be your friend: /add carol accepts)");

    // Bob deletes a message of his: it is shown deleted at once.
    bob.send(dm, "bob's regret");
    out.expect("#2 bob: bob's regret");
    api.delete_message(&bob_login.token, dm, 2).await.unwrap();
    out.expect("#2 (message deleted)");

    type_line("/quit");
    drop(stdin);
    let status = wait_with_limit(child, LIMIT, "interactive chat").status;
    assert!(status.success(), "{status}");
    bob.close().await;
}
