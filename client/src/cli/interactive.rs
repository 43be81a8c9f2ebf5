//! The interactive chat of `quibble-chat` (no command given): log in, pick or create a room
//! (or open a DM with `/dm USER`), then show its recent and live messages while typed lines
//! are sent; lines starting with `/` are commands. What the user sees in the open conversation
//! counts as read; receipts ("seen by …"), "… is typing…", friend requests and the unread
//! counts at connect are shown as they come. Plain line-oriented terminal I/O (so the user's
//! own typing cannot be announced: a line arrives only once it is complete).

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use quibble_client::protocol::session::StreamKey;
use quibble_client::{Client, ClientEvent, ConversationId, Event, FriendStatus, Room, UserId};
use tokio::sync::mpsc;

use super::account::{self, Session};
use super::args::Cli;
use super::commands::check_length;
use super::format::{DELETED_TEXT, chat_line, find_room, friend_outcome, one_line};
use super::social::dm_room;

/// Messages asked for by `/older`.
const OLDER_PAGE: u16 = 20;
/// How long quitting waits for messages still on their way to the server.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

const HELP: &str = "\
commands:
  /rooms          list the rooms
  /join NAME      switch to a room (by name or number)
  /create NAME    create a room and switch to it
  /older          show older messages of this room
  /dm USER        switch to the direct messages with a friend
  /friends        list friends (with presence) and friend requests
  /add USER       ask USER to be friends, or accept their request
  /remove USER    decline, cancel or unfriend
  /quit           leave (Ctrl-C works too)
anything else is sent to the current room or DM";

pub async fn run(cli: &Cli) -> anyhow::Result<()> {
    let mut input = Input::spawn()?;
    let api = account::api(cli)?;
    let user = match &cli.user {
        Some(user) => user.clone(),
        None => input.prompt("username: ").await?,
    };
    let password = match &cli.password {
        Some(password) => password.clone(),
        None => input.prompt("password (visible as you type): ").await?,
    };
    let session = Session::login(api, &user, &password).await?;
    say(format!("logged in as {}", session.login.user.username));
    let client = session.connect(cli).await?;
    if let Some(kind) = client.transport() {
        say(format!("connected over {kind}"));
    }
    let mut chat = Chat {
        session,
        client,
        input,
        rooms: Vec::new(),
        current: None,
        joined: HashSet::new(),
        mine: HashSet::new(),
        pending: HashMap::new(),
        transport_announced: false,
        names: HashMap::new(),
        online: HashMap::new(),
        last_sent: HashMap::new(),
        seen: HashMap::new(),
    };
    let mut result = chat.run().await;
    if result.is_ok() {
        result = chat.flush().await;
    }
    chat.client.close().await;
    chat.session.logout().await;
    result
}

/// Print a line for the person at the terminal (a closed stdout is not worth failing over).
fn say(line: impl AsRef<str>) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", line.as_ref());
    let _ = out.flush();
}

/// Show a failed request without ending the chat.
fn report(result: anyhow::Result<()>) {
    if let Err(e) = result {
        say(format!("error: {e:#}"));
    }
}

/// Lines typed on stdin, read on a thread of their own (so a pending read never holds up
/// the runtime's shutdown).
struct Input {
    lines: mpsc::UnboundedReceiver<String>,
}

impl Input {
    fn spawn() -> anyhow::Result<Input> {
        let (tx, lines) = mpsc::unbounded_channel();
        std::thread::Builder::new()
            .name("stdin".into())
            .spawn(move || {
                for line in std::io::stdin().lines() {
                    let Ok(line) = line else { return };
                    if tx.send(line).is_err() {
                        return;
                    }
                }
            })
            .context("cannot start the input thread")?;
        Ok(Input { lines })
    }

    async fn next(&mut self) -> Option<String> {
        self.lines.recv().await
    }

    async fn prompt(&mut self, prompt: &str) -> anyhow::Result<String> {
        let mut out = std::io::stdout().lock();
        let _ = write!(out, "{prompt}");
        let _ = out.flush();
        drop(out);
        let line = self.next().await.ok_or_else(|| anyhow!("no input"))?;
        Ok(line.trim().to_owned())
    }
}

