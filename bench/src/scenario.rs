//! Setting a run up over the HTTP API: fresh rooms (`bench-<random>-<r>`), each created by its
//! first bot, for bots whose accounts [`crate::accounts`] provided. Every run gets empty rooms,
//! so runs never see each other's messages. Bots with reused accounts leave their rooms at the
//! end ([`leave`]), so that memberships (which every connection of the user is told about and
//! the server tracks) do not pile up from run to run.

use std::time::Duration;

use anyhow::Context;
use quibble_client::{Api, ConversationId};
use rand::Rng;

use crate::accounts::Login;
use crate::concurrency::bounded;
use crate::plan::Plan;

/// Room creations in flight at once.
const ROOMS_AT_ONCE: usize = 8;
/// Leaves in flight at once, and how long all of them may take.
const LEAVES_AT_ONCE: usize = 8;
const LEAVE_LIMIT: Duration = Duration::from_secs(10);

/// A bot's account.
#[derive(Debug, Clone)]
pub struct Account {
    pub username: String,
    pub token: String,
    /// Its room's conversation id.
    pub room: ConversationId,
}

/// Create the rooms of the bots signed in as `logins` (in bot order); the accounts in bot
/// order (bot `n` is in room `plan.room_of(n)`).
pub async fn setup(api: &Api, plan: &Plan, logins: Vec<Login>) -> anyhow::Result<Vec<Account>> {
    let tag = format!("{:08x}", rand::rng().random::<u32>());
    let per_room = plan.users_per_room as usize;
    let creations = logins
        .iter()
        .step_by(per_room)
        .enumerate()
        .map(|(r, creator)| {
            let api = api.clone();
            let token = creator.token.clone();
            let name = format!("bench-{tag}-{r}");
            async move {
                let room = api.create_room(&token, &name).await.with_context(|| {
                    format!(
                        "cannot create the room {name} (each room counts against its \
                             creator's quota: the server's room_burst and rooms_per_hour)"
                    )
                })?;
                Ok(room.id)
            }
        })
        .collect();
    let rooms = bounded(ROOMS_AT_ONCE, creations).await?;

    logins
        .into_iter()
        .enumerate()
        .map(|(n, login)| {
            let room = rooms
                .get(plan.room_of(n))
                .copied()
                .context("a bot without a room")?;
            Ok(Account {
                username: login.username,
                token: login.token,
                room,
            })
        })
        .collect()
}

/// Have every bot leave its room (best effort, within [`LEAVE_LIMIT`]).
pub async fn leave(api: &Api, accounts: &[Account]) {
    let leaves = accounts
        .iter()
        .map(|account| {
            let api = api.clone();
            let (token, room) = (account.token.clone(), account.room);
            async move {
                // A room left or not is no failure of the run; the next run makes new ones.
                let _ = api.leave_room(&token, room).await;
                Ok(())
            }
        })
        .collect();
    let _ = tokio::time::timeout(LEAVE_LIMIT, bounded(LEAVES_AT_ONCE, leaves)).await;
}
