//! The fleet (DESIGN §7): identical nodes on one PostgreSQL store, with Redis sharded pub/sub
//! carrying each commit to every node. This module owns what a node adds to the single-node
//! server in fleet mode (`--redis`), wired between the store's commit hook and the hub.
//!
//! A commit's messages are split by partition ([`partition`]); each part goes two ways: to this
//! node's sequencer for that partition (local delivery never waits for Redis), and, encoded
//! once ([`event`]), to the publisher task, which `SPUBLISH`es batches with retries for up to
//! [`PUBLISH_DEADLINE`] before dropping one (the other nodes recover it from the store). The
//! subscriber task keeps one subscription per partition on Redis ([`redis_link`]) and hands
//! the other nodes' commits to the sequencers; when the link breaks it resubscribes (topology
//! first, one channel per command) and has every sequencer sweep, since whatever was published
//! meanwhile is lost. The sequencers ([`sequencer`]) drop what was delivered and back-fill gaps
//! from the store, so streams never see a gap or a duplicate. Control events (bans, sign-outs,
//! typing, ...: [`control`]) travel on one more channel, applied by one more task; after a
//! resubscribe it re-checks what they may have missed ([`control::resync`]).

pub mod control;
mod event;
mod partition;
mod queue;
mod redis_link;
mod sequencer;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use quibble_protocol::ChatMessage;
use redis::{PushInfo, PushKind, Value};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

pub use redis_link::{LinkError, Seeds};

use crate::chat::committed::Committed;
use crate::state::AppState;
use control::Control;
use event::{Event, EventRef};
use partition::{CONTROL, PARTITIONS, partition_of};
use redis_link::{Publisher, PushCallback, Subscription};
use sequencer::{Inbox, Sequencer};

/// How long a batch of commits is retried on Redis before it is dropped.
pub const PUBLISH_DEADLINE: Duration = Duration::from_secs(10);
/// The most commits one publish pipelines.
const PUBLISH_BATCH: usize = 128;
/// What the publisher's queue may hold, in bytes.
const OUTGOING_BYTES: usize = 16 << 20;
/// The first and the longest pause between attempts to reach Redis.
const RETRY_FIRST: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(1);
/// How long subscribing every partition may take.
const SUBSCRIBE_DEADLINE: Duration = Duration::from_secs(10);
/// How often the subscriber checks that Redis still answers (a link can die silently).
const PING_EVERY: Duration = Duration::from_secs(5);
/// What the control task's queue may hold, in bytes.
const CONTROL_BYTES: usize = 1 << 20;

/// The node's side of the fleet, as the store's commit hook uses it.
pub struct Fleet {
    /// This process's id in events, to drop its own commits when Redis echoes them.
    origin: u64,
    inboxes: Arc<[Inbox]>,
    outgoing: queue::Sender<(usize, Bytes)>,
    health: Arc<Health>,
}

/// Whether the node is subscribed to every partition now (for `/healthz`).
#[derive(Default)]
pub struct Health {
    subscribed: AtomicBool,
}

impl Health {
    pub fn is_subscribed(&self) -> bool {
        self.subscribed.load(Ordering::Acquire)
    }

    fn set(&self, subscribed: bool) {
        self.subscribed.store(subscribed, Ordering::Release);
    }
}

/// The fleet's tasks, made before the store (whose hook feeds them) and started once the
/// node's state exists.
pub struct Tasks {
    origin: u64,
    seeds: Seeds,
    inboxes: Arc<[Inbox]>,
    sequencers: Vec<Sequencer>,
    outgoing: queue::Receiver<(usize, Bytes)>,
    control: (queue::Sender<FromNode>, queue::Receiver<FromNode>),
    resync: Arc<Resync>,
    health: Arc<Health>,
}

/// Another node's control event, with that node's id.
type FromNode = (u64, Control);

/// Set when the node (re)subscribed or a control event was lost: the control task re-checks
/// ([`control::resync`]) once it has applied what is queued.
#[derive(Default)]
struct Resync {
    wanted: AtomicBool,
    wake: Notify,
}

impl Resync {
    fn want(&self) {
        self.wanted.store(true, Ordering::Release);
        self.wake.notify_one();
    }
}

impl Fleet {
    /// A node of the fleet whose Redis is reached through `seeds`.
    pub fn new(seeds: Seeds) -> (Arc<Fleet>, Tasks) {
        let origin = rand::random();
        let (inboxes, sequencers): (Vec<Inbox>, Vec<Sequencer>) =
            (0..PARTITIONS).map(sequencer::new).unzip();
        let inboxes: Arc<[Inbox]> = inboxes.into();
        let (outgoing, outgoing_rx) = queue::bounded(OUTGOING_BYTES);
        let health = Arc::new(Health::default());
        let fleet = Arc::new(Fleet {
            origin,
            inboxes: Arc::clone(&inboxes),
            outgoing,
            health: Arc::clone(&health),
        });
        let tasks = Tasks {
            origin,
            seeds,
            inboxes,
            sequencers,
            outgoing: outgoing_rx,
            control: queue::bounded(CONTROL_BYTES),
            resync: Arc::default(),
            health,
        };
        (fleet, tasks)
    }

