//! End-to-end tests of `quibble-chat`: the real binary against the real `quibble` server on a
//! loopback port with a temp data dir. Each test has a server of its own (and stays within
//! the server's login rate limits: at most 10 logins per account, 20 per test).

use quibble_test_support as support;

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use quibble_client::{Api, Client, ClientEvent, ClientOptions, Event, TransportChoice};
use support::{TestServer, wait_with_limit};

const PASSWORD: &str = "correct horse battery";
/// How long one CLI run may take.
const LIMIT: Duration = Duration::from_secs(60);

fn chat_command(server: &TestServer, user: &str, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_quibble-chat"));
    command
        .arg("--server")
        .arg(server.url())
        .arg("--user")
        .arg(user)
        .args(args)
        .env("QUIBBLE_PASSWORD", PASSWORD)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

fn spawn(mut command: Command) -> Child {
    command.spawn().expect("start quibble-chat")
}

/// Run `quibble-chat --server … --user USER ARGS…` to the end.
fn chat(server: &TestServer, user: &str, args: &[&str]) -> Output {
    let child = spawn(chat_command(server, user, args));
    wait_with_limit(child, LIMIT, &format!("quibble-chat {args:?}"))
}

/// Stdout of a successful run.
fn ok(output: Output) -> String {
    assert!(
        output.status.success(),
        "quibble-chat failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

/// Stderr of a failed run, checked to be one `error: …` line.
fn fails(output: Output) -> String {
    assert!(
        !output.status.success(),
        "quibble-chat succeeded unexpectedly: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    let stderr = String::from_utf8(output.stderr).expect("UTF-8 errors");
    assert_eq!(stderr.lines().count(), 1, "not one line: {stderr:?}");
    assert!(stderr.starts_with("error: "), "{stderr:?}");
    stderr
}

fn signup(server: &TestServer, user: &str) {
    assert_eq!(
        ok(chat(server, user, &["signup"])),
        format!("signed up {user}\n")
    );
}

/// `create-room NAME` → the new room's id.
fn create_room(server: &TestServer, user: &str, name: &str) -> u64 {
    let out = ok(chat(server, user, &["create-room", name]));
    let (id, created) = out
        .trim_end()
        .split_once('\t')
        .unwrap_or_else(|| panic!("not ID<TAB>NAME: {out:?}"));
    assert_eq!(created, name);
    id.parse().expect("numeric room id")
}

#[test]
fn signup_create_and_list_rooms_send_over_each_transport_and_read_history() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path());
    signup(&server, "alice");
    let id = create_room(&server, "alice", "General");
    assert_eq!(
        ok(chat(&server, "alice", &["rooms"])),
        format!("{id}\tGeneral\t0\n")
    );

    for (i, transport) in ["webtransport", "websocket", "auto"].iter().enumerate() {
        let text = format!("hello over {transport}");
        let out = ok(chat(
            &server,
            "alice",
            &["--transport", transport, "send", "general", &text],
        ));
        assert_eq!(out, format!("sent {}\n", i + 1), "over {transport}");
    }

    assert_eq!(
        ok(chat(
            &server,
            "alice",
            &["history", "GENERAL", "--limit", "2"]
        )),
        "2\talice\thello over websocket\n3\talice\thello over auto\n"
    );
    assert_eq!(
        ok(chat(
            &server,
            "alice",
            &["--transport", "webtransport", "history", "general"]
        )),
        "1\talice\thello over webtransport\n\
         2\talice\thello over websocket\n\
         3\talice\thello over auto\n"
    );
    assert_eq!(
        ok(chat(&server, "alice", &["rooms"])),
        format!("{id}\tGeneral\t3\n")
    );
}

#[test]
fn history_pages_back_beyond_the_messages_replayed_on_join() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    // 120 messages through the library (one login), more than a join replays. The server
    // may store concurrent sends in any order: what counts is the seq each one got.
    let stored: BTreeMap<u64, String> = runtime.block_on(async {
        let api = Api::new(&server.url()).unwrap();
        let login = api.signup("dora", PASSWORD).await.unwrap();
        let room = api.create_room(&login.token, "Archive").await.unwrap();
        let options =
            ClientOptions::new(server.url(), login.token).transport(TransportChoice::WebSocket);
        let client = Client::connect(options).await.unwrap();
        client.join(room.id);
        let mut unacknowledged: HashMap<u64, String> = (1..=120)
            .map(|i| {
                let body = format!("message {i}");
                (client.send(room.id, body.clone()), body)
            })
            .collect();
        let mut stored = BTreeMap::new();
        while !unacknowledged.is_empty() {
            let event = tokio::time::timeout(Duration::from_secs(30), client.next_event())
                .await
                .expect("acknowledgements in time")
                .expect("client still running");
            if let ClientEvent::Session(Event::Sent { client_id, seq, .. }) = event
                && let Some(body) = unacknowledged.remove(&client_id)
            {
                stored.insert(seq, body);
            }
        }
        client.close().await;
        stored
    });
    assert_eq!(
        stored.keys().copied().collect::<Vec<_>>(),
        (1..=120).collect::<Vec<u64>>()
    );
    let expected = |from: u64| -> String {
        stored
            .range(from..)
            .map(|(seq, body)| format!("{seq}\tdora\t{body}\n"))
            .collect()
    };

    let out = ok(chat(
        &server,
        "dora",
        &["history", "archive", "--limit", "110"],
    ));
    assert_eq!(out, expected(11));
    let out = ok(chat(
        &server,
        "dora",
        &[
            "--transport",
            "webtransport",
            "history",
            "archive",
            "--limit",
            "500",
        ],
    ));
    assert_eq!(out, expected(1));
}

#[test]
fn tail_prints_the_messages_another_process_sends() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path());
    signup(&server, "bob");
    signup(&server, "carol");
    create_room(&server, "bob", "Lobby");
    assert_eq!(
        ok(chat(&server, "bob", &["send", "lobby", "before the tail"])),
        "sent 1\n"
    );

    let mut tail = spawn(chat_command(
        &server,
        "carol",
        &["tail", "Lobby", "--count", "2"],
    ));
    let stderr = tail.stderr.take().expect("tail stderr");
    let (ready_tx, ready) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { return };
            let _ = ready_tx.send(line);
        }
    });
    let first = ready
        .recv_timeout(LIMIT)
        .expect("tail reports that it listens");
    assert_eq!(first, "waiting for new messages in Lobby");

    assert_eq!(
        ok(chat(
            &server,
            "bob",
            &["--transport", "websocket", "send", "lobby", "first\tlive"]
        )),
        "sent 2\n"
    );
    assert_eq!(
        ok(chat(
            &server,
            "bob",
            &[
                "--transport",
                "webtransport",
                "send",
                "lobby",
                "second",
                "live"
            ]
        )),
        "sent 3\n"
    );
    let output = wait_with_limit(tail, LIMIT, "tail");
    assert_eq!(ok(output), "bob\tfirst\\tlive\nbob\tsecond live\n");
    assert!(ready.try_recv().is_err(), "tail wrote more to stderr");
}

