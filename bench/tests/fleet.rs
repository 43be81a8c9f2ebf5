//! `quibble-bench chat` against a fleet: two real `quibble` nodes on one PostgreSQL and one
//! Redis, both named with `--server`. The bots go round the nodes (each node's own `/metrics`
//! counts its half of the connections and of the messages), every room has members on both,
//! every message still reaches every member exactly once, and the server cost is read from
//! both processes.

mod support;

use std::time::Duration;

use quibble_test_support::postgres::Postgres;
use quibble_test_support::redis::Redis;
use support::{TestServer, counter, json_report, metrics, run_bench};

const LIMIT: Duration = Duration::from_secs(120);

#[test]
fn bots_spread_over_two_nodes_get_every_message_once() {
    let database = Postgres::shared().fresh_database();
    let redis = Redis::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let config = format!("postgres = \"{database}\"\nredis = \"{}\"\n", redis.url());
    let node = |name: &str| {
        let dir = dir.path().join(name);
        std::fs::create_dir_all(&dir).expect("the node's dir");
        TestServer::start_with_config(&dir, &config)
    };
    let (a, b) = (node("a"), node("b"));
    let servers = format!("{},{}", a.url(), b.url());
    let pids = format!("{},{}", a.pid(), b.pid());
    // 2 rooms of 3: bots 0..6 on nodes a b a | b a b, so each room has members on both.
    let output = run_bench(
        &[
            "chat",
            "--server",
            &servers,
            "--server-pid",
            &pids,
            "--transport",
            "websocket",
            "--rooms",
            "2",
            "--users-per-room",
            "3",
            "--messages",
            "10",
            "--rate",
            "40",
            "--timeout",
            "90",
            "--json",
        ],
        LIMIT,
    );
    let report = json_report(&output, Some(&a));
    assert_eq!(report["ok"], true, "{report:#}");
    assert_eq!(report["scenario"]["nodes"], 2, "{report:#}");
    let stats = &report["runs"][0]["stats"];
    // 6 users x 10 messages, each to the 3 members of its room.
    assert_eq!(stats["delivered"], 180, "{stats:#}");
    assert_eq!(stats["expected"], 180, "{stats:#}");
    for figure in ["lost", "duplicated", "out_of_order", "unexpected", "errors"] {
        assert_eq!(stats[figure], 0, "{figure}: {stats:#}");
    }
    assert_eq!(
        stats["server"]["pids"],
        serde_json::json!([a.pid(), b.pid()]),
        "{stats:#}"
    );
    assert!(stats["server"]["cpu_us"].as_u64().is_some(), "{stats:#}");

    for server in [&a, &b] {
        let metrics = metrics(server);
        let count = |name| counter(&metrics, name);
        assert_eq!(
            count("quibble_connections_total{transport=\"websocket\"}"),
            3,
            "each node holds half of the bots:\n{metrics}"
        );
        assert_eq!(
            count("quibble_messages_appended_total"),
            30,
            "each node took its own bots' messages:\n{metrics}"
        );
    }
}
