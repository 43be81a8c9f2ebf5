//! The scripted commands of `quibble-chat`: `signup`, `rooms`, `create-room`, `send`, `history`,
//! `delete` and `tail` (the social ones — friends, DMs, membership, the conversation list — are
//! in `social.rs`, blocks in `blocks.rs`, the admin ones in `admin.rs`). Each prints
//! machine-readable lines on stdout (see [`super::format`]).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, bail};
use quibble_client::protocol::limits::{MAX_BODY_LEN, MAX_HISTORY_PAGE};
use quibble_client::protocol::session::StreamKey;
use quibble_client::{ChatMessage, Client, ClientEvent, ConversationId, Event, Room};
use tokio::time::{Instant, timeout_at};

use super::account::{self, Session};
use super::args::{Cli, Command};
use super::format::{created_room_line, history_line, room_line, tail_line};
use super::{admin, blocks, emit, social};

/// How long a command waits for the server (to join, to store a message, for a history page).
const SERVER_TIMEOUT: Duration = Duration::from_secs(30);
/// A join's replay is over when this passes without another message (for the case that the
/// newest messages no longer exist, so the replay never reaches the head seq).
const REPLAY_QUIET: Duration = Duration::from_secs(1);

pub async fn run(cli: &Cli, command: &Command) -> anyhow::Result<()> {
    let (user, password) = account::credentials(cli)?;
    let api = account::api(cli)?;
    let session = match command {
        Command::Signup => {
            let login = api
                .signup(&user, &password)
                .await
                .context("signup failed")?;
            emit(&format!("signed up {}", login.user.username))?;
            Session { api, login }
        }
        _ => Session::login(api, &user, &password).await?,
    };
    let result = match command {
        Command::Signup => Ok(()),
        Command::Rooms => rooms(&session).await,
        Command::CreateRoom { name } => session
            .create_room(name)
            .await
            .and_then(|room| emit(&created_room_line(&room))),
        Command::Send { room, text } => send(cli, &session, room, &text.join(" ")).await,
        Command::History { room, limit } => history(cli, &session, room, *limit).await,
        Command::Tail { room, count } => tail(cli, &session, room, *count).await,
        Command::Friends => social::friends(&session).await,
        Command::Add { username } => social::add(&session, username).await,
        Command::Remove { username } => social::remove(&session, username).await,
        Command::Dm { username, text } => {
            social::dm(cli, &session, username, &text.join(" ")).await
        }
        Command::Conversations => social::conversations(&session).await,
        Command::Join { room } => social::membership(&session, room, true).await,
        Command::Leave { room } => social::membership(&session, room, false).await,
        Command::Delete { room, seq } => delete(&session, room, *seq).await,
        Command::Block { username } => blocks::set(&session, username, true).await,
        Command::Unblock { username } => blocks::set(&session, username, false).await,
        Command::Blocks => blocks::list(&session).await,
        Command::Promote { username } => admin::set_role(&session, username, true).await,
        Command::Demote { username } => admin::set_role(&session, username, false).await,
        Command::Ban {
            username,
            reason,
            duration,
        } => admin::ban(&session, username, reason, *duration).await,
        Command::Unban { username } => admin::unban(&session, username).await,
        Command::Bans => admin::bans(&session).await,
        Command::IpBan(command) => admin::ip_ban(&session, command).await,
        Command::Audit { limit } => admin::audit(&session, *limit).await,
    };
    session.logout().await;
    result
}

async fn delete(session: &Session, room: &str, seq: u64) -> anyhow::Result<()> {
    let room = session.room(room).await?;
    let deleted = session
        .api
        .delete_message(session.token(), room.id, seq)
        .await
        .with_context(|| format!("cannot delete message {seq} of {}", room.name))?;
    emit(&format!("deleted {}", deleted.seq))
}

async fn rooms(session: &Session) -> anyhow::Result<()> {
    for room in session.rooms().await? {
        emit(&room_line(&room))?;
    }
    Ok(())
}

async fn send(cli: &Cli, session: &Session, room: &str, text: &str) -> anyhow::Result<()> {
    check_length(text)?;
    let room = session.room(room).await?;
    send_to(cli, session, &room, text).await
}

/// Send `text` to the conversation (a room, or a DM under its peer's name) and wait until it
/// is stored; prints `sent SEQ`.
pub async fn send_to(cli: &Cli, session: &Session, room: &Room, text: &str) -> anyhow::Result<()> {
    let client = session.connect(cli).await?;
    let result = async {
        client.join(room.id);
        let id = client.send(room.id, text);
        let deadline = Instant::now() + SERVER_TIMEOUT;
        loop {
            let Some(event) = next_event_until(&client, deadline).await? else {
                bail!("timed out waiting for the server to store the message");
            };
            match event {
                Event::Sent { client_id, seq, .. } if client_id == id => {
                    return emit(&format!("sent {seq}"));
                }
                Event::Rejected {
                    client_id,
                    code,
                    reason,
                    ..
                } if client_id == id => bail!("message rejected: {reason} ({code})"),
                other => check(&other, room)?,
            }
        }
    }
    .await;
    client.close().await;
    result
}