#[test]
fn a_wrong_password_is_a_one_line_error() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path());
    signup(&server, "erin");
    let stderr = fails(chat(
        &server,
        "erin",
        &["--password", "not the password", "rooms"],
    ));
    assert_eq!(
        stderr,
        "error: login failed: invalid username or password\n"
    );
    let stderr = fails(chat(&server, "nobody", &["rooms"]));
    assert_eq!(
        stderr,
        "error: login failed: invalid username or password\n"
    );
}

#[test]
fn an_unknown_room_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path());
    signup(&server, "fred");
    create_room(&server, "fred", "Real");
    for args in [
        &["send", "imaginary", "hello"][..],
        &["history", "imaginary"],
        &["tail", "imaginary", "--count", "1"],
    ] {
        assert_eq!(
            fails(chat(&server, "fred", args)),
            "error: unknown room \"imaginary\"\n",
            "{args:?}"
        );
    }
}

#[test]
fn bad_usage_and_taken_names_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path());
    signup(&server, "gina");
    let stderr = fails(chat(&server, "gina", &["signup"]));
    assert!(stderr.starts_with("error: signup failed: "), "{stderr:?}");
    create_room(&server, "gina", "Taken");
    let stderr = fails(chat(&server, "gina", &["create-room", "TAKEN"]));
    assert!(
        stderr.starts_with("error: cannot create room \"TAKEN\": "),
        "{stderr:?}"
    );

    let run = |args: &[&str]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_quibble-chat"));
        command
            .args(args)
            .env("QUIBBLE_PASSWORD", PASSWORD)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        wait_with_limit(spawn(command), LIMIT, &format!("quibble-chat {args:?}"))
    };
    let url = server.url();
    let stderr = fails(run(&["--server", &url, "rooms"]));
    assert_eq!(stderr, "error: --user is required\n");
    let stderr = fails(run(&[
        "--server",
        "ftp://nowhere",
        "--user",
        "gina",
        "rooms",
    ]));
    assert!(stderr.contains("invalid server URL"), "{stderr:?}");
    let usage = run(&["--transport", "carrier-pigeon", "rooms"]);
    assert_eq!(usage.status.code(), Some(2));
    let stderr = fails(usage);
    assert!(stderr.contains("carrier-pigeon"), "{stderr:?}");
    assert!(run(&["--help"]).status.success());

    let long = "x".repeat(5000);
    let stderr = fails(chat(&server, "gina", &["send", "taken", &long]));
    assert_eq!(
        stderr,
        "error: the message is too long (5000 bytes; the limit is 4096)\n"
    );
}

