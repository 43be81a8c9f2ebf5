//! The fleet harness for end-to-end tests: N real `quibble serve` nodes on one PostgreSQL
//! database and one Redis (or Redis Cluster), each with its own data dir ([`Fleet`]); members
//! that follow and send in conversations over either transport the way a careful client does —
//! resume from the last seq they hold, resend unacknowledged client ids, reconnect to another
//! node when theirs is gone ([`Member::run`]); and the end checks that every member's streams
//! hold the conversation's history exactly once, in order ([`check`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use quibble_protocol::{
    ChatMessage, ClientFrame, ConversationId, Cursor, ErrorCode, PROTOCOL_VERSION, ServerFrame,
};
use serde_json::Value;

use super::{RawPeer, Received, TestServer};

/// N `quibble serve` nodes in fleet mode; a node can be SIGKILLed.
pub struct Fleet {
    nodes: Vec<Option<TestServer>>,
    ports: Vec<u16>,
    _dir: tempfile::TempDir,
}

impl Fleet {
    /// Start `count` nodes on `postgres`, node `i` given `redis[i % redis.len()]` (one URL, or
    /// one Redis Cluster node each).
    pub fn start(count: usize, postgres: &str, redis: &[String]) -> Fleet {
        let dir = tempfile::tempdir().expect("temp dir");
        let nodes: Vec<Option<TestServer>> = (0..count)
            .map(|i| {
                let data = dir.path().join(format!("node{i}"));
                let url = &redis[i % redis.len()];
                Some(TestServer::start_with(
                    &data,
                    &["--postgres", postgres, "--redis", url],
                ))
            })
            .collect();
        let ports = nodes.iter().flatten().map(|node| node.port).collect();
        Fleet {
            nodes,
            ports,
            _dir: dir,
        }
    }

    /// Node `i` (it must not have been killed).
    pub fn node(&self, i: usize) -> &TestServer {
        self.nodes[i].as_ref().expect("a live node")
    }

    /// Every node's port, killed ones included (members find those refuse them).
    pub fn ports(&self) -> Vec<u16> {
        self.ports.clone()
    }

    /// The nodes still running, with their index.
    pub fn live(&self) -> impl Iterator<Item = (usize, &TestServer)> {
        self.nodes
            .iter()
            .enumerate()
            .filter_map(|(i, node)| node.as_ref().map(|node| (i, node)))
    }

    /// SIGKILL node `i` by its PID.
    pub fn kill(&mut self, i: usize) {
        self.nodes[i].take().expect("a live node").kill();
    }
}

/// `GET /healthz` of `server`: status and body.
pub async fn health(server: &TestServer) -> (u16, Value) {
    server.api().call("GET", "/healthz", None, None).await
}

/// Polls `/healthz` until its `fanout.ok` is `ok` (the status staying 200 and naming Redis),
/// within `limit`.
pub async fn await_fanout(server: &TestServer, ok: bool, limit: Duration) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let (status, body) = health(server).await;
        assert_eq!(
            status, 200,
            "a node keeps serving whatever Redis does: {body}"
        );
        assert_eq!(body["fanout"]["engine"], "redis", "{body}");
        if body["fanout"]["ok"] == ok {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "/healthz fanout.ok is not {ok} within {limit:?}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    WebTransport,
    WebSocket,
}

/// A session: a connected, welcomed peer and the store's epoch; or why there is none.
async fn connect(port: u16, transport: Transport, token: &str) -> Result<(RawPeer, u64), String> {
    const SETUP: Duration = Duration::from_secs(3);
    let setup = async {
        let mut peer = match transport {
            Transport::WebSocket => RawPeer::websocket_at(port).await?,
            Transport::WebTransport => {
                RawPeer::webtransport_at(port, cert_hash(port).await?).await?
            }
        };
        peer.try_send(
            0,
            &ClientFrame::Hello {
                version: PROTOCOL_VERSION,
                token: token.to_owned(),
            },
        )
        .await?;
        loop {
            match peer.next_within(SETUP).await {
                Some(Received::Frame(0, ServerFrame::Welcome { epoch, .. })) => {
                    return Ok((peer, epoch));
                }
                Some(Received::Frame(0, ServerFrame::Error { code, reason })) => {
                    return Err(format!("hello refused: {code:?} {reason}"));
                }
                Some(Received::Closed(code)) => return Err(format!("closed ({code:?})")),
                Some(_) => {}
                None => return Err("no welcome".into()),
            }
        }
    };
    tokio::time::timeout(SETUP, setup)
        .await
        .unwrap_or_else(|_| Err(format!("no session with port {port} within {SETUP:?}")))
}

