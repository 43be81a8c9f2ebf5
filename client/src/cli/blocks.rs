//! The block commands of `quibble-chat`: `block USER`, `unblock USER` and `blocks`, over REST.
//! Output lines are tab-separated (see [`super::format`]).

use anyhow::Context;

use super::account::Session;
use super::emit;
use super::format::escape_field;

/// `block` (`on`) or `unblock` a user; prints `blocked|already_blocked|unblocked|not_blocked
/// <TAB>USERNAME`.
pub async fn set(session: &Session, user: &str, on: bool) -> anyhow::Result<()> {
    let api = &session.api;
    let change = if on {
        api.block(session.token(), user).await
    } else {
        api.unblock(session.token(), user).await
    }
    .with_context(|| format!("cannot {} {user:?}", if on { "block" } else { "unblock" }))?;
    let outcome = match (change.blocked, change.changed) {
        (true, true) => "blocked",
        (true, false) => "already_blocked",
        (false, true) => "unblocked",
        (false, false) => "not_blocked",
    };
    emit(&format!(
        "{outcome}\t{}",
        escape_field(&change.user.username)
    ))
}

/// `USERNAME<TAB>SINCE_MS` for each user blocked, ascending by user id.
pub async fn list(session: &Session) -> anyhow::Result<()> {
    let blocks = session
        .api
        .blocks(session.token())
        .await
        .context("cannot list blocked users")?;
    for block in blocks {
        emit(&format!(
            "{}\t{}",
            escape_field(&block.username),
            block.since_ms
        ))?;
    }
    Ok(())
}