    /// Whether the node is subscribed to every channel on Redis now (for `/healthz`).
    pub fn is_subscribed(&self) -> bool {
        self.health.is_subscribed()
    }

    /// Publish `control` to the other nodes (best effort: see [`control`]).
    pub fn publish_control(&self, control: &Control) {
        let event = EventRef::Control {
            origin: self.origin,
            control,
        };
        match event::encode(&event) {
            Ok(payload) => {
                let bytes = payload.len();
                if self.outgoing.push((CONTROL, payload), bytes).is_err() {
                    metrics::counter!(crate::metrics::FLEET_PUBLISHED, "outcome" => "dropped")
                        .increment(1);
                }
            }
            Err(error) => tracing::warn!(%error, "cannot encode a control event for the fleet"),
        }
    }

    /// The store's commit hook: deliver here, and publish to the other nodes.
    pub fn committed(&self, messages: &[ChatMessage]) {
        let mut parts: Vec<(usize, Vec<&ChatMessage>)> = Vec::new();
        for message in messages {
            let index = partition_of(message.conversation);
            match parts.iter_mut().find(|(i, _)| *i == index) {
                Some((_, part)) => part.push(message),
                None => parts.push((index, vec![message])),
            }
        }
        for (index, part) in parts {
            let event = EventRef::Committed {
                origin: self.origin,
                messages: &part,
            };
            match event::encode(&event) {
                Ok(payload) => {
                    let bytes = payload.len();
                    if self.outgoing.push((index, payload), bytes).is_err() {
                        metrics::counter!(crate::metrics::FLEET_PUBLISHED, "outcome" => "dropped")
                            .increment(1);
                    }
                }
                Err(error) => tracing::warn!(%error, "cannot encode a commit for the fleet"),
            }
            self.inboxes[index].deliver(part.into_iter().cloned().collect());
        }
    }
}

impl Tasks {
    /// Start the sequencers (delivering through `committed`, back-filling from the store), the
    /// publisher, the subscriber and the control task, until `shutdown`.
    pub fn spawn(
        self,
        committed: Arc<Committed>,
        state: AppState,
        shutdown: watch::Receiver<bool>,
    ) {
        for sequencer in self.sequencers {
            tokio::spawn(sequencer.run(
                Arc::clone(&committed),
                state.store.clone(),
                shutdown.clone(),
            ));
        }
        let (control_tx, control_rx) = self.control;
        tokio::spawn(publish(self.outgoing, self.seeds.clone(), shutdown.clone()));
        tokio::spawn(run_control(
            control_rx,
            Arc::clone(&self.resync),
            state,
            shutdown.clone(),
        ));
        tokio::spawn(subscribe(
            self.seeds,
            Receivers {
                inboxes: self.inboxes,
                control: control_tx,
                resync: self.resync,
                origin: self.origin,
            },
            self.health,
            shutdown,
        ));
    }
}

/// Where the subscriber hands what it hears.
struct Receivers {
    inboxes: Arc<[Inbox]>,
    control: queue::Sender<FromNode>,
    resync: Arc<Resync>,
    origin: u64,
}

impl Receivers {
    fn resync(&self) {
        self.inboxes.iter().for_each(Inbox::catch_up);
        self.resync.want();
    }
}

/// The control task: apply the other nodes' control events here, one at a time, in order;
/// re-check when asked to ([`Resync`]).
async fn run_control(
    mut queue: queue::Receiver<FromNode>,
    resync: Arc<Resync>,
    state: AppState,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut presence = tokio::time::interval(control::PRESENCE_EVERY);
    presence.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = shutdown.changed() => return,
            item = queue.recv() => match item {
                Some((origin, event)) => control::apply(&state, origin, event).await,
                None => return,
            },
            () = resync.wake.notified() => {}
            _ = presence.tick() => control::repeat_presence(&state),
        }
        if resync.wanted.swap(false, Ordering::AcqRel) {
            control::resync(&state).await;
        }
    }
}

/// The publisher task: batches from the queue, each retried until it is published or
/// [`PUBLISH_DEADLINE`] has passed.
async fn publish(
    mut queue: queue::Receiver<(usize, Bytes)>,
    seeds: Seeds,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut publisher = Publisher::new(seeds);
    let mut batch = Vec::with_capacity(PUBLISH_BATCH);
    loop {
        let first = tokio::select! {
            _ = shutdown.changed() => return,
            item = queue.recv() => match item {
                Some(item) => item,
                None => return,
            },
        };
        batch.push(first);
        while batch.len() < PUBLISH_BATCH {
            let Some(item) = queue.try_recv() else { break };
            batch.push(item);
        }
        let deadline = Instant::now() + PUBLISH_DEADLINE;
        let mut pause = RETRY_FIRST;
        loop {
            match publisher.publish(&batch).await {
                Ok(()) => {
                    metrics::counter!(crate::metrics::FLEET_PUBLISHED, "outcome" => "ok")
                        .increment(batch.len() as u64);
                    break;
                }
                Err(error) if Instant::now() + pause > deadline => {
                    tracing::warn!(%error, commits = batch.len(), "Redis did not take commits in time; the other nodes will read them from the store");
                    metrics::counter!(crate::metrics::FLEET_PUBLISHED, "outcome" => "dropped")
                        .increment(batch.len() as u64);
                    break;
                }
                Err(error) => {
                    tracing::debug!(%error, "publishing to Redis failed; retrying");
                    tokio::select! {
                        _ = shutdown.changed() => return,
                        () = tokio::time::sleep(pause) => {}
                    }
                    pause = (pause * 2).min(RETRY_MAX);
                }
            }
        }
        batch.clear();
    }
}

