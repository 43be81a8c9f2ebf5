//! Test support for the bench: the shared server harness, running the bench binary with a
//! time limit, reading its JSON report, and reading the server's `/metrics` counters.
#![allow(dead_code)] // each test binary uses a different part of this module

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

pub use quibble_test_support::TestServer;

/// Run the bench binary with `args`, killing it (and failing the test) after `limit`.
pub fn run_bench(args: &[&str], limit: Duration) -> Output {
    let child = Command::new(env!("CARGO_BIN_EXE_quibble-bench"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start quibble-bench");
    quibble_test_support::wait_with_limit(child, limit, "quibble-bench")
}

/// The JSON report on a successful run's stdout; fails the test with the run's output (and
/// `server`'s log, if the test started one) otherwise.
pub fn json_report(output: &Output, server: Option<&TestServer>) -> Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "quibble-bench failed ({}); stdout:\n{stdout}\nstderr:\n{stderr}\nserver log:\n{}",
        output.status,
        server.map_or_else(|| "(none)".to_owned(), TestServer::log_text)
    );
    serde_json::from_str(&stdout).expect("the JSON report")
}

/// The server's `/metrics` text (Prometheus exposition).
pub fn metrics(server: &TestServer) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
}

/// The value of counter `name` (with its labels, as `/metrics` spells them) in `metrics`'s
/// text; 0 if it was never incremented.
pub fn counter(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .map_or(0, |v| {
            v.trim().parse::<f64>().expect("a counter value") as u64
        })
}