/// The certificate hash from `/api/cert` of the node on `port`.
async fn cert_hash(port: u16) -> Result<[u8; 32], String> {
    let url = format!("http://127.0.0.1:{port}/api/cert");
    let body: Value = reqwest::get(&url)
        .await
        .map_err(|e| format!("GET {url}: {e}"))?
        .json()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    let hex = body["sha256_hex"].as_str().ok_or("no hash")?;
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|e| e.to_string())?;
    }
    Ok(out)
}

/// What every member of one traffic run shares: the nodes, the plan, live counters.
pub struct Traffic {
    /// Every node's port (a member tries its home node first, then the next ones).
    pub ports: Vec<u16>,
    /// Each conversation's head once every member has sent everything.
    pub expected: HashMap<ConversationId, u64>,
    /// Time between a member's sends.
    pub pace: Duration,
    /// How long a member may take in all.
    pub limit: Duration,
    /// Sends acknowledged so far, all members together.
    pub acked: AtomicU64,
    /// Streams ended with a retryable error (`Internal`) so far, all members together.
    pub refused: AtomicU64,
}

impl Traffic {
    /// Traffic of `members` over the nodes on `ports`: each conversation's expected head is
    /// what its members send in it.
    pub fn new(ports: Vec<u16>, members: &[Member], pace: Duration, limit: Duration) -> Traffic {
        let mut expected = HashMap::new();
        for member in members {
            for &(conversation, sends) in &member.conversations {
                *expected.entry(conversation).or_default() += sends;
            }
        }
        Traffic {
            ports,
            expected,
            pace,
            limit,
            acked: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }
    }

    /// Every send of every member, all conversations together.
    pub fn total(&self) -> u64 {
        self.expected.values().sum()
    }

