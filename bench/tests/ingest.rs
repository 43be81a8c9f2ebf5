//! `quibble-bench ingest` end to end, against the real server binary over both transports:
//! what it reports must agree with what the server itself counts. Every send is acknowledged
//! (each ack only after the store's fsynced commit), the store's `/metrics` counters read by the
//! test before and after the run account for exactly the acknowledged messages, and the
//! window's commit figures the bench reports fit inside those totals and with each other.

mod support;

use std::time::Duration;

use serde_json::Value;

use support::{TestServer, counter, json_report, metrics, run_bench};

const LIMIT: Duration = Duration::from_secs(120);
const SENDERS: u64 = 4;
const IN_FLIGHT: u64 = 8;

/// The server's store counters: (commits, messages committed).
fn store_counters(server: &TestServer) -> (u64, u64) {
    let metrics = metrics(server);
    (
        counter(&metrics, "quibble_store_commits_total"),
        counter(&metrics, "quibble_store_committed_messages_total"),
    )
}

fn number(value: &Value) -> f64 {
    value.as_f64().unwrap_or(f64::NAN)
}

#[test]
fn acks_and_commit_counters_agree_with_the_servers_own_counts() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = TestServer::start_with_config(
        dir.path(),
        "messages_per_second = 100000\nmessage_burst = 100000\n",
    );
    let url = server.url();
    let pid = server.pid().to_string();
    let (commits_before, messages_before) = store_counters(&server);
    let output = run_bench(
        &[
            "ingest",
            "--server",
            &url,
            "--transport",
            "both",
            "--senders",
            &SENDERS.to_string(),
            "--in-flight",
            &IN_FLIGHT.to_string(),
            "--warmup",
            "1",
            "--duration",
            "2",
            "--server-pid",
            &pid,
            "--timeout",
            "90",
            "--json",
        ],
        LIMIT,
    );
    let report = json_report(&output, Some(&server));
    assert_eq!(report["ok"], true, "{report:#}");
    let (commits_after, messages_after) = store_counters(&server);

    let runs = report["runs"].as_array().expect("runs");
    let transports: Vec<&str> = runs
        .iter()
        .filter_map(|r| r["transport"].as_str())
        .collect();
    assert_eq!(transports, ["webtransport", "websocket"], "{report:#}");
    let (mut acked_total, mut window_commits, mut window_messages) = (0u64, 0u64, 0u64);
    for run in runs {
        let count = |field: &str| run[field].as_u64().unwrap_or(u64::MAX);
        let (sent, acked) = (count("sent"), count("acked"));
        assert!(acked > 0, "{run:#}");
        assert_eq!(sent, acked, "every send acknowledged once: {run:#}");
        assert_eq!(
            (count("rejected"), count("unanswered"), count("errors")),
            (0, 0, 0),
            "{run:#}"
        );
        acked_total += acked;

        // The acks inside the window, and the store's commits over it.
        let window_s = number(&run["window_s"]);
        assert!((window_s - 2.0).abs() < 1e-9, "{run:#}");
        let window_acks = (number(&run["acked_per_s"]) * window_s).round() as u64;
        assert!(window_acks > 0 && window_acks <= acked, "{run:#}");
        let store = &run["store"];
        assert!(store["error"].is_null(), "{run:#}");
        let commits = store["commits"].as_u64().expect("commits");
        let messages = store["messages"].as_u64().expect("messages");
        assert!(commits >= 1 && commits <= messages, "{run:#}");
        // A message committed just before the window opened is acknowledged inside it, and
        // one committed just before it closed is acknowledged after: at most what the
        // senders had in flight at each end.
        let slack = 2 * SENDERS * IN_FLIGHT;
        assert!(
            messages.abs_diff(window_acks) <= slack,
            "{messages} messages committed in the window against {window_acks} acks in it: \
             {run:#}"
        );
        let per_commit = number(&store["messages_per_commit"]);
        assert!(
            (per_commit - messages as f64 / commits as f64).abs() < 1e-6,
            "{run:#}"
        );
        let commits_per_s = number(&store["commits_per_s"]);
        assert!(
            (commits_per_s * window_s - commits as f64).abs() <= 0.2 * commits as f64 + 1.0,
            "{run:#}"
        );
        window_commits += commits;
        window_messages += messages;
        // The server's CPU over the window, per ack.
        assert!(number(&run["server"]["cpu_us_per_ack"]) > 0.0, "{run:#}");
    }
    // The server committed exactly the acknowledged messages, and the windows' figures fit
    // in its totals.
    assert_eq!(
        messages_after - messages_before,
        acked_total,
        "the store committed exactly the acknowledged messages: {report:#}"
    );
    assert!(window_messages <= messages_after - messages_before);
    assert!(window_commits <= commits_after - commits_before);
}
