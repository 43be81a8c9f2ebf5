//! The fleet (DESIGN §7): identical nodes on one PostgreSQL store, with Redis sharded pub/sub
//! carrying each commit to every node. This module owns what a node adds to the single-node
//! server in fleet mode (`--redis`), wired between the store's commit hook and the hub.
//!
//! A commit's messages are split by partition ([`partition`]); each part goes two ways: to this
//! node's sequencer for that partition (local delivery never waits for Redis), and, encoded
//! once ([`event`]), to the publisher task, which `SPUBLISH`es batches with retries for up to
//! [`PUBLISH_DEADLINE`] before dropping one (the other nodes recover it from the store).
//! Control events have a publisher (and a queue) of their own. The
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
use tokio::sync::Notify;
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
/// How soon a subscription missing some channels tries for all of them again.
const PARTIAL_RETRY: Duration = Duration::from_secs(5);
/// How often the subscriber checks that Redis still answers (a link can die silently).
const PING_EVERY: Duration = Duration::from_secs(5);
/// What the control task's queue may hold, in bytes.
const CONTROL_BYTES: usize = 8 << 20;
/// The shortest time between two resyncs ([`control::resync`]).
const RESYNC_EVERY: Duration = Duration::from_secs(5);

/// The node's side of the fleet, as the store's commit hook uses it.
pub struct Fleet {
    /// This process's id in events, to drop its own commits when Redis echoes them.
    origin: u64,
    inboxes: Arc<[Inbox]>,
    /// To the publishers: commits, and control events in a lane of their own (a flood of
    /// commits, or a shard of a Cluster that is down, does not hold up a ban).
    outgoing: queue::Sender<(usize, Bytes)>,
    outgoing_control: queue::Sender<(usize, Bytes)>,
    /// Set when a control event could not be published; once publishing works again, the
    /// other nodes are asked to resync ([`Control::Resync`]).
    control_lost: Arc<AtomicBool>,
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
    outgoing_control: queue::Receiver<(usize, Bytes)>,
    control_lost: Arc<AtomicBool>,
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
        let (outgoing_control, outgoing_control_rx) = queue::bounded(CONTROL_BYTES);
        let control_lost = Arc::new(AtomicBool::new(false));
        let health = Arc::new(Health::default());
        let fleet = Arc::new(Fleet {
            origin,
            inboxes: Arc::clone(&inboxes),
            outgoing,
            outgoing_control,
            control_lost: Arc::clone(&control_lost),
            health: Arc::clone(&health),
        });
        let tasks = Tasks {
            origin,
            seeds,
            inboxes,
            sequencers,
            outgoing: outgoing_rx,
            outgoing_control: outgoing_control_rx,
            control_lost,
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
        self.publish(
            CONTROL,
            &EventRef::Control {
                origin: self.origin,
                control,
            },
        );
    }

    /// Queue `event` for the publisher, on channel `index`; dropped (and counted) when the
    /// queue is full.
    fn publish(&self, index: usize, event: &EventRef<'_>) {
        match event::encode(event) {
            Ok(payload) => {
                let bytes = payload.len();
                let lane = if index == CONTROL {
                    &self.outgoing_control
                } else {
                    &self.outgoing
                };
                if lane.push((index, payload), bytes).is_err() {
                    metrics::counter!(crate::metrics::FLEET_PUBLISHED, "outcome" => "dropped")
                        .increment(1);
                    if index == CONTROL {
                        self.control_lost.store(true, Ordering::Release);
                    }
                }
            }
            Err(error) => tracing::warn!(%error, "cannot encode an event for the fleet"),
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
            self.publish(
                index,
                &EventRef::Committed {
                    origin: self.origin,
                    messages: &part,
                },
            );
            self.inboxes[index].deliver(part.into_iter().cloned().collect());
        }
    }
}

