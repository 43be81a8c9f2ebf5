//! `--accounts FILE` against the real server binary: a second run reuses every stored token
//! (no sign-up, no login, no password hash on the server, as its `/metrics` counter shows), a
//! token revoked in between is replaced by a login, and a malformed file is a clear error.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use support::{TestServer, counter, json_report, metrics, run_bench};

const LIMIT: Duration = Duration::from_secs(120);

/// `quibble-bench idle` over WebSocket with two users kept in `file`; its JSON report.
fn idle(server: &TestServer, file: &Path) -> Value {
    let url = server.url();
    let file = file.to_str().expect("a UTF-8 temp path");
    let args = [
        "idle",
        "--server",
        &url,
        "--transport",
        "websocket",
        "--connections",
        "2",
        "--users",
        "2",
        "--hold",
        "0",
        "--accounts",
        file,
        "--timeout",
        "60",
        "--json",
    ];
    json_report(&run_bench(&args, LIMIT), Some(server))
}

/// (reused, signed up, logged in) from a report.
fn accounts(report: &Value) -> (u64, u64, u64) {
    let a = &report["accounts"];
    let n = |name: &str| a[name].as_u64().unwrap_or(u64::MAX);
    (n("reused"), n("signed_up"), n("logged_in"))
}

/// One plain HTTP/1.1 request to the server; (status, body).
fn http(server: &TestServer, request: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    stream.write_all(request.as_bytes()).expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, b)| b.to_owned());
    (status, body)
}

/// Password hashes the server ran, by kind: (`hash`, `verify`).
fn hashes(server: &TestServer) -> (u64, u64) {
    let metrics = metrics(server);
    let count = |kind: &str| {
        counter(
            &metrics,
            &format!("quibble_password_hashes_total{{kind=\"{kind}\"}}"),
        )
    };
    (count("hash"), count("verify"))
}

#[test]
fn stored_tokens_are_reused_and_a_revoked_one_is_replaced() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = TestServer::start(dir.path());
    let file = dir.path().join("accounts.jsonl");

    let first = idle(&server, &file);
    assert_eq!(first["ok"], true, "{first:#}");
    assert_eq!(accounts(&first), (0, 2, 0), "{first:#}");
    let mode = std::fs::metadata(&file)
        .expect("the file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let after_first = hashes(&server);
    assert_eq!(after_first, (2, 0), "two sign-ups, one hash each");

    let second = idle(&server, &file);
    assert_eq!(second["ok"], true, "{second:#}");
    assert_eq!(accounts(&second), (2, 0, 0), "{second:#}");
    assert_eq!(
        hashes(&server),
        after_first,
        "the second run hashed nothing"
    );

    // Revoke bench-0's token; the next run (a chat this time) logs that bot in again.
    let token = token_of(
        &std::fs::read_to_string(&file).expect("the file"),
        "bench-0",
    );
    let (status, body) = http(
        &server,
        &format!(
            "POST /api/logout HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\
             Content-Length: 0\r\nConnection: close\r\n\r\n"
        ),
    );
    assert_eq!(status, 204, "{body}");
    let url = server.url();
    let path = file.to_str().expect("a UTF-8 temp path");
    let chat = [
        "chat",
        "--server",
        &url,
        "--transport",
        "websocket",
        "--rooms",
        "1",
        "--users-per-room",
        "2",
        "--messages",
        "3",
        "--accounts",
        path,
        "--timeout",
        "60",
        "--json",
    ];
    let third = json_report(&run_bench(&chat, LIMIT), Some(&server));
    assert_eq!(third["ok"], true, "{third:#}");
    assert_eq!(accounts(&third), (1, 0, 1), "{third:#}");
    assert_eq!(hashes(&server), (2, 1), "one login, no sign-up");
    let rewritten = std::fs::read_to_string(&file).expect("the file");
    assert!(
        !rewritten.contains(&token),
        "the revoked token was replaced"
    );
    assert_eq!(rewritten.lines().count(), 3, "{rewritten}");

    // The bots left their rooms after each run: memberships do not pile up.
    let token = token_of(&rewritten, "bench-1");
    let (status, body) = http(
        &server,
        &format!(
            "GET /api/conversations HTTP/1.1\r\nHost: 127.0.0.1\r\n\
             Authorization: Bearer {token}\r\nConnection: close\r\n\r\n"
        ),
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"conversations\":[]"), "{body}");
}

/// The token stored for `username` in an accounts file's text.
fn token_of(text: &str, username: &str) -> String {
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["username"] == username)
        .and_then(|v| v["token"].as_str().map(str::to_owned))
        .unwrap_or_else(|| panic!("{username}'s token in {text}"))
}

#[test]
fn a_malformed_accounts_file_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = TestServer::start(dir.path());
    let url = server.url();
    let file = dir.path().join("accounts.jsonl");
    // The right server, then a line cut short.
    let garbage = format!("{{\"server\":\"{url}/\"}}\n{{\"username\":\"bench-0\"\n");
    std::fs::write(&file, &garbage).expect("write the file");
    let path = file.to_str().expect("a UTF-8 temp path");
    let args = [
        "idle",
        "--server",
        &url,
        "--transport",
        "websocket",
        "--connections",
        "1",
        "--accounts",
        path,
        "--timeout",
        "20",
    ];
    let output = run_bench(&args, LIMIT);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "stderr: {stderr}");
    assert!(
        stderr.contains("is not a valid accounts file") && stderr.contains("line 2"),
        "{stderr}"
    );
    assert_eq!(std::fs::read_to_string(&file).expect("the file"), garbage);
    assert_eq!(hashes(&server), (0, 0), "nobody was signed up");
}
