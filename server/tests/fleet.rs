//! A fleet of `quibble serve --postgres URL --redis URL` nodes end to end: real processes on one
//! PostgreSQL database and a real Redis (or a three-master Redis Cluster), clients spread over
//! the nodes and both transports in shared rooms and DMs. Every member receives every message
//! exactly once and in the same order — with all parts up, when a node is SIGKILLed (its clients
//! reconnect elsewhere and resume), when Redis dies and comes back (back-fill, no reconnects),
//! on Redis Cluster (also when a master dies and comes back), and when PostgreSQL stops for a
//! while (retryable refusals, resends). After each Redis outage every node has subscribed
//! every channel again.

mod support;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use quibble_protocol::ConversationId;
use quibble_test_support::postgres::Postgres;
use quibble_test_support::redis::{Redis, RedisCluster, Reply, command};
use support::fleet::{Fleet, Member, Outcome, Traffic, Transport, await_fanout, check, run_all};

/// How long a member may take in all (each run's traffic takes a few seconds).
const MEMBER_LIMIT: Duration = Duration::from_secs(45);

/// A new database on the test binary's shared PostgreSQL.
async fn fresh_database() -> String {
    tokio::task::spawn_blocking(|| Postgres::shared().fresh_database())
        .await
        .unwrap()
}

/// Sign `names` up, user `i` on node `i % nodes` (any node serves any account); their tokens.
async fn sign_up(fleet: &Fleet, names: &[&str]) -> Vec<String> {
    let live: Vec<_> = fleet.live().map(|(_, node)| node.api()).collect();
    let mut tokens = Vec::new();
    for (i, name) in names.iter().enumerate() {
        tokens.push(live[i % live.len()].signup(name).await);
    }
    tokens
}

/// Member `i`: home node `i % nodes`, WebTransport on even `i`, WebSocket on odd ones.
fn member(
    i: usize,
    names: &[&str],
    tokens: &[String],
    nodes: usize,
    conversations: Vec<(ConversationId, u64)>,
) -> Member {
    Member {
        name: names[i].to_owned(),
        token: tokens[i].clone(),
        home: i % nodes,
        transport: if i.is_multiple_of(2) {
            Transport::WebTransport
        } else {
            Transport::WebSocket
        },
        hop_every: None,
        conversations,
    }
}

/// The sharded pub/sub channels the Redis on `port` has subscribers on.
fn shard_channels(port: u16) -> Vec<String> {
    match command(port, &["PUBSUB", "SHARDCHANNELS"]).unwrap() {
        Reply::Array(names) => names
            .into_iter()
            .map(|name| match name {
                Reply::Bulk(name) => name,
                other => panic!("a channel name: {other:?}"),
            })
            .collect(),
        other => panic!("PUBSUB SHARDCHANNELS: {other:?}"),
    }
}

/// Subscriptions to sharded channels on the Redis on `port`, all nodes' together (one
/// `PUBSUB SHARDNUMSUB` per channel: the channels span slots).
fn shard_subscriptions(port: u16) -> i64 {
    shard_channels(port)
        .iter()
        .map(
            |channel| match command(port, &["PUBSUB", "SHARDNUMSUB", channel]).unwrap() {
                Reply::Array(pair) if pair.len() == 2 => match pair[1] {
                    Reply::Integer(count) => count,
                    ref other => panic!("a subscriber count: {other:?}"),
                },
                other => panic!("PUBSUB SHARDNUMSUB {channel}: {other:?}"),
            },
        )
        .sum()
}

/// The traffic of `members` on `fleet`'s nodes, a send every `pace_ms` each.
fn traffic_of(fleet: &Fleet, members: &[Member], pace_ms: u64) -> Arc<Traffic> {
    Arc::new(Traffic::new(
        fleet.ports(),
        members,
        Duration::from_millis(pace_ms),
        MEMBER_LIMIT,
    ))
}

