//! End-to-end test of `quibble-chat`'s block commands: the real binary against the real
//! `quibble` server. `block`, `unblock` and `blocks` run to completion; `history` shows the
//! blocked user's messages as hidden markers to the blocker only, and again after unblocking;
//! the blocked user's friend request is refused. Every run is bounded.

use quibble_test_support as support;

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use support::{TestServer, wait_with_limit};

const PASSWORD: &str = "correct horse battery";
/// How long one CLI run may take.
const LIMIT: Duration = Duration::from_secs(60);

fn chat(server: &TestServer, user: &str, args: &[&str]) -> Output {
    let child = Command::new(env!("CARGO_BIN_EXE_quibble-chat"))
        .arg("--server")
        .arg(server.url())
        .arg("--user")
        .arg(user)
        .args(args)
        .env("QUIBBLE_PASSWORD", PASSWORD)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start quibble-chat");
    wait_with_limit(child, LIMIT, &format!("quibble-chat {args:?}"))
}

/// Stdout of a successful run.
fn ok(server: &TestServer, user: &str, args: &[&str]) -> String {
    let output = chat(server, user, args);
    assert!(
        output.status.success(),
        "quibble-chat {args:?} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

/// Stderr of a failed run, checked to be one `error: …` line.
fn fails(server: &TestServer, user: &str, args: &[&str]) -> String {
    let output = chat(server, user, args);
    assert!(!output.status.success(), "{args:?} succeeded unexpectedly");
    let stderr = String::from_utf8(output.stderr).expect("UTF-8 errors");
    assert_eq!(stderr.lines().count(), 1, "not one line: {stderr:?}");
    assert!(stderr.starts_with("error: "), "{stderr:?}");
    stderr
}

#[test]
fn block_unblock_and_blocks_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path());
    for user in ["alice", "bob", "carol"] {
        ok(&server, user, &["signup"]);
    }
    ok(&server, "alice", &["create-room", "lobby"]);
    assert_eq!(
        ok(&server, "bob", &["send", "lobby", "from bob"]),
        "sent 1\n"
    );
    assert_eq!(
        ok(&server, "carol", &["send", "lobby", "from carol"]),
        "sent 2\n"
    );

    assert_eq!(ok(&server, "alice", &["block", "bob"]), "blocked\tbob\n");
    assert_eq!(
        ok(&server, "alice", &["block", "bob"]),
        "already_blocked\tbob\n"
    );
    let list = ok(&server, "alice", &["blocks"]);
    let (name, since) = list.trim_end().split_once('\t').expect("two fields");
    assert_eq!(name, "bob");
    assert!(since.parse::<u64>().expect("ms") > 0, "{list:?}");
    assert_eq!(ok(&server, "carol", &["blocks"]), "");

    assert_eq!(
        ok(&server, "alice", &["history", "lobby"]),
        "1\t\t(hidden: blocked user)\n2\tcarol\tfrom carol\n"
    );
    assert_eq!(
        ok(&server, "carol", &["history", "lobby"]),
        "1\tbob\tfrom bob\n2\tcarol\tfrom carol\n"
    );
    let refused = fails(&server, "bob", &["add", "alice"]);
    assert!(refused.contains("not allowed"), "{refused}");
    let unknown = fails(&server, "alice", &["block", "nobody"]);
    assert!(unknown.contains("nobody"), "{unknown}");

    assert_eq!(
        ok(&server, "alice", &["unblock", "bob"]),
        "unblocked\tbob\n"
    );
    assert_eq!(
        ok(&server, "alice", &["unblock", "bob"]),
        "not_blocked\tbob\n"
    );
    assert_eq!(ok(&server, "alice", &["blocks"]), "");
    assert_eq!(
        ok(&server, "alice", &["history", "lobby"]),
        "1\tbob\tfrom bob\n2\tcarol\tfrom carol\n"
    );
}
