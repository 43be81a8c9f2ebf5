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

/// N `quibble serve` nodes in fleet mode; a node can be SIGKILLed and started again.
pub struct Fleet {
    nodes: Vec<Option<TestServer>>,
    ports: Vec<u16>,
    postgres: String,
    redis: Vec<String>,
    dir: tempfile::TempDir,
}

impl Fleet {
    /// Start `count` nodes on `postgres`, node `i` given `redis[i % redis.len()]` (one URL, or
    /// one Redis Cluster node each).
    pub fn start(count: usize, postgres: &str, redis: &[String]) -> Fleet {
        let mut fleet = Fleet {
            nodes: Vec::new(),
            ports: Vec::new(),
            postgres: postgres.to_owned(),
            redis: redis.to_vec(),
            dir: tempfile::tempdir().expect("temp dir"),
        };
        for i in 0..count {
            let node = fleet.launch(i);
            fleet.ports.push(node.port);
            fleet.nodes.push(Some(node));
        }
        fleet
    }

    fn launch(&self, i: usize) -> TestServer {
        let data = self.dir.path().join(format!("node{i}"));
        let redis = &self.redis[i % self.redis.len()];
        TestServer::start_with(&data, &["--postgres", &self.postgres, "--redis", redis])
    }

    /// Start killed node `i` again on its data dir (on a new port, which [`Fleet::ports`]
    /// does not list).
    pub fn start_again(&mut self, i: usize) {
        assert!(self.nodes[i].is_none(), "node {i} is running");
        self.nodes[i] = Some(self.launch(i));
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
    /// Moves to the next node this often (ending its session there), as a client behind a
    /// load balancer without sticky sessions may.
    pub hop_every: Option<Duration>,
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
    /// Sessions that were lost (each followed by a new one, with the next node that takes it).
    pub reconnects: u32,
    /// Moves to the next node of its own accord ([`Member::hop_every`]).
    pub hops: u32,
    /// Streams joined again on the same session (a stream ended with a retryable error).
    pub rejoins: u32,
    /// The nodes it had sessions with, in order.
    pub nodes: Vec<usize>,
    /// Why each session that ended before the member finished ended, and why each attempt
    /// at one failed.
    pub lost: Vec<String>,
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
    /// Time to move to the next node ([`Member::hop_every`]).
    Hop,
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
        let mut client = Client {
            member: &self,
            traffic: &traffic,
            deadline: Instant::now() + traffic.limit,
            followed: self
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
                .collect(),
            next_stream: 1,
            turn: 0,
            outcome: Outcome {
                name: self.name.clone(),
                received: HashMap::new(),
                acked: HashMap::new(),
                reconnects: 0,
                hops: 0,
                rejoins: 0,
                nodes: Vec::new(),
                lost: Vec::new(),
                latencies_ms: HashMap::new(),
                finished: false,
                problems: Vec::new(),
            },
        };
        client.run().await;
        client.outcome
    }
}

/// A member's client while it runs: its conversations and what it saw so far.
struct Client<'a> {
    member: &'a Member,
    traffic: &'a Traffic,
    deadline: Instant,
    followed: Vec<Followed>,
    /// The next stream id to open (ids are never reused within a member).
    next_stream: u64,
    /// Where the next new message goes (round robin over the conversations).
    turn: usize,
    outcome: Outcome,
}