struct Chat {
    session: Session,
    client: Client,
    input: Input,
    /// The room list as last shown (numbers refer to it).
    rooms: Vec<Room>,
    current: Option<Room>,
    /// Rooms whose join was already announced.
    joined: HashSet<ConversationId>,
    /// Client ids of every message sent from here (their echoes are not shown again).
    mine: HashSet<u64>,
    /// Sent, not yet stored: client id → text.
    pending: HashMap<u64, String>,
    /// The first connection's transport was announced at startup; later ones are reconnects.
    transport_announced: bool,
    /// Usernames of the users events named (receipts carry only ids).
    names: HashMap<UserId, String>,
    /// Presence as last heard: online, else last seen (Unix ms).
    online: HashMap<UserId, (bool, u64)>,
    /// The seq of my latest stored message per conversation.
    last_sent: HashMap<ConversationId, u64>,
    /// The highest of my seqs announced as seen, per conversation and reader.
    seen: HashMap<(ConversationId, UserId), u64>,
}

impl Chat {
    async fn run(&mut self) -> anyhow::Result<()> {
        report(self.list_rooms().await);
        say("pick a room by number or name (a new name creates it); /help for commands");
        let ctrl_c = tokio::signal::ctrl_c();
        tokio::pin!(ctrl_c);
        loop {
            tokio::select! {
                line = self.input.next() => match line {
                    None => return Ok(()),
                    Some(line) => {
                        if !self.line(line.trim()).await {
                            return Ok(());
                        }
                    }
                },
                event = self.client.next_event() => match event {
                    None => bail!("the connection ended"),
                    Some(event) => self.show(event),
                },
                interrupted = &mut ctrl_c => {
                    return interrupted.context("cannot listen for Ctrl-C");
                }
            }
        }
    }

