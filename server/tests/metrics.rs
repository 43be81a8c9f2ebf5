//! `/metrics` and `/readyz` of a real server: a fresh server lists every series an operator
//! needs, each at zero; a chat over both transports moves them; `/readyz` is 200 once the
//! server says it listens and 503 while it drains after SIGTERM.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use support::{RawPeer, TestServer};
use tokio::io::AsyncWriteExt;

/// Every series a scrape of a fresh server must list, each with its `# HELP` line.
const REQUIRED: &[&str] = &[
    "quibble_connections_total",
    "quibble_connections_open",
    "quibble_connections_refused_total",
    "quibble_handshakes_total",
    "quibble_connection_errors_total",
    "quibble_stream_errors_total",
    "quibble_streams_lagged_total",
    "quibble_slow_consumers_total",
    "quibble_outbound_queued_bytes",
    "quibble_hub_conversations",
    "quibble_users_online",
    "quibble_messages_in_total",
    "quibble_messages_out_total",
    "quibble_fanout_seconds",
    "quibble_messages_appended_total",
    "quibble_append_seconds",
    "quibble_store_commits_total",
    "quibble_store_committed_requests_total",
    "quibble_store_committed_messages_total",
    "quibble_store_commit_seconds",
    "quibble_store_commit_batch_requests",
    "quibble_store_scrubs_total",
    "quibble_store_scrub_seconds",
    "quibble_password_hashes_total",
    "quibble_sends_congested_total",
    "quibble_messages_retained_away_total",
    "quibble_fleet_published_total",
    "quibble_fleet_gaps_total",
    "quibble_fleet_backfilled_total",
    "quibble_fleet_inbox_full_total",
    "quibble_fleet_unreadable_total",
    "quibble_fleet_subscribed_total",
];

/// Label sets that must be there from the start, as `name{labels}` prefixes.
const REQUIRED_LABELS: &[&str] = &[
    r#"quibble_connections_total{transport="webtransport"}"#,
    r#"quibble_connections_total{transport="websocket"}"#,
    r#"quibble_connections_refused_total{transport="websocket",reason="server_full"}"#,
    r#"quibble_handshakes_total{transport="https",outcome="tls_failed"}"#,
    r#"quibble_handshakes_total{transport="webtransport",outcome="unauthorized"}"#,
    r#"quibble_handshakes_total{transport="websocket",outcome="ok"}"#,
    r#"quibble_connection_errors_total{code="slow_consumer"}"#,
    r#"quibble_connection_errors_total{code="banned"}"#,
    r#"quibble_stream_errors_total{code="bad_frame"}"#,
];

/// A scrape: each sample line's `name{labels}` → value.
struct Scrape {
    text: String,
    samples: HashMap<String, f64>,
}

impl Scrape {
    async fn of(server: &TestServer) -> Scrape {
        let text = reqwest::get(format!("{}/metrics", server.http()))
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics body");
        let samples = text
            .lines()
            .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
            .filter_map(|line| {
                let (series, value) = line.rsplit_once(' ')?;
                Some((series.to_owned(), value.parse().ok()?))
            })
            .collect();
        Scrape { text, samples }
    }

    /// The samples of metric `name` (a histogram's buckets, sum and count included).
    fn of_metric<'a>(&'a self, name: &'a str) -> impl Iterator<Item = (&'a String, f64)> + 'a {
        self.samples
            .iter()
            .map(|(k, v)| (k, *v))
            .filter(move |(series, _)| {
                let base = series.split('{').next().unwrap_or_default();
                base == name
                    || base
                        .strip_prefix(name)
                        .is_some_and(|rest| ["_bucket", "_sum", "_count"].contains(&rest))
            })
    }

    /// The sum of `series`'s samples whose `name{labels}` starts with `prefix`.
    fn sum(&self, prefix: &str) -> f64 {
        self.samples
            .iter()
            .filter(|(series, _)| {
                series.as_str() == prefix
                    || series.starts_with(&format!("{prefix}{{"))
                    || (prefix.ends_with('}') && series.starts_with(prefix.trim_end_matches('}')))
            })
            .map(|(_, v)| v)
            .sum()
    }
}

