//! Moderation for admins and the operator: the operations ([`ops`]), the local admin socket a
//! running server serves them on ([`socket`]), and the `quibble admin` command ([`command`]).
//!
//! One code path does the work: REST handlers (`http::admin`, acting as the signed-in admin)
//! and the admin socket (acting as the operator) both call [`perform`], which runs the
//! operation on the store ([`ops::execute`]) and then applies its live effects to the running
//! server; `quibble admin` on a stopped server runs [`ops::execute`] on the opened store
//! directly (there is nothing live to affect). Every change is audited by the store, in the
//! same transaction as the change.

pub mod command;
pub mod ops;
pub mod socket;

use std::time::SystemTime;

use crate::state::AppState;
use crate::store::Actor;
use crate::tls::unix_ms;
use ops::{OpError, Operation, Outcome};

/// Runs `op` as `actor` on the running server: the store's part (validated, applied and
/// audited in one transaction), then its live effects on connections and in-memory lists.
pub async fn perform(state: &AppState, actor: Actor, op: Operation) -> Result<Outcome, OpError> {
    ops::execute(&state.store, actor, op, unix_ms(SystemTime::now())).await
}