/// The subscriber task: keep every partition subscribed; after each (re)subscribe, have every
/// sequencer sweep for what was published while it was not.
async fn subscribe(
    seeds: Seeds,
    receivers: Receivers,
    health: Arc<Health>,
    mut shutdown: watch::Receiver<bool>,
) {
    let receivers = Arc::new(receivers);
    let mut pause = RETRY_FIRST;
    let mut was_up = true;
    loop {
        let broken = Arc::new(Notify::new());
        let pushes: PushCallback = {
            let receivers = Arc::clone(&receivers);
            let broken = Arc::clone(&broken);
            Arc::new(move |push| on_push(push, &receivers, &broken))
        };
        match tokio::time::timeout(SUBSCRIBE_DEADLINE, Subscription::open(&seeds, pushes)).await {
            Ok(Ok(mut subscription)) => {
                health.set(true);
                metrics::counter!(crate::metrics::FLEET_SUBSCRIBED).increment(1);
                tracing::info!(
                    partitions = PARTITIONS,
                    "subscribed to the fleet's channels on Redis"
                );
                receivers.resync();
                pause = RETRY_FIRST;
                was_up = true;
                let mut ping = tokio::time::interval(PING_EVERY);
                ping.tick().await;
                loop {
                    tokio::select! {
                        _ = shutdown.changed() => return,
                        () = broken.notified() => break,
                        _ = ping.tick() => if let Err(error) = subscription.ping().await {
                            tracing::debug!(%error, "Redis stopped answering");
                            break;
                        },
                    }
                }
                health.set(false);
                tracing::warn!("lost the link to Redis; serving local clients, resubscribing");
            }
            Ok(Err(error)) if was_up => {
                tracing::warn!(%error, "cannot subscribe on Redis; retrying");
                was_up = false;
            }
            Ok(Err(error)) => tracing::debug!(%error, "cannot subscribe on Redis; retrying"),
            Err(_) if was_up => {
                tracing::warn!("subscribing on Redis timed out; retrying");
                was_up = false;
            }
            Err(_) => {}
        }
        tokio::select! {
            _ = shutdown.changed() => return,
            () = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(RETRY_MAX);
    }
}

/// One push from a subscriber connection: another node's commit goes to its sequencer; a
/// dropped link or a lost subscription (a slot moved) breaks the subscription.
fn on_push(push: PushInfo, receivers: &Receivers, broken: &Notify) {
    let Receivers {
        inboxes,
        control,
        resync,
        origin,
    } = receivers;
    match push.kind {
        PushKind::SMessage => {
            let [Value::BulkString(channel), Value::BulkString(payload)] = push.data.as_slice()
            else {
                metrics::counter!(crate::metrics::FLEET_UNREADABLE).increment(1);
                return;
            };
            let Some(index) = partition::of_channel(channel) else {
                return;
            };
            match event::decode(payload) {
                Ok(Event::Committed { origin: from, .. } | Event::Control { origin: from, .. })
                    if from == *origin => {}
                Ok(Event::Committed { messages, .. }) => route(messages, inboxes),
                Ok(Event::Control {
                    origin: from,
                    control: event,
                }) => {
                    if control.push((from, event), payload.len()).is_err() {
                        metrics::counter!(crate::metrics::FLEET_INBOX_FULL).increment(1);
                        resync.want();
                    }
                }
                Err(error) => {
                    metrics::counter!(crate::metrics::FLEET_UNREADABLE).increment(1);
                    tracing::debug!(%error, "an unreadable event on Redis");
                    match inboxes.get(index) {
                        Some(inbox) => inbox.catch_up(),
                        None => resync.want(),
                    }
                }
            }
        }
        PushKind::Disconnection | PushKind::SUnsubscribe => broken.notify_one(),
        _ => {}
    }
}

/// Hand `messages` to their partitions' sequencers (one, unless a node sent them mixed).
fn route(messages: Vec<ChatMessage>, inboxes: &[Inbox]) {
    let Some(first) = messages.first().map(|m| partition_of(m.conversation)) else {
        return;
    };
    if messages
        .iter()
        .all(|m| partition_of(m.conversation) == first)
    {
        inboxes[first].deliver(messages);
        return;
    }
    let mut parts: Vec<Vec<ChatMessage>> = vec![Vec::new(); PARTITIONS];
    for message in messages {
        parts[partition_of(message.conversation)].push(message);
    }
    for (index, part) in parts.into_iter().enumerate() {
        if !part.is_empty() {
            inboxes[index].deliver(part);
        }
    }
}