async fn history(cli: &Cli, session: &Session, room: &str, limit: usize) -> anyhow::Result<()> {
    let room = session.room(room).await?;
    let client = session.connect(cli).await?;
    let result = collect_history(&client, &room, limit).await;
    client.close().await;
    for message in result? {
        emit(&history_line(&message))?;
    }
    Ok(())
}

/// Join, take the replay of recent messages, then page back until `limit` messages (or the
/// beginning); the newest `limit`, oldest first.
async fn collect_history(
    client: &Client,
    room: &Room,
    limit: usize,
) -> anyhow::Result<Vec<ChatMessage>> {
    let deadline = Instant::now() + SERVER_TIMEOUT;
    let head = join(client, room, deadline).await?;
    let mut messages = BTreeMap::new();
    let mut newest_seen = 0;
    while newest_seen < head {
        let quiet = (Instant::now() + REPLAY_QUIET).min(deadline);
        match next_event_until(client, quiet).await? {
            None => break,
            Some(Event::Message(message)) if message.conversation == room.id => {
                newest_seen = newest_seen.max(message.seq);
                if message.seq <= head {
                    messages.insert(message.seq, message);
                }
            }
            Some(other) => check(&other, room)?,
        }
    }
    while messages.len() < limit {
        let wanted = u16::try_from(limit - messages.len()).unwrap_or(u16::MAX);
        if !client
            .load_older(room.id, wanted.min(MAX_HISTORY_PAGE))
            .await?
        {
            break;
        }
        let (page, has_more) = loop {
            let Some(event) = next_event_until(client, deadline).await? else {
                bail!("timed out waiting for older messages");
            };
            match event {
                Event::History {
                    conversation,
                    messages,
                    has_more,
                } if conversation == room.id => break (messages, has_more),
                other => check(&other, room)?,
            }
        };
        let found = page.len();
        messages.extend(page.into_iter().map(|m| (m.seq, m)));
        if !has_more || found == 0 {
            break;
        }
    }
    let skip = messages.len().saturating_sub(limit);
    Ok(messages.into_values().skip(skip).collect())
}

async fn tail(
    cli: &Cli,
    session: &Session,
    room: &str,
    count: Option<usize>,
) -> anyhow::Result<()> {
    let room = session.room(room).await?;
    let client = session.connect(cli).await?;
    let result = follow(&client, &room, count).await;
    client.close().await;
    result
}

/// Print the room's new messages until `count` of them (or Ctrl-C).
async fn follow(client: &Client, room: &Room, count: Option<usize>) -> anyhow::Result<()> {
    let head = join(client, room, Instant::now() + SERVER_TIMEOUT).await?;
    eprintln!("waiting for new messages in {}", room.name);
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut printed = 0;
    while count.is_none_or(|count| printed < count) {
        tokio::select! {
            event = client.next_event() => match event {
                None => bail!("the connection ended"),
                Some(ClientEvent::Session(Event::Message(message)))
                    if message.conversation == room.id && message.seq > head =>
                {
                    emit(&tail_line(&message))?;
                    printed += 1;
                }
                Some(ClientEvent::Session(other)) => check(&other, room)?,
                Some(ClientEvent::TransportChanged(_)) => {}
            },
            interrupted = &mut ctrl_c => {
                interrupted.context("cannot listen for Ctrl-C")?;
                break;
            }
        }
    }
    Ok(())
}

/// Join `room` and wait until the server confirms; returns its head seq at join time.
async fn join(client: &Client, room: &Room, deadline: Instant) -> anyhow::Result<u64> {
    client.join(room.id);
    loop {
        let Some(event) = next_event_until(client, deadline).await? else {
            bail!("timed out joining room {}", room.name);
        };
        match event {
            Event::Joined {
                conversation,
                head_seq,
            } if conversation == room.id => return Ok(head_seq),
            other => check(&other, room)?,
        }
    }
}

/// The next session event, or `None` once `deadline` passed.
async fn next_event_until(client: &Client, deadline: Instant) -> anyhow::Result<Option<Event>> {
    loop {
        match timeout_at(deadline, client.next_event()).await {
            Err(_) => return Ok(None),
            Ok(None) => bail!("the connection ended"),
            Ok(Some(ClientEvent::Session(event))) => return Ok(Some(event)),
            Ok(Some(ClientEvent::TransportChanged(_))) => {}
        }
    }
}

/// Refuse a message the server would refuse for its size, before connecting.
pub fn check_length(text: &str) -> anyhow::Result<()> {
    if text.len() > MAX_BODY_LEN {
        bail!(
            "the message is too long ({} bytes; the limit is {MAX_BODY_LEN})",
            text.len()
        );
    }
    Ok(())
}

/// Fail on an error the session will not recover from, for the connection or `room`.
fn check(event: &Event, room: &Room) -> anyhow::Result<()> {
    if let Event::Error {
        stream,
        code,
        reason,
    } = event
        && !code.is_retryable()
    {
        match stream {
            StreamKey::Control => bail!("the server closed the connection: {reason} ({code})"),
            StreamKey::Conversation(id) if *id == room.id => {
                bail!("the server refused room {}: {reason} ({code})", room.name)
            }
            StreamKey::Conversation(ConversationId(_)) => {}
        }
    }
    Ok(())
}
