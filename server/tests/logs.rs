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
