//! Driving one run over one transport: every bot connects and joins its room, then (once all
//! have joined) sends its messages at the configured rate while a receiver task per bot feeds
//! what arrives into the shared [`Ledger`]; the run ends when everything is settled or at the
//! deadline.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use quibble_client::{Client, ClientEvent, ClientOptions, ConversationId, Event, TransportKind};
use rand::Rng;
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;

use crate::args::choice;
use crate::scenario::Bot;
use crate::stats::{Latency, Ledger, Member, Plan, RunStats};

/// How often the run checks whether everything has arrived.
const POLL: Duration = Duration::from_millis(10);

/// How long closing the connections may take.
const CLOSE_LIMIT: Duration = Duration::from_secs(5);

/// What a run needs besides the bots and rooms.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub server: String,
    pub transport: TransportKind,
    pub plan: Plan,
    /// Messages per second per bot.
    pub rate: u32,
    /// The whole run (connect, send, deliver) stops after this.
    pub timeout: Duration,
}

type Shared = Arc<Mutex<Ledger>>;

/// Run the scenario once: `bots[n]` is in room `rooms[n / users_per_room]`.
pub async fn run(config: &RunConfig, bots: &[Bot], rooms: &[ConversationId]) -> RunStats {
    let deadline = tokio::time::Instant::now() + config.timeout;
    let ledger: Shared = Arc::new(Mutex::new(Ledger::new(config.plan)));
    let mut connect = Latency::default();

    let connected = connect_all(config, bots, rooms, deadline, &ledger).await;
    let mut receivers = JoinSet::new();
    let mut senders = JoinSet::new();
    let all_connected = connected.len() == bots.len();
    for (member, client, took) in &connected {
        connect.record(*took);
        receivers.spawn(receive(
            client.clone(),
            *member,
            config.transport,
            ledger.clone(),
        ));
    }
    if all_connected {
        for (member, client, _) in &connected {
            senders.spawn(send(
                client.clone(),
                *member,
                rooms[member.room],
                (config.plan.messages, config.rate),
                deadline,
                ledger.clone(),
            ));
        }
    }

    let timed_out = all_connected && !settled_by(&ledger, deadline).await;
    senders.abort_all();
    let stats = lock(&ledger).finish(config.transport, &connect, timed_out);

    let mut closing = JoinSet::new();
    for (_, client, _) in connected {
        closing.spawn(async move { client.close().await });
    }
    let _ = tokio::time::timeout(CLOSE_LIMIT, closing.join_all()).await;
    receivers.abort_all();
    stats
}

/// Wait until the ledger is settled (true) or the deadline passes (false).
async fn settled_by(ledger: &Shared, deadline: tokio::time::Instant) -> bool {
    while tokio::time::Instant::now() < deadline {
        if lock(ledger).settled() {
            return true;
        }
        tokio::time::sleep(POLL).await;
    }
    lock(ledger).settled()
}

fn lock(ledger: &Shared) -> std::sync::MutexGuard<'_, Ledger> {
    ledger.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Connect every bot and join its room, concurrently, until `deadline`; failures are counted