impl Client<'_> {
    /// Sessions, one after another (the first with the home node, later ones with the next
    /// node that takes them), until done or out of time.
    async fn run(&mut self) {
        let ports = &self.traffic.ports;
        let mut node = self.member.home;
        while Instant::now() < self.deadline {
            let (mut peer, epoch) =
                match connect(ports[node], self.member.transport, &self.member.token).await {
                    Ok(session) => session,
                    Err(why) => {
                        self.outcome
                            .lost
                            .push(format!("no session with node {node}: {why}"));
                        node = (node + 1) % ports.len();
                        tokio::time::sleep(BACKOFF).await;
                        continue;
                    }
                };
            self.outcome.nodes.push(node);
            match self.session(&mut peer, epoch).await {
                Ended::Done => {
                    self.outcome.finished = true;
                    peer.close().await;
                    return;
                }
                Ended::OutOfTime => break,
                Ended::Hop => {
                    self.outcome.hops += 1;
                    peer.close().await;
                    node = (node + 1) % ports.len();
                }
                Ended::Lost(why) => {
                    self.outcome.reconnects += 1;
                    self.outcome.lost.push(why);
                    tokio::time::sleep(BACKOFF).await;
                }
            }
        }
        let state: Vec<String> = self
            .followed
            .iter()
            .map(|f| {
                format!(
                    "conversation {}: joined {} last seq {} of {}, sent {} of {}, unacked {:?}",
                    f.id.0,
                    f.joined,
                    f.last_seq,
                    self.traffic.expected[&f.id],
                    f.next - 1,
                    f.sends,
                    f.unacked.keys().collect::<Vec<_>>()
                )
            })
            .collect();
        self.outcome.problems.push(format!(
            "{} out of time: {}",
            self.member.name,
            state.join("; ")
        ));
    }

    /// One session: join every conversation where it was left, resend what is unacknowledged,
    /// send the rest at the traffic's pace, ping, and take in what comes.
    async fn session(&mut self, peer: &mut RawPeer, epoch: u64) -> Ended {
        let now = Instant::now();
        for f in &mut self.followed {
            f.stream = 0; // joined afresh on this session, not a rejoin
            f.joined = false;
            f.retry_at = Some(now);
        }
        let hop_at = self.member.hop_every.map(|every| now + every);
        let mut last_heard = now;
        let mut next_ping = now + PING;
        let mut next_send = now;
        loop {
            let expected = &self.traffic.expected;
            if self
                .followed
                .iter()
                .all(|f| f.next > f.sends && f.unacked.is_empty() && f.last_seq >= expected[&f.id])
            {
                return Ended::Done;
            }
            let now = Instant::now();
            if now >= self.deadline {
                return Ended::OutOfTime;
            }
            if now.duration_since(last_heard) > SILENT {
                return Ended::Lost(format!("silent for {SILENT:?}"));
            }
            if hop_at.is_some_and(|at| now >= at) {
                return Ended::Hop;
            }
            let mut frames = self.retries(now, epoch);
            if now >= next_ping {
                frames.push((0, ClientFrame::Ping { nonce: 1 }));
                next_ping = now + PING;
            }
            if now >= next_send
                && let Some(send) = self.new_message()
            {
                frames.push(send);
                next_send = now + self.traffic.pace;
            }
            for (stream, frame) in &frames {
                let sent = tokio::time::timeout(SILENT, peer.try_send(*stream, frame)).await;
                match sent {
                    Err(_) => return Ended::Lost(format!("a send stalled for {SILENT:?}")),
                    // A stream's stopped sending side is its end, not the session's.
                    Ok(Err(e)) if *stream == 0 || !e.starts_with("wt") => {
                        return Ended::Lost(e);
                    }
                    Ok(_) => {}
                }
            }
            let Some(got) = peer.next_within(Duration::from_millis(20)).await else {
                continue;
            };
            last_heard = Instant::now();
            match got {
                Received::Closed(code) => return Ended::Lost(format!("closed ({code:?})")),
                Received::Finished(stream) => {
                    if let Some(f) = self.followed.iter_mut().find(|f| f.stream == stream)
                        && (f.joined || f.retry_at.is_none())
                    {
                        f.joined = false;
                        f.retry_at = Some(Instant::now() + BACKOFF);
                    }
                    peer.finish(stream).await;
                }
                Received::Frame(0, ServerFrame::GoAway { reason, .. }) => {
                    return Ended::Lost(format!("go away: {reason}"));
                }
                Received::Frame(0, ServerFrame::Error { code, reason }) => {
                    assert!(
                        matches!(code, ErrorCode::Internal | ErrorCode::ShuttingDown),
                        "{}: the session was refused: {code:?} {reason}",
                        self.member.name
                    );
                    return Ended::Lost(format!("{code:?} {reason}"));
                }
                Received::Frame(0, _) => {}
                Received::Frame(stream, frame) => {
                    if self.on_frame(stream, frame) {
                        peer.finish(stream).await;
                    }
                }
            }
        }
    }

    /// What is due again: a join where a stream ended, the unacknowledged sends where one was
    /// refused for a while or joined anew.
    fn retries(&mut self, now: Instant, epoch: u64) -> Vec<(u64, ClientFrame)> {
        let mut frames = Vec::new();
        for f in &mut self.followed {
            if f.retry_at.is_none_or(|at| at > now) {
                continue;
            }
            f.retry_at = None;
            if f.joined {
                frames.extend(f.unacked.iter().map(|(&client_id, body)| {
                    let body = body.clone();
                    (f.stream, ClientFrame::Send { client_id, body })
                }));
                continue;
            }
            if f.stream != 0 {
                self.outcome.rejoins += 1;
            }
            f.stream = self.next_stream;
            self.next_stream += 1;
            let resume = Some(Cursor {
                epoch,
                seq: f.last_seq,
            });
            frames.push((
                f.stream,
                ClientFrame::Join {
                    conversation: f.id,
                    resume,
                },
            ));
        }
        frames
    }

    /// The next new message, in the next conversation (round robin) that is joined, has
    /// messages left to send and room in its window.
    fn new_message(&mut self) -> Option<(u64, ClientFrame)> {
        let count = self.followed.len();
        for step in 0..count {
            let f = &mut self.followed[(self.turn + step) % count];
            if f.joined && f.next <= f.sends && f.unacked.len() < WINDOW {
                let body = format!("{} #{} in {}", self.member.name, f.next, f.id.0);
                f.unacked.insert(f.next, body.clone());
                let send = ClientFrame::Send {
                    client_id: f.next,
                    body,
                };
                f.next += 1;
                self.turn = (self.turn + step + 1) % count;
                return Some((f.stream, send));
            }
        }
        None
    }

    /// A frame on a conversation stream; true when it ends the stream.
    fn on_frame(&mut self, stream: u64, frame: ServerFrame) -> bool {
        let name = &self.member.name;
        let outcome = &mut self.outcome;
        let Some(f) = self.followed.iter_mut().find(|f| f.stream == stream) else {
            return false; // a stream given up on
        };
        match frame {
            ServerFrame::Joined {
                from_seq, head_seq, ..
            } => {
                if from_seq != f.last_seq {
                    outcome.problems.push(format!(
                        "{name}: conversation {} resumed after {from_seq}, asked after {}",
                        f.id.0, f.last_seq
                    ));
                }
                f.joined = true;
                f.live_after = head_seq;
                f.retry_at = (!f.unacked.is_empty()).then(Instant::now);
            }
            ServerFrame::Message(m) => {
                if m.seq != f.last_seq + 1 {
                    outcome.problems.push(format!(
                        "{name}: conversation {} delivered seq {} after seq {}",
                        f.id.0, m.seq, f.last_seq
                    ));
                }
                f.last_seq = f.last_seq.max(m.seq);
                if m.seq > f.live_after && m.author_name != *name {
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
                        "{name}: client id {client_id} in conversation {} acknowledged as seq \
                         {before}, then as seq {seq}",
                        f.id.0
                    )),
                    Some(_) => {}
                    None => {
                        self.traffic.acked.fetch_add(1, Ordering::Relaxed);
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
                    "{name}: client id {client_id} refused: {reason}"
                );
                f.retry_at = Some(Instant::now() + BACKOFF);
            }
            ServerFrame::Error { code, reason } => {
                assert!(
                    matches!(code, ErrorCode::Internal | ErrorCode::ShuttingDown),
                    "{name}: conversation {} stream refused: {code:?} {reason}",
                    f.id.0
                );
                self.traffic.refused.fetch_add(1, Ordering::Relaxed);
                f.joined = false;
                f.retry_at = Some(Instant::now() + BACKOFF);
                return true;
            }
            ServerFrame::Lagged { .. } => {
                f.joined = false;
                f.retry_at = Some(Instant::now());
                return true;
            }
            _ => {}
        }
        false
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
             {:?}, lost {:?}",
            o.name,
            o.nodes,
            o.rejoins,
            o.acked.len(),
            percentiles(o),
            o.lost
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
