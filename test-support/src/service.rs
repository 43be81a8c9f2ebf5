//! What the service fixtures ([`crate::postgres`], [`crate::redis`]) share: how a start failed
//! ([`Failure`]), and starting again on the same port while the old process's port (or, after a
//! SIGKILL, PostgreSQL's shared memory) is still held a moment longer ([`retry_while_taken`]).

use std::time::{Duration, Instant};

/// How long a service may take to come up (and a start again may keep retrying).
pub(crate) const DEADLINE: Duration = Duration::from_secs(20);

/// Why a service did not come up.
pub(crate) enum Failure {
    /// A port (or the old server's shared memory) was in use.
    PortTaken,
    /// The server exited with this status.
    Exited(String),
    /// Not ready before the deadline.
    Timeout,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::PortTaken => f.write_str("a port stayed in use"),
            Failure::Exited(status) => write!(f, "the server exited: {status}"),
            Failure::Timeout => write!(f, "not ready within {DEADLINE:?}"),
        }
    }
}

/// Runs `spawn` until it does not fail with [`Failure::PortTaken`] or [`DEADLINE`] passes.
pub(crate) fn retry_while_taken(
    mut spawn: impl FnMut() -> Result<(), Failure>,
) -> Result<(), Failure> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        match spawn() {
            Err(Failure::PortTaken) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100))
            }
            outcome => return outcome,
        }
    }
}
