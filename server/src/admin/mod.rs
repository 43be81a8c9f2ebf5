//! Moderation for admins and the operator: the operations ([`ops`]), the local admin socket a
//! running server serves them on ([`socket`]), and the `quibble admin` command ([`command`]).
//! The operator's `quibble backup` and `quibble restore` ([`backup`]) use the same socket and
//! the same running-or-stopped rule.
//!
//! One code path does the work: REST handlers (`http::admin`, acting as the signed-in admin)
//! and the admin socket (acting as the operator) both call [`perform`], which runs the
//! operation on the store ([`ops::execute`]) and then applies its live effects to the running
//! server; `quibble admin` on a stopped server runs [`ops::execute`] on the opened store
//! directly (there is nothing live to affect). Every change is audited by the store, in the
//! same transaction as the change.

pub mod backup;
pub mod command;
pub mod ops;
pub mod socket;

use std::time::SystemTime;

use quibble_protocol::{ErrorCode, UserId};

use crate::fleet::control::Control;
use crate::state::AppState;
use crate::store::Actor;
use crate::tls::unix_ms;
use ops::{OpError, Operation, Outcome};

/// Runs `op` as `actor` on the running server: the store's part (validated, applied and
/// audited in one transaction), then its live effects on connections and in-memory lists
/// ([`crate::enforce`]): a ban ends the user's live connections with `Banned`; an IP ban added
/// or removed reloads the list the transports check (which ends live connections from a newly
/// banned address). An unban needs nothing live: the user signs in again.
pub async fn perform(state: &AppState, actor: Actor, op: Operation) -> Result<Outcome, OpError> {
    let outcome = ops::execute(&state.store, actor, op, unix_ms(SystemTime::now())).await?;
    match &outcome {
        Outcome::Ban(ban) => state.close_user(
            UserId(ban.user.id),
            None,
            ErrorCode::Banned,
            &ops::ban_message(&ban.reason, ban.until_ms),
        ),
        Outcome::IpBan(_) | Outcome::IpBanRemoved(_) => {
            state.tell_fleet(Control::IpBansChanged);
            if let Err(e) = state.reload_ip_bans().await {
                tracing::error!("cannot reload the IP bans: {e}");
            }
        }
        _ => {}
    }
    Ok(outcome)
}