/// Waits until the Redis on `port` has `want` sharded subscriptions again, within `limit`.
async fn await_subscriptions(port: u16, want: i64, limit: Duration) {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let have = tokio::task::spawn_blocking(move || shard_subscriptions(port))
            .await
            .unwrap();
        if have == want {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{have} sharded subscriptions on port {port} after {limit:?}, {want} before the outage"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn assert_no_problems(problems: Vec<String>) {
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// Live messages reach the nodes without a sender in their conversation through Redis, within
/// milliseconds of their commit, not with the nodes' back-fill sweep (every ~2 s): the median
/// of those deliveries is well under that. (Members must not have moved between nodes.)
fn assert_fanned_out_live(members: &[Member], outcomes: &[Outcome]) {
    let mut remote: Vec<u64> = Vec::new();
    for (m, o) in members.iter().zip(outcomes) {
        for &(conversation, _) in &m.conversations {
            let sent_here = members
                .iter()
                .any(|s| s.home == m.home && s.sends_in(conversation) > 0);
            if !sent_here && let Some(latencies) = o.latencies_ms.get(&conversation) {
                remote.extend(latencies);
            }
        }
    }
    remote.sort_unstable();
    assert!(
        remote.len() >= 20,
        "only {} messages reached a node without a sender live",
        remote.len()
    );
    let median = remote[remote.len() / 2];
    assert!(
        median < 250,
        "live delivery to nodes without a sender took {median} ms after the commit (median of \
         {}; p90 {} ms)",
        remote.len(),
        remote[remote.len() * 9 / 10]
    );
}

/// `member` never lost its session, nor a stream: one session with the node it went to, or
/// (hopping) one per move.
fn assert_never_cut(member: &Member, o: &Outcome) {
    let sessions = if member.hop_every.is_some() {
        o.hops as usize + 1
    } else {
        1
    };
    assert!(
        o.lost.is_empty()
            && o.rejoins == 0
            && o.nodes.len() == sessions
            && o.nodes.first() == Some(&member.home),
        "{} had to reconnect or rejoin: sessions with nodes {:?} (home {}), {} rejoins, lost: {:?}",
        o.name,
        o.nodes,
        member.home,
        o.rejoins,
        o.lost
    );
}

fn assert_no_reconnects(members: &[Member], outcomes: &[Outcome]) {
    for (m, o) in members.iter().zip(outcomes) {
        assert_never_cut(m, o);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_deliver_every_message_once_in_order() {
    let database = fresh_database().await;
    let redis = tokio::task::spawn_blocking(Redis::start).await.unwrap();
    let fleet = Fleet::start(3, &database, &[redis.url()]);
    let names = ["ann", "ben", "cat", "dan", "eve", "fay"];
    let tokens = sign_up(&fleet, &names).await;
    let api = fleet.node(0).api();
    let room = api.create_room(&tokens[0], "lobby").await;
    // Everyone follows "news"; only ann and dan (node 0) write there, so it reaches nodes 1
    // and 2 through the fan-out alone.
    let news = api.create_room(&tokens[0], "news").await;
    // ann (node 0, WebTransport) and ben (node 1, WebSocket); cat (node 2, WebTransport) and
    // dan (node 0, WebSocket).
    let dms = [
        api.befriend(&tokens[0], &tokens[1], "ann", "ben").await,
        api.befriend(&tokens[2], &tokens[3], "cat", "dan").await,
    ];
    let members: Vec<Member> = (0..names.len())
        .map(|i| {
            let in_news = if i == 0 || i == 3 { 30 } else { 0 };
            let mut conversations = vec![(room, 30), (news, in_news)];
            conversations.extend(dms.get(i / 2).map(|&dm| (dm, 30)));
            member(i, &names, &tokens, 3, conversations)
        })
        .collect();
    let traffic = traffic_of(&fleet, &members, 15);
    assert_eq!(
        (traffic.expected[&room], traffic.expected[&news]),
        (180, 60)
    );
    let run = tokio::spawn(run_all(members.clone(), traffic.clone()));
    traffic
        .await_acked(traffic.total() / 2, Duration::from_secs(30))
        .await;
    // The fan-out goes through Redis's sharded pub/sub.
    let port = redis.port();
    let channels = tokio::task::spawn_blocking(move || shard_channels(port))
        .await
        .unwrap();
    assert!(
        !channels.is_empty(),
        "no sharded channel subscribed on Redis"
    );
    let outcomes = run.await.unwrap();
    assert_no_problems(check(&fleet, &traffic, &members, &outcomes).await);
    assert_no_reconnects(&members, &outcomes);
    assert_fanned_out_live(&members, &outcomes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_hopping_between_nodes_mid_traffic_resume_exactly() {
    let database = fresh_database().await;
    let redis = tokio::task::spawn_blocking(Redis::start).await.unwrap();
    let fleet = Fleet::start(3, &database, &[redis.url()]);
    let names = ["ann", "ben", "cat", "dan", "eve", "fay"];
    let tokens = sign_up(&fleet, &names).await;
    let api = fleet.node(0).api();
    let room = api.create_room(&tokens[0], "lobby").await;
    let dm = api.befriend(&tokens[0], &tokens[1], "ann", "ben").await;
    // Every member moves to the next node every 0.30-0.55 s (each at its own rhythm) while
    // everyone sends: each move resumes every stream where it was, on another node, while
    // the others' messages are in flight between the nodes.
    let members: Vec<Member> = (0..names.len())
        .map(|i| {
            let mut conversations = vec![(room, 40)];
            if i < 2 {
                conversations.push((dm, 40));
            }
            Member {
                hop_every: Some(Duration::from_millis(300 + 50 * i as u64)),
                ..member(i, &names, &tokens, 3, conversations)
            }
        })
        .collect();
    let traffic = traffic_of(&fleet, &members, 25);
    let outcomes = run_all(members.clone(), traffic.clone()).await;
    assert_no_problems(check(&fleet, &traffic, &members, &outcomes).await);
    for o in &outcomes {
        assert!(o.hops >= 2, "{} moved only {} times", o.name, o.hops);
    }
    assert_no_reconnects(&members, &outcomes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_loses_only_its_connections() {
    let database = fresh_database().await;
    let redis = tokio::task::spawn_blocking(Redis::start).await.unwrap();
    let mut fleet = Fleet::start(3, &database, &[redis.url()]);
    let names = ["ann", "ben", "cat", "dan", "eve", "fay"];
    let tokens = sign_up(&fleet, &names).await;
    let api = fleet.node(0).api();
    let room = api.create_room(&tokens[0], "lobby").await;
    // cat (node 2, WebTransport) and dan (node 0, WebSocket): a DM across the node that dies.
    let dm = api.befriend(&tokens[2], &tokens[3], "cat", "dan").await;
    let members: Vec<Member> = (0..names.len())
        .map(|i| {
            let mut conversations = vec![(room, 40)];
            if i == 2 || i == 3 {
                conversations.push((dm, 40));
            }
            member(i, &names, &tokens, 3, conversations)
        })
        .collect();
    let traffic = traffic_of(&fleet, &members, 40);
    let run = tokio::spawn(run_all(members.clone(), traffic.clone()));
    traffic
        .await_acked(traffic.total() / 3, Duration::from_secs(30))
        .await;
    fleet.kill(2);
    let outcomes = run.await.unwrap();
    assert!(
        traffic.acked.load(Ordering::Relaxed) > traffic.total() / 3,
        "sends went on after the kill"
    );
    // The node comes back (nothing of the conversations is in its data dir) and replays the
    // same history as the others.
    fleet.start_again(2);
    assert_no_problems(check(&fleet, &traffic, &members, &outcomes).await);
    for (m, o) in members.iter().zip(&outcomes) {
        if m.home == 2 {
            assert!(
                o.reconnects >= 1 && o.nodes.last() != Some(&2),
                "{} ({:?}) went on on another node: sessions with nodes {:?}",
                o.name,
                m.transport,
                o.nodes
            );
        } else {
            assert_never_cut(m, o);
        }
    }
}

/// Kills `redis` (SIGKILL), checks every node says so on `/healthz` and that sends are still
/// acknowledged (PostgreSQL is the store), keeps it down for at least `down` in all, starts it
/// again and waits until every node is subscribed again.
async fn redis_outage(fleet: &Fleet, traffic: &Traffic, mut redis: Redis, down: Duration) -> Redis {
    let port = redis.port();
    let subscriptions = tokio::task::spawn_blocking(move || shard_subscriptions(port))
        .await
        .unwrap();
    assert!(
        subscriptions > 0,
        "no sharded subscriptions before the outage"
    );
    let killed = std::time::Instant::now();
    redis = tokio::task::spawn_blocking(move || {
        redis.kill();
        redis
    })
    .await
    .unwrap();
    for (_, node) in fleet.live() {
        let health = await_fanout(node, false, Duration::from_secs(10)).await;
        assert_eq!(health["status"], "degraded", "{health}");
    }
    let acked = traffic.acked.load(Ordering::Relaxed);
    traffic
        .await_acked(acked + 20, Duration::from_secs(10))
        .await;
    tokio::time::sleep(down.saturating_sub(killed.elapsed())).await;
    assert!(
        traffic.acked.load(Ordering::Relaxed) < traffic.total(),
        "the traffic ended before Redis came back: make it longer"
    );
    redis = tokio::task::spawn_blocking(move || {
        redis.start_again();
        redis
    })
    .await
    .unwrap();
    for (_, node) in fleet.live() {
        let health = await_fanout(node, true, Duration::from_secs(15)).await;
        assert_eq!(health["status"], "ok", "{health}");
    }
    // Every node subscribed every channel again (the restarted Redis came back empty).
    await_subscriptions(port, subscriptions, Duration::from_secs(5)).await;
    redis
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_and_restarted_mid_traffic() {
    let database = fresh_database().await;
    let mut redis = tokio::task::spawn_blocking(Redis::start).await.unwrap();
    let fleet = Fleet::start(3, &database, &[redis.url()]);
    for (_, node) in fleet.live() {
        await_fanout(node, true, Duration::from_secs(10)).await;
    }
    let names = ["ann", "ben", "cat", "dan"];
    let tokens = sign_up(&fleet, &names).await;
    let api = fleet.node(0).api();
    let room = api.create_room(&tokens[0], "lobby").await;
    // ann (node 0, WebTransport) and ben (node 1, WebSocket).
    let dm = api.befriend(&tokens[0], &tokens[1], "ann", "ben").await;
    // ~17 s of sends for the two members in the DM (two messages per 55 ms), ~8 s for the others.
    let members: Vec<Member> = (0..names.len())
        .map(|i| {
            let mut conversations = vec![(room, 150)];
            if i < 2 {
                conversations.push((dm, 150));
            }
            member(i, &names, &tokens, 3, conversations)
        })
        .collect();
    let traffic = traffic_of(&fleet, &members, 55);
    let run = tokio::spawn(run_all(members.clone(), traffic.clone()));
    traffic
        .await_acked(traffic.total() / 10, Duration::from_secs(30))
        .await;
    // A short outage (the nodes' publishers retry meanwhile), then one longer than their
    // publish retry (10 s: what was committed meanwhile is dropped, and the other nodes must
    // back-fill it from PostgreSQL).
    redis = redis_outage(&fleet, &traffic, redis, Duration::ZERO).await;
    let _redis = redis_outage(&fleet, &traffic, redis, Duration::from_secs(11)).await;
    let outcomes = run.await.unwrap();
    assert_no_problems(check(&fleet, &traffic, &members, &outcomes).await);
    assert_no_reconnects(&members, &outcomes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn works_on_redis_cluster() {
    let database = fresh_database().await;
    let cluster = tokio::task::spawn_blocking(RedisCluster::start)
        .await
        .unwrap();
    // Node 0 is given every master as a comma-separated list of seeds; nodes 1 and 2 one
    // master's URL each (a different one).
    let urls = cluster.urls();
    let fleet = Fleet::start(
        3,
        &database,
        &[urls.join(","), urls[1].clone(), urls[2].clone()],
    );
    for (_, node) in fleet.live() {
        await_fanout(node, true, Duration::from_secs(10)).await;
    }
    let names = ["ann", "ben", "cat", "dan"];
    let tokens = sign_up(&fleet, &names).await;
    let api = fleet.node(0).api();
    // Eight rooms, so their partitions land on different masters. Everyone follows every room;
    // room r is written in by the members of node r % 3 only.
    let mut rooms = Vec::new();
    for r in 0..8 {
        rooms.push(api.create_room(&tokens[0], &format!("room{r}")).await);
    }
    let members: Vec<Member> = (0..names.len())
        .map(|i| {
            let conversations = rooms
                .iter()
                .enumerate()
                .map(|(r, &room)| (room, if r % 3 == i % 3 { 10 } else { 0 }))
                .collect();
            member(i, &names, &tokens, 3, conversations)
        })
        .collect();
    let traffic = traffic_of(&fleet, &members, 10);
    let run = tokio::spawn(run_all(members.clone(), traffic.clone()));
    traffic
        .await_acked(traffic.total() / 2, Duration::from_secs(30))
        .await;
    // The nodes' sharded subscriptions are spread over the masters (each on its slot's).
    let ports = cluster.ports();
    let carrying = tokio::task::spawn_blocking(move || {
        ports
            .into_iter()
            .filter(|&port| !shard_channels(port).is_empty())
            .count()
    })
    .await
    .unwrap();
    assert!(carrying >= 2, "sharded channels on {carrying} of 3 masters");
    let outcomes = run.await.unwrap();
    assert_no_problems(check(&fleet, &traffic, &members, &outcomes).await);
    assert_no_reconnects(&members, &outcomes);
    assert_fanned_out_live(&members, &outcomes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_cluster_master_killed_and_restarted_mid_traffic() {
    let database = fresh_database().await;
    let mut cluster = tokio::task::spawn_blocking(RedisCluster::start)
        .await
        .unwrap();
    let fleet = Fleet::start(3, &database, &cluster.urls());
    for (_, node) in fleet.live() {
        await_fanout(node, true, Duration::from_secs(10)).await;
    }
    let names = ["ann", "ben", "cat", "dan"];
    let tokens = sign_up(&fleet, &names).await;
    let api = fleet.node(0).api();
    let mut rooms = Vec::new();
    for r in 0..6 {
        rooms.push(api.create_room(&tokens[0], &format!("room{r}")).await);
    }
    let members: Vec<Member> = (0..names.len())
        .map(|i| {
            let conversations = rooms.iter().map(|&room| (room, 40)).collect();
            member(i, &names, &tokens, 3, conversations)
        })
        .collect();
    let traffic = traffic_of(&fleet, &members, 30);
    let run = tokio::spawn(run_all(members.clone(), traffic.clone()));
    traffic
        .await_acked(traffic.total() / 5, Duration::from_secs(30))
        .await;
    // Master 2 (node 2's seed) dies: its slots' channels are gone for 3 s.
    let port = cluster.ports()[2];
    let subscriptions = tokio::task::spawn_blocking(move || shard_subscriptions(port))
        .await
        .unwrap();
    assert!(subscriptions > 0, "no sharded subscriptions on master 2");
    cluster = tokio::task::spawn_blocking(move || {
        cluster.node(2).kill();
        cluster
    })
    .await
    .unwrap();
    let acked = traffic.acked.load(Ordering::Relaxed);
    traffic
        .await_acked(acked + 20, Duration::from_secs(10))
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        traffic.acked.load(Ordering::Relaxed) < traffic.total(),
        "the traffic ended before the master came back: make it longer"
    );
    let _cluster = tokio::task::spawn_blocking(move || {
        cluster.node(2).start_again();
        cluster.wait_ok();
        cluster
    })
    .await
    .unwrap();
    for (_, node) in fleet.live() {
        await_fanout(node, true, Duration::from_secs(20)).await;
    }
    // Every node subscribed its channels on the restarted master again.
    await_subscriptions(port, subscriptions, Duration::from_secs(5)).await;
    let outcomes = run.await.unwrap();
    assert_no_problems(check(&fleet, &traffic, &members, &outcomes).await);
    assert_no_reconnects(&members, &outcomes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopped_briefly() {
    let mut db = tokio::task::spawn_blocking(Postgres::start).await.unwrap();
    let database = db.fresh_database();
    let redis = tokio::task::spawn_blocking(Redis::start).await.unwrap();
    let fleet = Fleet::start(2, &database, &[redis.url()]);
    let names = ["ann", "ben", "cat", "dan"];
    let tokens = sign_up(&fleet, &names).await;
    let api = fleet.node(0).api();
    let room = api.create_room(&tokens[0], "lobby").await;
    // ann (node 0, WebTransport) and ben (node 1, WebSocket).
    let dm = api.befriend(&tokens[0], &tokens[1], "ann", "ben").await;
    let members: Vec<Member> = (0..names.len())
        .map(|i| {
            let mut conversations = vec![(room, 40)];
            if i < 2 {
                conversations.push((dm, 40));
            }
            member(i, &names, &tokens, 2, conversations)
        })
        .collect();
    let traffic = traffic_of(&fleet, &members, 40);
    let run = tokio::spawn(run_all(members.clone(), traffic.clone()));
    traffic
        .await_acked(traffic.total() / 4, Duration::from_secs(30))
        .await;
    db = tokio::task::spawn_blocking(move || {
        db.shut_down();
        db
    })
    .await
    .unwrap();
    // Sends while it is gone end their streams with a retryable error (never an ack).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while traffic.refused.load(Ordering::Relaxed) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no send was refused within 30 s of PostgreSQL stopping"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Down for a few seconds: clients rejoin and resend many times meanwhile.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let _db = tokio::task::spawn_blocking(move || {
        db.start_again();
        db
    })
    .await
    .unwrap();
    let outcomes = run.await.unwrap();
    assert_no_problems(check(&fleet, &traffic, &members, &outcomes).await);
}
