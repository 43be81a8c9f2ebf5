//! Test support for the bench: the shared server harness, running the bench binary with a
//! time limit, and reading its JSON report.

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