    /// Before quitting: wait a little for sent messages the server has not stored yet.
    async fn flush(&mut self) -> anyhow::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        say(format!(
            "(waiting for {} message(s) to reach the server)",
            self.pending.len()
        ));
        let deadline = tokio::time::Instant::now() + FLUSH_TIMEOUT;
        while !self.pending.is_empty() {
            match tokio::time::timeout_at(deadline, self.client.next_event()).await {
                Ok(Some(event)) => self.show(event),
                Ok(None) => break,
                Err(_) => break,
            }
        }
        match self.pending.len() {
            0 => Ok(()),
            n => Err(anyhow!("{n} message(s) may not have reached the server")),
        }
    }

    /// Handle a typed line; false to quit.
    async fn line(&mut self, line: &str) -> bool {
        if line.is_empty() {
            return true;
        }
        let Some(command) = line.strip_prefix('/') else {
            match self.current.clone() {
                Some(room) => self.send(&room, line),
                None => {
                    let result = self.choose(line).await;
                    report(result);
                }
            }
            return true;
        };
        let (name, argument) = command
            .split_once(char::is_whitespace)
            .map_or((command, ""), |(name, rest)| (name, rest.trim()));
        let result = match name {
            "quit" | "q" => return false,
            "help" => {
                say(HELP);
                Ok(())
            }
            "rooms" => self.list_rooms().await,
            "join" if !argument.is_empty() => self.choose_existing(argument).await,
            "create" if !argument.is_empty() => self.create(argument).await,
            "join" | "create" => Err(anyhow!("usage: /{name} NAME")),
            "older" => self.older().await,
            "friends" => self.friends().await,
            "dm" if !argument.is_empty() => self.open_dm(argument).await,
            "add" if !argument.is_empty() => self.befriend(argument, true).await,
            "remove" if !argument.is_empty() => self.befriend(argument, false).await,
            "dm" | "add" | "remove" => Err(anyhow!("usage: /{name} USER")),
            _ => Err(anyhow!("unknown command /{name}; /help lists them")),
        };
        report(result);
        true
    }

    async fn list_rooms(&mut self) -> anyhow::Result<()> {
        self.rooms = self.session.rooms().await?;
        if self.rooms.is_empty() {
            say("no rooms yet");
        }
        for (i, room) in self.rooms.iter().enumerate() {
            say(format!(
                "  {}) {}  ({} messages)",
                i + 1,
                room.name,
                room.head_seq
            ));
        }
        Ok(())
    }

    /// A room by number (in the last list) or name; a new name creates the room.
    async fn choose(&mut self, choice: &str) -> anyhow::Result<()> {
        match self.lookup(choice).await? {
            Some(room) => self.enter(room),
            None => self.create(choice).await?,
        }
        Ok(())
    }

    async fn choose_existing(&mut self, choice: &str) -> anyhow::Result<()> {
        match self.lookup(choice).await? {
            Some(room) => {
                self.enter(room);
                Ok(())
            }
            None => Err(anyhow!("no room {choice:?}; /create {choice} makes it")),
        }
    }

    async fn lookup(&mut self, choice: &str) -> anyhow::Result<Option<Room>> {
        if let Ok(number) = choice.parse::<usize>()
            && let Some(room) = number.checked_sub(1).and_then(|i| self.rooms.get(i))
        {
            return Ok(Some(room.clone()));
        }
        if find_room(&self.rooms, choice).is_none() {
            self.rooms = self.session.rooms().await?;
        }
        Ok(find_room(&self.rooms, choice).cloned())
    }

    async fn create(&mut self, name: &str) -> anyhow::Result<()> {
        let room = self.session.create_room(name).await?;
        say(format!("created room {}", room.name));
        self.rooms.push(room.clone());
        self.enter(room);
        Ok(())
    }

    async fn friends(&mut self) -> anyhow::Result<()> {
        let all = self.session.api.friends(self.session.token()).await?;
        if all.friends.is_empty() && all.incoming.is_empty() && all.outgoing.is_empty() {
            say("no friends yet; /add USER asks someone");
        }
        for friend in &all.friends {
            let presence = match self.online.get(&friend.id) {
                Some((true, _)) => "online".to_owned(),
                Some((false, at)) if *at > 0 => format!("offline, last seen {}", ago(*at)),
                _ => "offline".to_owned(),
            };
            say(format!("  {} ({presence})", friend.username));
        }
        for friend in &all.incoming {
            say(format!(
                "  {} asked to be your friend (/add {0} accepts, /remove {0} declines)",
                friend.username
            ));
        }
        for friend in &all.outgoing {
            say(format!(
                "  {} has not answered your request yet",
                friend.username
            ));
        }
        Ok(())
    }

    async fn befriend(&mut self, user: &str, add: bool) -> anyhow::Result<()> {
        let api = &self.session.api;
        let token = self.session.token();
        let change = if add {
            api.add_friend(token, user).await?
        } else {
            api.remove_friend(token, user).await?
        };
        say(format!(
            "{}: {}",
            change.user.username,
            friend_outcome(change.status).replace('_', " ")
        ));
        Ok(())
    }

    async fn open_dm(&mut self, user: &str) -> anyhow::Result<()> {
        let dm = self.session.dm(user).await?;
        if !dm.can_send {
            say(format!(
                "({} is not your friend any more: you can read, not send)",
                dm.user.username
            ));
        }
        self.enter(dm_room(&dm.user.username, dm.conversation));
        Ok(())
    }

    fn name(&self, user: UserId) -> String {
        self.names
            .get(&user)
            .cloned()
            .unwrap_or_else(|| format!("user #{}", user.0))
    }

    fn enter(&mut self, room: Room) {
        if let Some(old) = self.current.take() {
            if old.id == room.id {
                self.current = Some(old);
                return;
            }
            self.client.leave(old.id);
            self.joined.remove(&old.id);
        }
        say(format!("joining {}…", room.name));
        self.client.join(room.id);
        self.client.set_viewing(Some(room.id));
        self.current = Some(room);
    }

    fn send(&mut self, room: &Room, text: &str) {
        if let Err(e) = check_length(text) {
            return say(format!("error: {e}"));
        }
        let id = self.client.send(room.id, text);
        self.mine.insert(id);
        self.pending.insert(id, text.to_owned());
        say(format!("me: {} (pending)", one_line(text)));
    }

    async fn older(&mut self) -> anyhow::Result<()> {
        let Some(room) = &self.current else {
            bail!("join a room first");
        };
        if !self.client.load_older(room.id, OLDER_PAGE).await? {
            say("(no older messages)");
        }
        Ok(())
    }

    fn is_current(&self, conversation: ConversationId) -> bool {
        self.current
            .as_ref()
            .is_some_and(|room| room.id == conversation)
    }

    fn show(&mut self, event: ClientEvent) {
        let event = match event {
            ClientEvent::TransportChanged(kind) => {
                if std::mem::replace(&mut self.transport_announced, true) {
                    say(format!("(reconnected over {kind})"));
                }
                return;
            }
            ClientEvent::Session(event) => event,
        };
        match event {
            Event::Connected { .. } => {}
            Event::Disconnected => say("(disconnected; reconnecting…)"),
            Event::Joined { conversation, .. } => {
                if self.is_current(conversation)
                    && self.joined.insert(conversation)
                    && let Some(room) = &self.current
                {
                    say(format!("joined {}", room.name));
                }
            }
            Event::Reset { conversation } if self.is_current(conversation) => {
                say("(the server's history was reset; showing it afresh)");
            }
            Event::Message(message) if self.is_current(message.conversation) => {
                self.names
                    .insert(message.author, message.author_name.clone());
                let echo =
                    message.author == self.client.user() && self.mine.contains(&message.client_id);
                if !echo {
                    say(chat_line(&message));
                }
            }
            Event::History {
                conversation,
                messages,
                has_more,
            } if self.is_current(conversation) => {
                if messages.is_empty() {
                    say("(no older messages)");
                } else {
                    say("(older messages)");
                    messages.iter().for_each(|m| say(chat_line(m)));
                }
                if !has_more {
                    say("(that is the beginning of the room)");
                }
            }
            Event::Sent {
                client_id,
                seq,
                conversation,
                ..
            } => {
                let last = self.last_sent.entry(conversation).or_default();
                *last = (*last).max(seq);
                if let Some(text) = self.pending.remove(&client_id) {
                    say(format!("me: {} (sent #{seq})", one_line(&text)));
                }
            }
            Event::Throttled {
                client_id,
                retry_in_ms,
                ..
            } => {
                if let Some(text) = self.pending.get(&client_id) {
                    say(format!(
                        "me: {} (sending too fast; retrying in {retry_in_ms} ms)",
                        one_line(text)
                    ));
                }
            }
            Event::Rejected {
                client_id, reason, ..
            } => {
                if let Some(text) = self.pending.remove(&client_id) {
                    say(format!("me: {} (not sent: {reason})", one_line(&text)));
                }
            }
            Event::Error {
                stream,
                code,
                reason,
            } => match stream {
                StreamKey::Control => say(format!("(server error: {reason} ({code}))")),
                StreamKey::Conversation(id) if self.is_current(id) => {
                    say(format!("(room error: {reason} ({code}))"));
                }
                StreamKey::Conversation(_) => {}
            },
            Event::GoAway { reconnect_after_ms } => say(format!(
                "(the server is going away; reconnecting in about {} s)",
                reconnect_after_ms.div_ceil(1000)
            )),
            Event::ConversationList(list) => {
                let unread: Vec<String> = list
                    .iter()
                    .filter(|s| s.unread > 0)
                    .map(|s| format!("{} {}", s.title, s.unread))
                    .collect();
                if !unread.is_empty() {
                    say(format!("(unread: {})", unread.join(", ")));
                }
            }
            Event::Receipt {
                conversation,
                user,
                read,
                ..
            } if self.is_current(conversation) && user != self.client.user() => {
                let mine = self.last_sent.get(&conversation).copied().unwrap_or(0);
                let announced = self.seen.entry((conversation, user)).or_default();
                if mine > 0 && read >= mine && *announced < mine {
                    *announced = mine;
                    say(format!("(seen by {})", self.name(user)));
                }
            }
            Event::Typing {
                conversation,
                user,
                username,
                typing,
            } => {
                self.names.insert(user, username.clone());
                if typing && self.is_current(conversation) {
                    say(format!("{username} is typing…"));
                }
            }
            Event::Friend {
                user,
                username,
                status,
                ..
            } => {
                self.names.insert(user, username.clone());
                match status {
                    FriendStatus::Incoming => say(format!(
                        "({username} asked to be your friend: /add {username} accepts)"
                    )),
                    FriendStatus::Friends => {
                        say(format!("({username} and you are friends: /dm {username})"))
                    }
                    FriendStatus::None | FriendStatus::Outgoing => {}
                }
            }
            Event::Presence {
                user,
                username,
                online,
                last_seen_ms,
            } => {
                self.names.insert(user, username);
                self.online.insert(user, (online, last_seen_ms));
            }
            Event::Deleted { conversation, seq } if self.is_current(conversation) => {
                say(format!("#{seq} {DELETED_TEXT}"));
            }
            // Other rooms' traffic (after a switch) is not shown.
            Event::Reset { .. }
            | Event::Deleted { .. }
            | Event::Message(_)
            | Event::History { .. }
            | Event::Receipt { .. }
            | Event::ConversationUpdated(_)
            | Event::ConversationRemoved { .. } => {}
        }
    }
}

/// How long ago a Unix-ms time was, roughly.
fn ago(at_ms: u64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let seconds = now.saturating_sub(at_ms) / 1000;
    match seconds {
        0..60 => "just now".to_owned(),
        60..3600 => format!("{} min ago", seconds / 60),
        3600..86400 => format!("{} h ago", seconds / 3600),
        _ => format!("{} days ago", seconds / 86400),
    }
}
