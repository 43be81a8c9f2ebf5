//! Stopping early: the overall `--timeout` deadline or Ctrl-C, turned into one signal that
//! every phase of every run watches. A second Ctrl-C ends the process at once.

use std::future::pending;

use serde::Serialize;
use tokio::sync::watch;
use tokio::time::{Instant, sleep_until};

/// Why the benchmark stopped before it was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    TimedOut,
    Interrupted,
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StopReason::TimedOut => "timed out (--timeout)",
            StopReason::Interrupted => "interrupted",
        })
    }
}

/// The early-stop signal; clones watch the same one.
#[derive(Debug, Clone)]
pub struct Stop {
    reason: watch::Receiver<Option<StopReason>>,
}

impl Stop {
    /// Start watching for `deadline` and Ctrl-C.
    pub fn start(deadline: Instant) -> Stop {
        let (tx, reason) = watch::channel(None);
        tokio::spawn(async move {
            let reason = tokio::select! {
                () = sleep_until(deadline) => StopReason::TimedOut,
                () = ctrl_c() => StopReason::Interrupted,
            };
            let _ = tx.send(Some(reason));
            ctrl_c().await;
            eprintln!("quibble-bench: interrupted twice, exiting without a report");
            std::process::exit(130);
        });
        Stop { reason }
    }

    /// Why the benchmark has stopped, if it has.
    pub fn reason(&self) -> Option<StopReason> {
        *self.reason.borrow()
    }

    /// Wait until the benchmark must stop.
    pub async fn wait(&self) -> StopReason {
        let mut reason = self.reason.clone();
        loop {
            if let Some(stop) = *reason.borrow_and_update() {
                return stop;
            }
            if reason.changed().await.is_err() {
                // The watcher is gone without a reason: nothing can stop us any more.
                return pending().await;
            }
        }
    }
}

/// Completes on Ctrl-C; never, if the handler cannot be installed.
async fn ctrl_c() {
    if tokio::signal::ctrl_c().await.is_err() {
        pending::<()>().await;
    }
}
