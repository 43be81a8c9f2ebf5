//! Setting up a scenario over the HTTP API: sign up uniquely named bots (`bench-<tag>-<n>`) and
//! create fresh rooms (`bench-<tag>-<r>`) for them.

use std::sync::Arc;

use anyhow::{Context, Result};
use quibble_client::{Api, ConversationId, UserId};
use rand::Rng;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// The password of every bot.
const PASSWORD: &str = "quibble-bench-password";

/// Signups at once: each costs the server an argon2 hash (19 MiB, a blocking thread).
const SIGNUP_CONCURRENCY: usize = 4;

/// A signed-up bot.
#[derive(Debug, Clone)]
pub struct Bot {
    pub name: String,
    pub user: UserId,
    pub token: String,
}

/// A random tag for unique names.
pub fn tag() -> String {
    format!("{:08x}", rand::rng().random::<u32>())
}

/// Sign up `count` bots named `bench-<tag>-<n>`, in order of `n`.
pub async fn sign_up(api: &Api, tag: &str, count: u64) -> Result<Vec<Bot>> {
    let permits = Arc::new(Semaphore::new(SIGNUP_CONCURRENCY));
    let mut tasks = JoinSet::new();
    for n in 0..count {
        let api = api.clone();
        let permits = permits.clone();
        let name = format!("bench-{tag}-{n}");
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await?;
            let login = api
                .signup(&name, PASSWORD)
                .await
                .with_context(|| format!("sign up bot {name}"))?;
            anyhow::Ok((
                n,
                Bot {
                    name,
                    user: login.user.id,
                    token: login.token,
                },
            ))
        });
    }
    let mut bots = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        bots.push(joined.context("a signup task failed")??);
    }
    bots.sort_by_key(|(n, _)| *n);
    Ok(bots.into_iter().map(|(_, bot)| bot).collect())
}

/// Create `count` fresh rooms named `bench-<new tag>-<r>`, as the bot with `token`.
pub async fn create_rooms(api: &Api, token: &str, count: u64) -> Result<Vec<ConversationId>> {
    let tag = tag();
    let mut rooms = Vec::new();
    for r in 0..count {
        let name = format!("bench-{tag}-{r}");
        let room = api
            .create_room(token, &name)
            .await
            .with_context(|| format!("create room {name}"))?;
        rooms.push(room.id);
    }
    Ok(rooms)
}
