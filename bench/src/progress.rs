//! The progress bar on stderr while a run goes on (indicatif), only when stderr is a terminal
//! so that logs and CI output stay clean: deliveries so far out of those owed, with the acks
//! beside them, refreshed a few times a second from the run's [`Tracker`]; the bar is cleared
//! when the display is dropped.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::task::JoinHandle;

use crate::tracker::Tracker;

const EVERY: Duration = Duration::from_millis(250);
const TEMPLATE: &str = "{prefix}: [{elapsed_precise}] {wide_bar} {pos}/{len} delivered, {msg}";

/// The running display; dropping it stops and clears it.
pub struct Display {
    shown: Option<(ProgressBar, JoinHandle<()>)>,
}

impl Display {
    pub fn start(label: &'static str, tracker: Arc<Tracker>) -> Display {
        if !std::io::stderr().is_terminal() {
            return Display { shown: None };
        }
        let first = tracker.progress();
        let bar = ProgressBar::with_draw_target(
            Some(first.deliveries),
            ProgressDrawTarget::stderr_with_hz(4),
        )
        .with_prefix(label);
        // The template is a constant known to parse; a bad one would only lose the styling.
        if let Ok(style) = ProgressStyle::with_template(TEMPLATE) {
            bar.set_style(style);
        }
        let shown = bar.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(EVERY);
            loop {
                tick.tick().await;
                let p = tracker.progress();
                shown.set_position(p.delivered);
                shown.set_message(format!("acked {}/{}", p.acked, p.sends));
            }
        });
        Display {
            shown: Some((bar, task)),
        }
    }
}

impl Drop for Display {
    fn drop(&mut self) {
        if let Some((bar, task)) = self.shown.take() {
            task.abort();
            bar.finish_and_clear();
        }
    }
}