    /// Waits until at least `count` sends are acknowledged, within `limit`.
    pub async fn await_acked(&self, count: u64, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.acked.load(Ordering::Relaxed) < count {
            assert!(
                Instant::now() < deadline,
                "only {} of {count} sends acknowledged within {limit:?}",
                self.acked.load(Ordering::Relaxed)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// One user's client: where it connects first, over what, and what it follows and sends.
#[derive(Clone, Debug)]
pub struct Member {
    pub name: String,
    pub token: String,
    /// The node it connects to first (an index into [`Traffic::ports`]).
    pub home: usize,
    pub transport: Transport,
    /// The conversations it joins, each on its own stream, and how many messages it sends in
    /// each (client ids 1..=n).
    pub conversations: Vec<(ConversationId, u64)>,
}

/// What a member saw.
#[derive(Debug)]
pub struct Outcome {
    pub name: String,
    /// Every message its streams delivered per conversation, in arrival order, over all its
    /// sessions (replays and live).
    pub received: HashMap<ConversationId, Vec<ChatMessage>>,
    /// (conversation, client id) → the seq its `Sent` said.
    pub acked: HashMap<(ConversationId, u64), u64>,
    /// New sessions after the first (its connection was lost).
    pub reconnects: u32,
    /// Streams joined again on the same session (a stream ended with a retryable error).
    pub rejoins: u32,
    /// The nodes it had sessions with, in order.
    pub nodes: Vec<usize>,
    /// For each message of another author delivered live (not replayed on a join), per
    /// conversation: how long after its commit (`sent_at_ms`, the same machine's clock) it
    /// arrived, in milliseconds.
    pub latencies_ms: HashMap<ConversationId, Vec<u64>>,
    /// Whether everything it sent was acknowledged and every conversation reached its head.
    pub finished: bool,
    /// Anything a client should never see (a gap, a duplicate, an ack changing its seq).
    pub problems: Vec<String>,
}

/// Messages a member keeps unacknowledged per conversation before waiting.
const WINDOW: usize = 8;
/// How often a member pings, and how long a session may stay silent before it is given up.
const PING: Duration = Duration::from_secs(1);
const SILENT: Duration = Duration::from_secs(5);
/// Before joining again after a retryable error, or reconnecting.
const BACKOFF: Duration = Duration::from_millis(200);

struct Followed {
    id: ConversationId,
    stream: u64,
    joined: bool,
    /// How many messages to send.
    sends: u64,
    /// The highest seq received.
    last_seq: u64,
    /// The head when the stream was last joined: later seqs come live.
    live_after: u64,
    /// The next client id to send.
    next: u64,
    unacked: BTreeMap<u64, String>,
    /// When to join again (not joined) or resend what is unacknowledged (joined).
    retry_at: Option<Instant>,
}

/// Why a session ended.
enum Ended {
    Done,
    Lost(String),
    OutOfTime,
}

impl Member {
    pub fn follows(&self, conversation: ConversationId) -> bool {
        self.conversations.iter().any(|&(c, _)| c == conversation)
    }

    /// How many messages it sends in `conversation`.
    pub fn sends_in(&self, conversation: ConversationId) -> u64 {
        self.conversations
            .iter()
            .find_map(|&(c, sends)| (c == conversation).then_some(sends))
            .unwrap_or(0)
    }

    /// Follow and send until everything is acknowledged and every conversation reached its
    /// expected head, or [`Traffic::limit`] runs out.
    pub async fn run(self, traffic: Arc<Traffic>) -> Outcome {
        let deadline = Instant::now() + traffic.limit;
        let mut outcome = Outcome {
            name: self.name.clone(),
            received: HashMap::new(),
            acked: HashMap::new(),
            reconnects: 0,
            rejoins: 0,
            nodes: Vec::new(),
            latencies_ms: HashMap::new(),
            finished: false,
            problems: Vec::new(),
        };
        let mut followed: Vec<Followed> = self
            .conversations
            .iter()
            .map(|&(id, sends)| Followed {
                id,
                sends,
                stream: 0,
                joined: false,
                last_seq: 0,
                live_after: 0,
                next: 1,
                unacked: BTreeMap::new(),
                retry_at: None,
            })
            .collect();
        let mut node = self.home;
        let mut next_stream = 1;
        let mut sessions = 0;
        loop {
            if Instant::now() >= deadline {
                return outcome;
            }
            let (mut peer, epoch) =
                match connect(traffic.ports[node], self.transport, &self.token).await {
                    Ok(session) => session,
                    Err(_) => {
                        node = (node + 1) % traffic.ports.len();
                        tokio::time::sleep(BACKOFF).await;
                        continue;
                    }
                };
            sessions += 1;
            if sessions > 1 {
                outcome.reconnects += 1;
            }
            outcome.nodes.push(node);
            let ended = self
                .session(
                    &mut peer,
                    epoch,
                    &mut followed,
                    &mut next_stream,
                    &mut outcome,
                    &traffic,
                    deadline,
                )
                .await;
            match ended {
                Ended::Done => {
                    outcome.finished = true;
                    peer.close().await;
                    return outcome;
                }
                Ended::OutOfTime => {
                    outcome
                        .problems
                        .push(self.unfinished(&followed, &traffic, "out of time"));
                    return outcome;
                }
                Ended::Lost(_) => tokio::time::sleep(BACKOFF).await,
            }
        }
    }

    fn unfinished(&self, followed: &[Followed], traffic: &Traffic, why: &str) -> String {
        let state: Vec<String> = followed
            .iter()
            .map(|f| {
                format!(
                    "conversation {}: joined {} last seq {} of {}, sent {} of {}, unacked {:?}",
                    f.id.0,
                    f.joined,
                    f.last_seq,
                    traffic.expected[&f.id],
                    f.next - 1,
                    f.sends,
                    f.unacked.keys().collect::<Vec<_>>()
                )
            })
            .collect();
        format!("{} {why}: {}", self.name, state.join("; "))
    }

    #[allow(clippy::too_many_arguments)]
    async fn session(
        &self,
        peer: &mut RawPeer,
        epoch: u64,
        followed: &mut [Followed],
        next_stream: &mut u64,
        outcome: &mut Outcome,
        traffic: &Traffic,
        deadline: Instant,
    ) -> Ended {
        let now = Instant::now();
        for f in followed.iter_mut() {
            f.stream = 0; // joined afresh on this session, not a rejoin
            f.joined = false;
            f.retry_at = Some(now);
        }
        let mut last_heard = now;
        let mut next_ping = now + PING;
        let mut next_send = now;
        let mut turn = 0;
        loop {
            let done = followed.iter().all(|f| {
                f.next > f.sends && f.unacked.is_empty() && f.last_seq >= traffic.expected[&f.id]
            });
            if done {
                return Ended::Done;
            }
            let now = Instant::now();
            if now >= deadline {
                return Ended::OutOfTime;
            }
            if now.duration_since(last_heard) > SILENT {
                return Ended::Lost(format!("silent for {SILENT:?}"));
            }
            let mut frames: Vec<(u64, ClientFrame)> = Vec::new();
            if now >= next_ping {
                frames.push((0, ClientFrame::Ping { nonce: 1 }));
                next_ping = now + PING;
            }
            for f in followed.iter_mut() {
                if f.retry_at.is_some_and(|at| at <= now) {
                    f.retry_at = None;
                    if f.joined {
                        for (&client_id, body) in &f.unacked {
                            frames.push((
                                f.stream,
                                ClientFrame::Send {
                                    client_id,
                                    body: body.clone(),
                                },
                            ));
                        }
                    } else {
                        if f.stream != 0 {
                            outcome.rejoins += 1;
                        }
                        f.stream = *next_stream;
                        *next_stream += 1;
                        frames.push((
                            f.stream,
                            ClientFrame::Join {
                                conversation: f.id,
                                resume: Some(Cursor {
                                    epoch,
                                    seq: f.last_seq,
                                }),
                            },
                        ));
                    }
                }
            }
            if now >= next_send {
                let count = followed.len();
                for step in 0..count {
                    let f = &mut followed[(turn + step) % count];
                    if f.joined && f.next <= f.sends && f.unacked.len() < WINDOW {
                        let body = format!("{} #{} in {}", self.name, f.next, f.id.0);
                        frames.push((
                            f.stream,
                            ClientFrame::Send {
                                client_id: f.next,
                                body: body.clone(),
                            },
                        ));
                        f.unacked.insert(f.next, body);
                        f.next += 1;
                        turn = (turn + step + 1) % count;
                        next_send = now + traffic.pace;
                        break;
                    }
                }
            }
            for (stream, frame) in &frames {
                if let Err(e) = peer.try_send(*stream, frame).await {
                    // A stream's stopped sending side is its end, not the session's.
                    if *stream == 0 || !e.starts_with("wt") {
                        return Ended::Lost(e);
                    }
                }
            }
            let wait = Duration::from_millis(20);
            let Some(got) = peer.next_within(wait).await else {
                continue;
            };
            last_heard = Instant::now();
            let (stream, frame) = match got {
                Received::Closed(code) => return Ended::Lost(format!("closed ({code:?})")),
                Received::Finished(stream) => {
                    if let Some(f) = followed.iter_mut().find(|f| f.stream == stream)
                        && (f.joined || f.retry_at.is_none())
                    {
                        f.joined = false;
                        f.retry_at = Some(Instant::now() + BACKOFF);
                    }
                    continue;
                }
                Received::Frame(stream, frame) => (stream, frame),
            };
            if stream == 0 {
                match frame {
                    ServerFrame::GoAway { reason, .. } => {
                        return Ended::Lost(format!("go away: {reason}"));
                    }
                    ServerFrame::Error { code, reason } => {
                        assert!(
                            matches!(code, ErrorCode::Internal | ErrorCode::ShuttingDown),
                            "{}: the session was refused: {code:?} {reason}",
                            self.name
                        );
                        return Ended::Lost(format!("{code:?} {reason}"));
                    }
                    _ => continue,
                }
            }
            let Some(f) = followed.iter_mut().find(|f| f.stream == stream) else {
                continue; // a stream given up on
            };
            match frame {
                ServerFrame::Joined {
                    from_seq, head_seq, ..
                } => {
                    if from_seq != f.last_seq {
                        outcome.problems.push(format!(
                            "{}: conversation {} resumed after {from_seq}, asked after {}",
                            self.name, f.id.0, f.last_seq
                        ));
                    }
                    f.joined = true;
                    f.live_after = head_seq;
                    f.retry_at = (!f.unacked.is_empty()).then(Instant::now);
                }
                ServerFrame::Message(m) => {
                    if m.seq != f.last_seq + 1 {
                        outcome.problems.push(format!(
                            "{}: conversation {} delivered seq {} after seq {}",
                            self.name, f.id.0, m.seq, f.last_seq
                        ));
                    }
                    f.last_seq = f.last_seq.max(m.seq);
                    if m.seq > f.live_after && m.author_name != self.name {
                        let now_ms = std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .expect("after 1970")
                            .as_millis() as u64;
                        outcome
                            .latencies_ms
                            .entry(f.id)
                            .or_default()
                            .push(now_ms.saturating_sub(m.sent_at_ms));
                    }
                    outcome.received.entry(f.id).or_default().push(m);
                }
                ServerFrame::Sent { client_id, seq, .. } => {
                    f.unacked.remove(&client_id);
                    match outcome.acked.insert((f.id, client_id), seq) {
                        Some(before) if before != seq => outcome.problems.push(format!(
                            "{}: client id {client_id} in conversation {} acknowledged as seq \
                             {before}, then as seq {seq}",
                            self.name, f.id.0
                        )),
                        Some(_) => {}
                        None => {
                            traffic.acked.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                ServerFrame::Rejected {
                    client_id,
                    code,
                    reason,
                } => {
                    assert_eq!(
                        code,
                        ErrorCode::RateLimited,
                        "{}: client id {client_id} refused: {reason}",
                        self.name
                    );
                    f.retry_at = Some(Instant::now() + BACKOFF);
                }
                ServerFrame::Error { code, reason } => {
                    assert!(
                        matches!(code, ErrorCode::Internal | ErrorCode::ShuttingDown),
                        "{}: conversation {} stream refused: {code:?} {reason}",
                        self.name,
                        f.id.0
                    );
                    traffic.refused.fetch_add(1, Ordering::Relaxed);
                    f.joined = false;
                    f.retry_at = Some(Instant::now() + BACKOFF);
                }
                ServerFrame::Lagged { .. } => {
                    f.joined = false;
                    f.retry_at = Some(Instant::now());
                }
                _ => {}
            }
        }
    }
}

/// Run every member at once; their outcomes in the same order.
pub async fn run_all(members: Vec<Member>, traffic: Arc<Traffic>) -> Vec<Outcome> {
    let tasks: Vec<_> = members
        .into_iter()
        .map(|member| tokio::spawn(member.run(traffic.clone())))
        .collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.expect("a member's task"));
    }
    outcomes
}

/// The whole history of `conversation` as the node on `port` replays it to `token` (a member).
pub async fn history(port: u16, token: &str, conversation: ConversationId) -> Vec<ChatMessage> {
    let (mut peer, epoch) = connect(port, Transport::WebSocket, token)
        .await
        .unwrap_or_else(|e| panic!("history from port {port}: {e}"));
    let (_, messages) = peer
        .join(1, conversation, Some(Cursor { epoch, seq: 0 }))
        .await;
    peer.close().await;
    messages
}

/// Every acknowledged message is in the history exactly once, the history is seqs
/// 1..=expected with each (author, client id) once, every node replays the same history, and
/// every member's streams delivered exactly that history, in order, once. Returns the problems.
pub async fn check(
    fleet: &Fleet,
    traffic: &Traffic,
    members: &[Member],
    outcomes: &[Outcome],
) -> Vec<String> {
    for o in outcomes {
        eprintln!(
            "{}: sessions with nodes {:?}, {} rejoins, {} acks, live delivery after commit (ms) \
             {:?}",
            o.name,
            o.nodes,
            o.rejoins,
            o.acked.len(),
            percentiles(o)
        );
    }
    eprintln!(
        "{} streams refused (retryable) in all",
        traffic.refused.load(Ordering::Relaxed)
    );
    let mut problems: Vec<String> = outcomes
        .iter()
        .flat_map(|o| o.problems.iter().cloned())
        .collect();
    for o in outcomes.iter().filter(|o| !o.finished) {
        problems.push(format!("{} did not finish", o.name));
    }
    for (i, node) in fleet.live() {
        let log = node.log();
        if log.contains("panicked") {
            problems.push(format!("node {i} panicked:\n{log}"));
        }
    }
    let mut conversations: Vec<&ConversationId> = traffic.expected.keys().collect();
    conversations.sort();
    for &conversation in conversations {
        let expected = traffic.expected[&conversation];
        let reader = members
            .iter()
            .find(|m| m.follows(conversation))
            .expect("a member follows each conversation");
        let mut reference: Option<Vec<ChatMessage>> = None;
        for (i, node) in fleet.live() {
            let replayed = history(node.port, &reader.token, conversation).await;
            match &reference {
                None => reference = Some(replayed),
                Some(first) if *first != replayed => problems.push(format!(
                    "node {i} replays conversation {} differently: {} messages, seqs {:?}, \
                     against {} messages",
                    conversation.0,
                    replayed.len(),
                    seqs(&replayed),
                    first.len()
                )),
                Some(_) => {}
            }
        }
        let history = reference.expect("a live node");
        let seq_list = seqs(&history);
        if seq_list != (1..=expected).collect::<Vec<_>>() {
            problems.push(format!(
                "conversation {}: history holds seqs {seq_list:?}, expected 1..={expected}",
                conversation.0
            ));
        }
        let mut ids = std::collections::HashSet::new();
        for m in &history {
            if !ids.insert((m.author_name.clone(), m.client_id)) {
                problems.push(format!(
                    "conversation {}: {} client id {} stored twice",
                    conversation.0, m.author_name, m.client_id
                ));
            }
        }
        let mut acks = 0;
        for (member, o) in members.iter().zip(outcomes) {
            if !member.follows(conversation) {
                continue;
            }
            for (&(c, client_id), &seq) in &o.acked {
                if c != conversation {
                    continue;
                }
                acks += 1;
                let stored = history.iter().find(|m| m.seq == seq);
                if !stored.is_some_and(|m| m.author_name == member.name && m.client_id == client_id)
                {
                    problems.push(format!(
                        "{} client id {client_id} acknowledged as seq {seq} of conversation {}, \
                         which holds {stored:?}",
                        member.name, conversation.0
                    ));
                }
            }
            let got = o.received.get(&conversation).map_or(&[][..], Vec::as_slice);
            if got != history.as_slice() {
                problems.push(format!(
                    "{} (nodes {:?}, {:?}) received seqs {:?} in conversation {}, the history is \
                     seqs 1..={}{}",
                    member.name,
                    o.nodes,
                    member.transport,
                    seqs(got),
                    conversation.0,
                    history.len(),
                    if seqs(got) == seq_list {
                        " (same seqs, other contents)"
                    } else {
                        ""
                    }
                ));
            }
        }
        if acks != history.len() {
            problems.push(format!(
                "conversation {}: {acks} acknowledgements for {} messages",
                conversation.0,
                history.len()
            ));
        }
    }
    problems
}

fn seqs(messages: &[ChatMessage]) -> Vec<u64> {
    messages.iter().map(|m| m.seq).collect()
}

/// The 50th and 90th percentiles and the maximum of `outcome`'s live delivery times, in ms.
pub fn percentiles(outcome: &Outcome) -> [u64; 3] {
    let mut sorted: Vec<u64> = outcome.latencies_ms.values().flatten().copied().collect();
    sorted.sort_unstable();
    let at = |q: usize| sorted.get(sorted.len() * q / 100).copied().unwrap_or(0);
    [at(50), at(90), sorted.last().copied().unwrap_or(0)]
}
