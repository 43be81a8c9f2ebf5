//! The retention sweep: the background task that applies rooms' retention (the setting and
//! the rule: `crate::store::retention`; set through `crate::http::retention`).
//!
//! Design. Every node runs one sweep task; every `retention_sweep_ms` (default 60 s) it walks
//! the rooms with retention on, in pages of [`ROOMS_PER_PAGE`], and for each takes retention
//! steps ([`Store::retain`]): each step is one small transaction of at most
//! [`MAX_RETAIN_BATCH`] seqs, and a room gets at most [`STEPS_PER_ROOM`] steps per sweep, so a
//! room with a long backlog (retention just turned on) is worked down over several sweeps
//! rather than holding the store's writer (and, on the embedded engine, its scrub of the
//! file's free pages, once per step) for long. A retained-away message becomes a tombstone
//! through the deletion path: the store's commit hook hands it to the hub, so open streams get
//! `Deleted`, and replay and history carry the tombstone; seqs are untouched. When a step
//! retains away a room's last message, its members' conversation lists get the entry afresh,
//! as after a deletion (and the fleet is told). In a fleet every node sweeps; steps are
//! idempotent in the store, so a tombstone is made and announced once whichever node makes it.
//! A failed step is logged and the sweep moves on (the next sweep retries). Counted in
//! `quibble_messages_retained_away_total`.

use std::time::SystemTime;

use tokio::time::MissedTickBehavior;

use crate::fleet::control::Control;
use crate::state::AppState;
use crate::store::{MAX_RETAIN_BATCH, StoreError};

/// Rooms with retention read per store query.
pub const ROOMS_PER_PAGE: usize = 256;
/// Most retention steps one room gets per sweep.
pub const STEPS_PER_ROOM: usize = 64;

/// Runs the sweep every `limits.retention_sweep`, forever (the server aborts it at shutdown).
pub async fn sweep(state: AppState) {
    let mut ticker = tokio::time::interval(state.limits.retention_sweep);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        match sweep_once(&state).await {
            Ok(0) => {}
            Ok(count) => tracing::info!(count, "retention: messages retained away"),
            Err(error) => tracing::warn!(%error, "retention sweep stopped early"),
        }
    }
}

/// One sweep over every room with retention; how many messages it retained away.
pub async fn sweep_once(state: &AppState) -> Result<usize, StoreError> {
    let mut total = 0;
    let mut after = None;
    loop {
        let page = state.store.retention_page(after, ROOMS_PER_PAGE).await?;
        for &(room, _) in &page {
            for _ in 0..STEPS_PER_ROOM {
                let now_ms = crate::tls::unix_ms(SystemTime::now());
                let step = match state.store.retain(room, now_ms, MAX_RETAIN_BATCH).await {
                    Ok(step) => step,
                    Err(error) => {
                        tracing::warn!(room = room.0, %error, "retention step failed");
                        break;
                    }
                };
                let count = step.tombstones.len();
                total += count;
                crate::metrics::retained_away(count);
                if step.tombstones.last().is_some_and(|m| m.seq == step.head) {
                    state.tell_fleet(Control::LastMessageDeleted { conversation: room });
                    state.users.last_message_deleted(&state.store, room).await;
                }
                if !step.more {
                    break;
                }
            }
        }
        match page.last() {
            Some(&(last, _)) if page.len() == ROOMS_PER_PAGE => after = Some(last),
            _ => return Ok(total),
        }
    }
}
