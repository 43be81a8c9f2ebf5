//! The social commands of `quibble-chat`: `friends`, `add`, `remove`, `dm`, `conversations`,
//! `join` and `leave`. REST calls, except `dm`, which opens the DM over REST and then sends
//! like `send` does. Output lines are tab-separated (see [`super::format`]).

use anyhow::Context;
use quibble_client::{FriendOutcome, Room};

use super::account::Session;
use super::args::Cli;
use super::commands::{check_length, send_to};
use super::emit;
use super::format::{conversation_line, escape_field, friend_outcome};

/// `friend|incoming|outgoing<TAB>USERNAME`, friends first.
pub async fn friends(session: &Session) -> anyhow::Result<()> {
    let all = session
        .api
        .friends(session.token())
        .await
        .context("cannot list friends")?;
    let groups = [
        ("friend", all.friends),
        ("incoming", all.incoming),
        ("outgoing", all.outgoing),
    ];
    for (label, people) in groups {
        for friend in people {
            emit(&format!("{label}\t{}", escape_field(&friend.username)))?;
        }
    }
    Ok(())
}

pub async fn add(session: &Session, user: &str) -> anyhow::Result<()> {
    let change = session
        .api
        .add_friend(session.token(), user)
        .await
        .with_context(|| format!("cannot add {user:?}"))?;
    emit(&outcome_line(change.status, &change.user.username))
}

pub async fn remove(session: &Session, user: &str) -> anyhow::Result<()> {
    let change = session
        .api
        .remove_friend(session.token(), user)
        .await
        .with_context(|| format!("cannot remove {user:?}"))?;
    emit(&outcome_line(change.status, &change.user.username))
}

fn outcome_line(outcome: FriendOutcome, username: &str) -> String {
    format!("{}\t{}", friend_outcome(outcome), escape_field(username))
}

pub async fn dm(cli: &Cli, session: &Session, user: &str, text: &str) -> anyhow::Result<()> {
    check_length(text)?;
    let dm = session.dm(user).await?;
    if !dm.can_send {
        anyhow::bail!("{user} is not your friend any more: the DM is read-only");
    }
    send_to(
        cli,
        session,
        &dm_room(&dm.user.username, dm.conversation),
        text,
    )
    .await
}

/// A DM under its peer's name, for the code that sends and reports by room.
pub fn dm_room(peer: &str, conversation: quibble_client::ConversationId) -> Room {
    Room {
        id: conversation,
        name: format!("@{peer}"),
        created_at_ms: 0,
        head_seq: 0,
        member: true,
    }
}

/// `ID<TAB>room|dm<TAB>TITLE<TAB>UNREAD`, most recent activity first.
pub async fn conversations(session: &Session) -> anyhow::Result<()> {
    let all = session
        .api
        .conversations(session.token())
        .await
        .context("cannot list conversations")?;
    for conversation in &all {
        emit(&conversation_line(conversation))?;
    }
    Ok(())
}

/// `join` (`member`) or `leave` a room by name.
pub async fn membership(session: &Session, room: &str, member: bool) -> anyhow::Result<()> {
    let room = session.room(room).await?;
    let api = &session.api;
    let change = if member {
        api.join_room(session.token(), room.id).await
    } else {
        api.leave_room(session.token(), room.id).await
    }
    .with_context(|| format!("cannot change membership of {:?}", room.name))?;
    let verb = match (member, change.changed) {
        (true, true) => "joined",
        (true, false) => "already in",
        (false, true) => "left",
        (false, false) => "not in",
    };
    emit(&format!("{verb} {}", escape_field(&room.name)))
}
