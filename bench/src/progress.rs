//! A one-line progress display on stderr while a run goes on, only when stderr is a terminal
//! (logs and CI output stay clean); the line is cleared when the display is dropped.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::tracker::Tracker;

const EVERY: Duration = Duration::from_millis(500);

/// The running display; dropping it stops and clears it.
pub struct Display {
    task: Option<JoinHandle<()>>,
}

impl Display {
    pub fn start(label: &'static str, tracker: Arc<Tracker>) -> Display {
        if !std::io::stderr().is_terminal() {
            return Display { task: None };
        }
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(EVERY);
            loop {
                tick.tick().await;
                let p = tracker.progress();
                let mut err = std::io::stderr().lock();
                let _ = write!(
                    err,
                    "\r\x1b[K{label}: acked {}/{}, delivered {}/{}",
                    p.acked, p.sends, p.delivered, p.deliveries
                );
                let _ = err.flush();
            }
        });
        Display { task: Some(task) }
    }
}

impl Drop for Display {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[K");
            let _ = err.flush();
        }
    }
}
