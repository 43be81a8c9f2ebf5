//! Setting a run up over the HTTP API: sign up its bots under fresh random names
//! (`bench-<random>-<n>`) and create its rooms (`bench-<random>-<r>`), each by its first bot.
//! Every run gets new accounts and empty rooms, so runs never see each other's messages and
//! every bot starts with the server's full send quota.

use anyhow::Context;
use quibble_client::{Api, ConversationId};
use rand::Rng;

use crate::concurrency::bounded;
use crate::plan::Plan;

/// The password of every bot (they are throwaway accounts).
const PASSWORD: &str = "quibble-bench-password";
/// Sign-ups in flight at once (each costs the server an argon2id hash).
const SIGNUPS_AT_ONCE: usize = 4;
/// Room creations in flight at once.
const ROOMS_AT_ONCE: usize = 8;

/// A bot's account.
#[derive(Debug, Clone)]
pub struct Account {
    pub username: String,
    pub token: String,
    /// Its room's conversation id.
    pub room: ConversationId,
}

/// Sign the bots up and create their rooms; the accounts in bot order (bot `n` is in room
/// `plan.room_of(n)`).
pub async fn setup(api: &Api, plan: &Plan) -> anyhow::Result<Vec<Account>> {
    let tag = format!("{:08x}", rand::rng().random::<u32>());
    let signups = (0..plan.bots())
        .map(|n| {
            let api = api.clone();
            let username = format!("bench-{tag}-{n}");
            async move {
                let login = api
                    .signup(&username, PASSWORD)
                    .await
                    .with_context(|| format!("cannot sign up the bot {username}"))?;
                Ok((username, login))
            }
        })
        .collect();
    let logins = bounded(SIGNUPS_AT_ONCE, signups).await?;

    let per_room = plan.users_per_room as usize;
    let creations = logins
        .iter()
        .step_by(per_room)
        .enumerate()
        .map(|(r, (_, creator))| {
            let api = api.clone();
            let token = creator.token.clone();
            let name = format!("bench-{tag}-{r}");
            async move {
                let room = api
                    .create_room(&token, &name)
                    .await
                    .with_context(|| format!("cannot create the room {name}"))?;
                Ok(room.id)
            }
        })
        .collect();
    let rooms = bounded(ROOMS_AT_ONCE, creations).await?;

    logins
        .into_iter()
        .enumerate()
        .map(|(n, (username, login))| {
            let room = rooms
                .get(plan.room_of(n))
                .copied()
                .context("a bot without a room")?;
            Ok(Account {
                username,
                token: login.token,
                room,
            })
        })
        .collect()
}