#[test]
fn the_interactive_chat_sends_typed_lines() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path());
    signup(&server, "hana");
    let mut command = chat_command(&server, "hana", &[]);
    command.stdin(Stdio::piped());
    let mut child = spawn(command);
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(b"Lounge\nhello from a person\n/older\n/help\n/quit\n")
        .unwrap();
    drop(stdin);
    let out = ok(wait_with_limit(child, LIMIT, "interactive chat"));
    for expected in [
        "logged in as hana",
        "created room Lounge",
        "me: hello from a person (pending)",
        "me: hello from a person (sent #1)",
        "/quit ",
    ] {
        assert!(out.contains(expected), "{expected:?} missing from:\n{out}");
    }
    assert_eq!(
        ok(chat(&server, "hana", &["history", "lounge"])),
        "1\thana\thello from a person\n"
    );
}

#[test]
fn delete_leaves_a_tombstone_in_history_and_refuses_someone_elses_message() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path());
    for user in ["alice", "bob", "carol"] {
        signup(&server, user);
    }
    server.promote("alice");
    create_room(&server, "bob", "lobby");
    ok(chat(&server, "bob", &["send", "lobby", "oops, wrong room"]));
    ok(chat(&server, "bob", &["send", "lobby", "fine"]));

    let stderr = fails(chat(&server, "carol", &["delete", "lobby", "1"]));
    assert!(stderr.contains("only its author or an admin"), "{stderr:?}");
    assert_eq!(
        ok(chat(&server, "bob", &["delete", "Lobby", "1"])),
        "deleted 1\n"
    );
    assert_eq!(
        ok(chat(&server, "bob", &["delete", "lobby", "1"])),
        "deleted 1\n",
        "twice is harmless"
    );
    assert_eq!(
        ok(chat(&server, "alice", &["delete", "lobby", "2"])),
        "deleted 2\n"
    );
    assert_eq!(
        ok(chat(&server, "carol", &["history", "lobby"])),
        "1\tbob\t(message deleted)\n2\tbob\t(message deleted)\n"
    );
    fails(chat(&server, "bob", &["delete", "lobby", "3"]));
}
