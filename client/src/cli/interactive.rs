//! The interactive chat of `quibble-chat` (no command given): log in, pick or create a room,
//! then show its recent and live messages while typed lines are sent; lines starting with `/`
//! are commands. Plain line-oriented terminal I/O.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use quibble_client::protocol::session::StreamKey;
use quibble_client::{Client, ClientEvent, ConversationId, Event, Room};
use tokio::sync::mpsc;

use super::account::{self, Session};
use super::args::Cli;
use super::commands::check_length;
use super::format::{chat_line, find_room, one_line};

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
  /quit           leave (Ctrl-C works too)
anything else is sent to the current room";

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
            Event::Sent { client_id, seq, .. } => {
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
            // Other rooms' traffic (after a switch) is not shown.
            Event::Reset { .. } | Event::Message(_) | Event::History { .. } => {}
            _ => {}
        }
    }
}