#[tokio::test]
async fn a_fresh_server_lists_every_series_at_zero() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data"));
    let scrape = Scrape::of(&server).await;
    for name in REQUIRED {
        assert!(
            scrape.text.contains(&format!("# HELP {name} ")),
            "no HELP for {name}:\n{}",
            scrape.text
        );
        let samples: Vec<_> = scrape.of_metric(name).collect();
        assert!(!samples.is_empty(), "{name} not listed:\n{}", scrape.text);
        for (series, value) in samples {
            assert_eq!(value, 0.0, "{series} is not 0 on a fresh server");
        }
    }
    for series in REQUIRED_LABELS {
        assert!(
            scrape.samples.contains_key(*series),
            "{series} not listed:\n{}",
            scrape.text
        );
    }
    // Histograms have buckets fit for what they measure.
    assert!(
        scrape
            .samples
            .contains_key(r#"quibble_fanout_seconds_bucket{le="0.00005"}"#),
        "{}",
        scrape.text
    );
    assert!(
        scrape
            .samples
            .contains_key(r#"quibble_store_commit_batch_requests_bucket{le="64"}"#),
        "{}",
        scrape.text
    );
}

#[tokio::test]
async fn a_chat_over_both_transports_moves_the_series() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data"));
    let api = server.api();
    let alice = api.signup("alice").await;
    let bob = api.signup("bob").await;
    let room = api.create_room(&alice, "lobby").await;
    api.join_room(&bob, room).await;
    let mut wt = RawPeer::webtransport(&server).await;
    wt.hello(&alice).await;
    wt.join(1, room, None).await;
    let mut ws = RawPeer::websocket(&server).await;
    ws.hello(&bob).await;
    ws.join(1, room, None).await;
    wt.say(1, 1, "over webtransport").await;
    assert_eq!(ws.next_message(1).await.body, "over webtransport");
    ws.say(1, 1, "over websocket").await;
    // Its own message comes back to the sender first.
    assert_eq!(wt.next_message(1).await.body, "over webtransport");
    assert_eq!(wt.next_message(1).await.body, "over websocket");

    let scrape = Scrape::of(&server).await;
    let at_least = |series: &str, least: f64| {
        let value = scrape.sum(series);
        assert!(value >= least, "{series} = {value}, expected ≥ {least}");
    };
    at_least(
        r#"quibble_connections_total{transport="webtransport"}"#,
        1.0,
    );
    at_least(r#"quibble_connections_total{transport="websocket"}"#, 1.0);
    at_least(r#"quibble_connections_open{transport="webtransport"}"#, 1.0);
    at_least(r#"quibble_connections_open{transport="websocket"}"#, 1.0);
    at_least(
        r#"quibble_handshakes_total{transport="webtransport",outcome="ok"}"#,
        1.0,
    );
    at_least(
        r#"quibble_handshakes_total{transport="websocket",outcome="ok"}"#,
        1.0,
    );
    at_least("quibble_messages_in_total", 2.0);
    // Each message went live to both members.
    at_least("quibble_messages_out_total", 4.0);
    at_least("quibble_fanout_seconds_count", 2.0);
    at_least("quibble_append_seconds_count", 2.0);
    at_least("quibble_store_commit_seconds_count", 2.0);
    at_least("quibble_store_commit_batch_requests_count", 2.0);
    at_least("quibble_store_commit_batch_requests_sum", 2.0);
    at_least("quibble_users_online", 2.0);
}

/// `GET /readyz` on a new connection: its status and body, or `None` if no answer came.
async fn readyz(port: u16) -> Option<(u16, serde_json::Value)> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .pool_max_idle_per_host(0)
        .build()
        .ok()?;
    let response = client
        .get(format!("http://127.0.0.1:{port}/readyz"))
        .send()
        .await
        .ok()?;
    let status = response.status().as_u16();
    Some((status, response.json().await.ok()?))
}

#[tokio::test]
async fn readyz_is_200_once_listening_and_503_while_draining() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data"));
    let (status, body) = readyz(server.port).await.expect("an answer");
    assert_eq!((status, body["status"].as_str()), (200, Some("ready")));

    // A request half sent holds the drain open (its connection may finish it, for a few
    // seconds).
    let mut held = tokio::net::TcpStream::connect(("127.0.0.1", server.port))
        .await
        .expect("connect");
    held.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write half a request");
    // Served before the signal: the connection has its slot.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let port = server.port;
    let pid = server.pid().to_string();
    let sigterm = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill -TERM");
    assert!(sigterm.success());
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        let answer = readyz(port).await;
        if let Some((503, body)) = &answer {
            assert_eq!(body["status"], "draining");
            break;
        }
        seen.push(answer);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        Instant::now() < deadline,
        "no 503 while draining within 5 s: {seen:?}"
    );
    drop(held);
    assert!(server.stop().success(), "clean exit");
}
