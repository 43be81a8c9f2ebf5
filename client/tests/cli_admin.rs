//! End-to-end tests of `quibble-chat`'s moderation commands (`promote`, `demote`, `ban`,
//! `unban`, `bans`, `ip-ban add|list|remove`, `audit`): the real binary against the real
//! `quibble` server, whose first admin is made with `quibble admin promote`. Every run is
//! bounded.

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
fn an_admin_moderates_from_the_command_line_and_a_user_cannot() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path());
    for user in ["ann", "mal"] {
        ok(&server, user, &["signup"]);
    }
    let refused = fails(&server, "mal", &["ban", "ann", "--reason", "mine now"]);
    assert!(refused.contains("only admins may do this"), "{refused}");
    fails(&server, "ann", &["ip-ban", "list"]);

    server.promote("ann");

    let banned = ok(
        &server,
        "ann",
        &["ban", "mal", "--reason", "spam", "--for", "1h"],
    );
    let fields: Vec<&str> = banned.trim_end().split('\t').collect();
    assert_eq!((fields[0], fields[1], fields[3]), ("banned", "mal", "spam"));
    assert!(
        fields[2].starts_with("20") && fields[2].ends_with('Z'),
        "{banned}"
    );
    assert!(ok(&server, "ann", &["bans"]).starts_with("mal\t20"));
    let refused = fails(&server, "mal", &["rooms"]);
    assert!(refused.contains("banned until"), "{refused}");
    assert_eq!(ok(&server, "ann", &["unban", "mal"]), "unbanned\tmal\n");
    assert_eq!(ok(&server, "ann", &["unban", "mal"]), "not banned\tmal\n");
    ok(&server, "mal", &["rooms"]);

    assert_eq!(
        ok(
            &server,
            "ann",
            &["ip-ban", "add", "198.51.100.9/24", "--reason", "abuse"]
        ),
        "banned\t198.51.100.0/24\t-\tabuse\n"
    );
    assert_eq!(
        ok(&server, "ann", &["ip-ban", "list"]),
        "198.51.100.0/24\t-\tann\tabuse\n"
    );
    let refused = fails(
        &server,
        "ann",
        &["ip-ban", "add", "nowhere", "--reason", "x"],
    );
    assert!(refused.contains("is not an IP address"), "{refused}");
    assert_eq!(
        ok(&server, "ann", &["ip-ban", "remove", "198.51.100.0/24"]),
        "removed\t198.51.100.0/24\n"
    );
    assert_eq!(ok(&server, "ann", &["promote", "mal"]), "admin\tmal\n");
    assert_eq!(ok(&server, "mal", &["demote", "ann"]), "user\tann\n");

    let log = ok(&server, "mal", &["audit", "--limit", "4"]);
    let rows: Vec<(&str, &str, &str)> = log
        .lines()
        .map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            (f[2], f[3], f[4])
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("mal", "demote", "ann"),
            ("ann", "promote", "mal"),
            ("ann", "ip_ban_remove", "198.51.100.0/24"),
            ("ann", "ip_ban_add", "198.51.100.0/24"),
        ],
        "{log}"
    );
}