/// as errors (and the first one is reported on stderr). Returns the bots that made it.
async fn connect_all(
    config: &RunConfig,
    bots: &[Bot],
    rooms: &[ConversationId],
    deadline: tokio::time::Instant,
    ledger: &Shared,
) -> Vec<(Member, Arc<Client>, Duration)> {
    let users_per_room = usize::try_from(config.plan.users_per_room).unwrap_or(usize::MAX);
    let mut tasks = JoinSet::new();
    for (n, bot) in bots.iter().enumerate() {
        let member = Member {
            user: bot.user,
            room: n / users_per_room,
            slot: n % users_per_room,
        };
        let Some(&room) = rooms.get(member.room) else {
            lock(ledger).error("no_room_for_bot");
            continue;
        };
        let options = ClientOptions::new(config.server.clone(), bot.token.clone())
            .transport(choice(config.transport));
        let (name, kind) = (bot.name.clone(), config.transport);
        tasks.spawn(async move {
            let joined = tokio::time::timeout_at(deadline, connect_and_join(options, kind, room))
                .await
                .unwrap_or_else(|_| Err(anyhow::anyhow!("timed out")))
                .with_context(|| format!("bot {name} over {kind}"));
            joined.map(|(client, took)| (member, client, took))
        });
    }
    let mut connected = Vec::new();
    let mut first_error = None;
    while let Some(result) = tasks.join_next().await {
        match result.context("a connect task failed").and_then(|r| r) {
            Ok(bot) => connected.push(bot),
            Err(e) => {
                lock(ledger).error("connect_failed");
                first_error.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_error {
        eprintln!("quibble-bench: connecting failed: {e:#}");
    }
    connected
}

/// Connect over `kind`, join `room` and wait for `Joined`; returns the time that took.
async fn connect_and_join(
    options: ClientOptions,
    kind: TransportKind,
    room: ConversationId,
) -> Result<(Arc<Client>, Duration)> {
    let started = Instant::now();
    let client = Client::connect(options).await.context("connect")?;
    if client.transport() != Some(kind) {
        client.close().await;
        bail!("connected over {:?} instead", client.transport());
    }
    client.join(room);
    loop {
        match client.next_event().await {
            Some(ClientEvent::Session(Event::Joined { conversation, .. }))
                if conversation == room =>
            {
                return Ok((Arc::new(client), started.elapsed()));
            }
            Some(ClientEvent::Session(Event::Error { code, reason, .. })) => {
                client.close().await;
                bail!("the server refused the join: {code}: {reason}");
            }
            Some(_) => {}
            None => bail!("the connection closed before the room was joined"),
        }
    }
}

/// Feed `client`'s events into the ledger until the client closes.
async fn receive(client: Arc<Client>, me: Member, kind: TransportKind, ledger: Shared) {
    while let Some(event) = client.next_event().await {
        let at = Instant::now();
        let mut ledger = lock(&ledger);
        match event {
            ClientEvent::Session(Event::Message(m)) => {
                ledger.on_message(me, m.author, m.client_id, at);
            }
            ClientEvent::Session(Event::Sent { client_id, .. }) => {
                ledger.on_ack(me, client_id, at);
            }
            ClientEvent::Session(Event::Rejected {
                client_id, code, ..
            }) => ledger.on_rejected(me, client_id, code),
            ClientEvent::Session(Event::Error { code, .. }) => {
                ledger.error(&format!("stream_error_{}", code.as_str()));
            }
            ClientEvent::Session(Event::Disconnected) => ledger.error("disconnected"),
            ClientEvent::Session(Event::GoAway { .. }) => ledger.error("go_away"),
            ClientEvent::Session(Event::Reset { .. }) => ledger.error("reset"),
            ClientEvent::Session(
                Event::Connected { .. } | Event::Joined { .. } | Event::History { .. },
            ) => {}
            ClientEvent::TransportChanged(now) if now != kind => {
                ledger.error("transport_changed");
            }
            ClientEvent::TransportChanged(_) => {}
        }
    }
}

/// Send `me`'s messages to `room` at the configured rate, starting at a random offset within
/// the first period so that the bots do not send in lockstep.
async fn send(
    client: Arc<Client>,
    me: Member,
    room: ConversationId,
    (messages, rate): (u64, u32),
    deadline: tokio::time::Instant,
    ledger: Shared,
) {
    let period = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let offset = period.mul_f64(rand::rng().random::<f64>());
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + offset, period);
    // Never catch up in a burst: a bot stays at or below its rate, under the server's limit.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    for i in 0..messages {
        if tokio::time::timeout_at(deadline, ticks.tick())
            .await
            .is_err()
        {
            return;
        }
        // The ledger stays locked from the send until the send is recorded, so that the
        // receivers cannot see its acknowledgement or delivery first.
        let mut ledger = lock(&ledger);
        let at = Instant::now();
        let client_id = client.send(room, format!("bench message {i}"));
        ledger.on_sent(me, client_id, at);
    }
}
