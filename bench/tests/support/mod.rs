//! Test support for the bench: the shared server harness, and running the bench binary with a
//! time limit.

use std::process::{Command, Output, Stdio};
use std::time::Duration;

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