impl Tasks {
    /// Start the sequencers (delivering through `committed`, back-filling from the store), the
    /// publisher, the subscriber and the control task. They run as long as the process: through
    /// a graceful shutdown's drain too, so what is committed then still reaches the other
    /// nodes, and so do the departing connections' presence.
    pub fn spawn(self, committed: Arc<Committed>, state: AppState) {
        for sequencer in self.sequencers {
            tokio::spawn(sequencer.run(Arc::clone(&committed), state.store.clone()));
        }
        let (control_tx, control_rx) = self.control;
        tokio::spawn(publish(self.outgoing, self.seeds.clone(), None));
        let resync = event::encode(&EventRef::Control {
            origin: self.origin,
            control: &Control::Resync,
        });
        match resync {
            Ok(resync) => tokio::spawn(publish(
                self.outgoing_control,
                self.seeds.clone(),
                Some((self.control_lost, resync)),
            )),
            Err(error) => {
                tracing::error!(%error, "cannot encode the fleet's resync request");
                tokio::spawn(publish(self.outgoing_control, self.seeds.clone(), None))
            }
        };
        tokio::spawn(run_control(control_rx, Arc::clone(&self.resync), state));
        tokio::spawn(subscribe(
            self.seeds,
            Receivers {
                inboxes: self.inboxes,
                control: control_tx,
                resync: self.resync,
                origin: self.origin,
            },
            self.health,
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
async fn run_control(mut queue: queue::Receiver<FromNode>, resync: Arc<Resync>, state: AppState) {
    let mut presence = tokio::time::interval(control::PRESENCE_EVERY);
    presence.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_resync: Option<Instant> = None;
    loop {
        // Unbiased: a busy queue must not starve the presence ticks.
        tokio::select! {
            item = queue.recv() => match item {
                Some((_, Control::Resync)) => resync.want(),
                Some((origin, event)) => control::apply(&state, origin, event).await,
                None => return,
            },
            () = resync.wake.notified() => {}
            _ = presence.tick() => control::repeat_presence(&state),
        }
        // At most one resync per RESYNC_EVERY (a burst of overflows is one resync); a wanted
        // one waits for a later turn, at the latest the next presence tick.
        let due = last_resync.is_none_or(|at| at.elapsed() >= RESYNC_EVERY);
        if due && resync.wanted.swap(false, Ordering::AcqRel) {
            last_resync = Some(Instant::now());
            if !control::resync(&state).await {
                resync.wanted.store(true, Ordering::Release);
            }
        }
    }
}

/// The publisher task: batches from the queue, each retried until it is published or
/// [`PUBLISH_DEADLINE`] has passed.
/// With `lost` (the control lane): a dropped batch sets the flag, and the next successful
/// publish is followed by the resync request it holds.
async fn publish(
    mut queue: queue::Receiver<(usize, Bytes)>,
    seeds: Seeds,
    lost: Option<(Arc<AtomicBool>, Bytes)>,
) {
    let mut publisher = Publisher::new(seeds);
    let mut batch = Vec::with_capacity(PUBLISH_BATCH);
    loop {
        let Some(first) = queue.recv().await else {
            return;
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
                    if let Some((flag, request)) = &lost
                        && flag.swap(false, Ordering::AcqRel)
                        && publisher
                            .publish(&[(CONTROL, request.clone())])
                            .await
                            .is_err()
                    {
                        flag.store(true, Ordering::Release);
                    }
                    break;
                }
                Err(error) if Instant::now() + pause > deadline => {
                    tracing::warn!(%error, events = batch.len(), "Redis did not take events in time (commits: the other nodes read them from the store; control events: they are asked to resync)");
                    metrics::counter!(crate::metrics::FLEET_PUBLISHED, "outcome" => "dropped")
                        .increment(batch.len() as u64);
                    if let Some((flag, _)) = &lost {
                        flag.store(true, Ordering::Release);
                    }
                    break;
                }
                Err(error) => {
                    tracing::debug!(%error, "publishing to Redis failed; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(RETRY_MAX);
                }
            }
        }
        batch.clear();
    }
}

/// The subscriber task: keep every partition subscribed; after each (re)subscribe, have every
/// sequencer sweep for what was published while it was not.
async fn subscribe(seeds: Seeds, receivers: Receivers, health: Arc<Health>) {
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
                let complete = subscription.is_complete();
                health.set(complete);
                metrics::counter!(crate::metrics::FLEET_SUBSCRIBED).increment(1);
                if complete {
                    tracing::info!("subscribed to the fleet's channels on Redis");
                } else if was_up {
                    tracing::warn!(
                        "some of the fleet's channels are unreachable on Redis (a shard down?); their messages come from the store's sweeps meanwhile"
                    );
                }
                receivers.resync();
                pause = RETRY_FIRST;
                was_up = complete;
                let mut ping = tokio::time::interval(PING_EVERY);
                ping.tick().await;
                // A partial subscription tries for the rest again after a while.
                let partial = tokio::time::sleep(if complete {
                    Duration::MAX / 4
                } else {
                    PARTIAL_RETRY
                });
                tokio::pin!(partial);
                loop {
                    tokio::select! {
                        () = broken.notified() => break,
                        () = &mut partial => break,
                        _ = ping.tick() => if let Err(error) = subscription.ping().await {
                            tracing::debug!(%error, "Redis stopped answering");
                            break;
                        },
                    }
                }
                if !complete {
                    continue;
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
        tokio::time::sleep(pause).await;
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
