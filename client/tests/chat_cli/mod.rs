//! Running the real `quibble-chat` binary in the CLI tests: one bounded run against a
//! [`TestServer`] as a given user ([`chat`]), with its stdout when it must succeed ([`ok`]) or
//! its one-line error when it must fail ([`fails`]), and the [`Command`] itself for tests that
//! drive the interactive chat.

#![allow(dead_code)] // each test binary uses a different part of this module

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use quibble_test_support::{TestServer, wait_with_limit};

/// Every test account's password (given to `quibble-chat` as `QUIBBLE_PASSWORD`).
pub const PASSWORD: &str = "correct horse battery";
/// How long one CLI run may take.
pub const LIMIT: Duration = Duration::from_secs(60);

/// `quibble-chat --server … --user USER ARGS…`, with piped output and no stdin.
pub fn chat_command(server: &TestServer, user: &str, args: &[&str]) -> Command {
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

/// Runs `quibble-chat` as `user` to the end (within [`LIMIT`]).
pub fn chat(server: &TestServer, user: &str, args: &[&str]) -> Output {
    let child = chat_command(server, user, args)
        .spawn()
        .expect("start quibble-chat");
    wait_with_limit(child, LIMIT, &format!("quibble-chat {args:?}"))
}

/// Stdout of a successful run.
pub fn ok(server: &TestServer, user: &str, args: &[&str]) -> String {
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
pub fn fails(server: &TestServer, user: &str, args: &[&str]) -> String {
    let output = chat(server, user, args);
    assert!(!output.status.success(), "{args:?} succeeded unexpectedly");
    let stderr = String::from_utf8(output.stderr).expect("UTF-8 errors");
    assert_eq!(stderr.lines().count(), 1, "not one line: {stderr:?}");
    assert!(stderr.starts_with("error: "), "{stderr:?}");
    stderr
}
