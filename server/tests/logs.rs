//! The server's log lines as an operator gets them: plain text (no colour codes) when standard
//! error is not a terminal, as in a file or a journal, and one JSON object per line with
//! `--log-format json`.

mod support;

use support::TestServer;

/// A server that has logged a few lines (its start, a request): its log.
async fn log_of(extra: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(dir.path(), extra);
    let (status, _) = server.api().call("GET", "/healthz", None, None).await;
    assert_eq!(status, 200);
    server.api().signup("alice").await;
    server.log()
}

#[tokio::test]
async fn a_log_file_gets_plain_text() {
    let log = log_of(&[]).await;
    assert!(log.contains(" WARN quibble: no admin yet"), "{log}");
    assert!(!log.contains('\u{1b}'), "colour codes in a file: {log:?}");
}

#[tokio::test]
async fn json_logs_are_one_object_per_line() {
    let log = log_of(&["--log-format", "json"]).await;
    let mut lines = 0;
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(value["level"].is_string(), "{line}");
        assert!(value["timestamp"].is_string(), "{line}");
        assert!(value["fields"].is_object(), "{line}");
        lines += 1;
    }
    assert!(lines >= 1, "{log}");
    assert!(log.contains(r#""level":"WARN""#), "{log}");
}

/// The JSON log lines of `log`.
fn json_lines(log: &str) -> Vec<serde_json::Value> {
    log.lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

/// The first line of `lines` that `pick` accepts, or a failure that shows the log.
fn line_where<'a>(
    lines: &'a [serde_json::Value],
    log: &str,
    what: &str,
    pick: impl Fn(&serde_json::Value) -> bool,
) -> &'a serde_json::Value {
    lines
        .iter()
        .find(|line| pick(line))
        .unwrap_or_else(|| panic!("no line {what} in:\n{log}"))
}

/// Within `deadline`, the server's log once `pick` accepts one of its JSON lines.
async fn log_once(
    server: &TestServer,
    what: &str,
    pick: impl Fn(&serde_json::Value) -> bool,
) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let log = server.log();
        if json_lines(&log).iter().any(&pick) {
            return log;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no line {what} within 5 s:\n{log}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn lines_about_a_connection_carry_its_id_transport_peer_and_user() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(&dir.path().join("data"), &["--log-format", "json"]);
    let token = server.api().signup("alice").await;
    let mut wt = support::RawPeer::webtransport(&server).await;
    wt.hello(&token).await;
    let mut ws = support::RawPeer::websocket(&server).await;
    ws.hello(&token).await;
    let ready = |transport: &'static str| {
        move |line: &serde_json::Value| {
            line["fields"]["message"] == "connection ready"
                && line["span"]["transport"] == transport
        }
    };
    log_once(&server, "ready over websocket", ready("websocket")).await;
    let log = log_once(&server, "ready over webtransport", ready("webtransport")).await;
    let lines = json_lines(&log);
    let mut ids = Vec::new();
    for transport in ["webtransport", "websocket"] {
        let line = line_where(&lines, &log, transport, ready(transport));
        let span = &line["span"];
        assert_eq!(span["user"], "alice", "{line}");
        assert_eq!(span["peer"], "127.0.0.1", "{line}");
        ids.push(
            span["conn"]
                .as_u64()
                .unwrap_or_else(|| panic!("no conn id: {line}")),
        );
    }
    assert_ne!(ids[0], ids[1], "each connection has its own id");
}

#[tokio::test]
async fn a_refused_hello_logs_its_cause_on_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(&dir.path().join("data"), &["--log-format", "json"]);
    let mut ws = support::RawPeer::websocket(&server).await;
    let answer = ws.hello("not-a-token").await;
    assert!(
        matches!(answer, quibble_protocol::ServerFrame::Error { .. }),
        "{answer:?}"
    );
    let refused = |line: &serde_json::Value| line["fields"]["outcome"] == "unauthorized";
    let log = log_once(&server, "with the refused Hello", refused).await;
    let lines = json_lines(&log);
    let line = line_where(&lines, &log, "with the refused Hello", refused);
    assert_eq!(line["level"], "INFO", "{line}");
    assert_eq!(line["span"]["transport"], "websocket", "{line}");
    assert!(line["span"]["conn"].is_u64(), "{line}");
    let message = line["fields"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("invalid or expired token"), "{line}");
}

#[tokio::test]
async fn a_garbage_tls_handshake_logs_its_cause() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let dir = tempfile::tempdir().unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    let server = TestServer::start_with(
        &dir.path().join("data"),
        &[
            "--log-format",
            "json",
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    // Plain HTTP to the HTTPS port: not a TLS record.
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", server.port))
        .await
        .unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        tcp.read_to_end(&mut rest),
    )
    .await;
    let failed = |line: &serde_json::Value| line["fields"]["outcome"] == "tls_failed";
    let log = log_once(&server, "with the failed TLS handshake", failed).await;
    let lines = json_lines(&log);
    let line = line_where(&lines, &log, "with the failed TLS handshake", failed);
    assert_eq!(line["level"], "INFO", "{line}");
    assert_eq!(line["fields"]["transport"], "https", "{line}");
    assert_eq!(line["fields"]["peer"], "127.0.0.1", "{line}");
    let message = line["fields"]["message"].as_str().unwrap_or_default();
    assert!(message.starts_with("handshake failed: TLS: "), "{line}");
}
