//! `quibble-bench chat` against the real server binary: a small scenario over both transports
//! must deliver every message to every member exactly once and say so in its JSON; with
//! `--server-pid` it also reports what the server spent per delivery.

mod support;

use std::time::Duration;

use support::{TestServer, json_report, run_bench};

const LIMIT: Duration = Duration::from_secs(150);

#[test]
fn both_transports_deliver_every_message_exactly_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = TestServer::start(dir.path());
    let url = server.url();
    let output = run_bench(
        &[
            "chat",
            "--server",
            &url,
            "--transport",
            "both",
            "--rooms",
            "2",
            "--users-per-room",
            "3",
            "--messages",
            "10",
            "--warmup",
            "2",
            "--rate",
            "40",
            "--timeout",
            "120",
            "--json",
        ],
        LIMIT,
    );
    let report = json_report(&output, Some(&server));
    assert_eq!(report["ok"], true, "{report:#}");
    assert!(
        report["command"]
            .as_str()
            .is_some_and(|c| c.contains("--transport both"))
    );

    let runs = report["runs"].as_array().expect("runs");
    let names: Vec<&str> = runs
        .iter()
        .filter_map(|r| r["transport"].as_str())
        .collect();
    assert_eq!(names, ["webtransport", "websocket"]);
    // 2 rooms x 3 users, 12 messages each (2 of them warmup): 72 sends; each reaches the 3
    // members of its room; 60 are measured, and each measured one reaches 2 other members.
    for run in runs {
        assert_eq!(run["status"], "complete", "{run:#}");
        let stats = &run["stats"];
        let count = |name: &str| stats[name].as_u64().unwrap_or(u64::MAX);
        assert_eq!((count("sent"), count("acked")), (72, 72), "{run:#}");
        assert_eq!(
            (count("expected"), count("delivered")),
            (216, 216),
            "{run:#}"
        );
        for zero in [
            "lost",
            "duplicated",
            "unexpected",
            "rejected",
            "unanswered",
            "errors",
        ] {
            assert_eq!(count(zero), 0, "{zero} in {run:#}");
        }
        let latency = &stats["latency_us"];
        for (figure, samples) in [("ack", 60), ("fanout", 120), ("connect_join", 6)] {
            let summary = &latency[figure];
            assert_eq!(summary["count"], samples, "{figure} in {run:#}");
            let p50 = summary["p50"].as_u64().unwrap_or(0);
            let max = summary["max"].as_u64().unwrap_or(0);
            assert!(p50 > 0 && max >= p50, "{figure} in {run:#}");
        }
        assert!(stats["throughput"]["acked_per_s"].as_f64().unwrap_or(0.0) > 0.0);
        assert!(
            stats["throughput"]["delivered_per_s"]
                .as_f64()
                .unwrap_or(0.0)
                > 0.0
        );
        // No --server-pid: no server cost.
        assert!(stats["server"].is_null(), "{run:#}");
    }
    assert!(report["webtransport_over_websocket"]["server_cpu_us_per_delivery"].is_null());
    let ratios = &report["webtransport_over_websocket"];
    assert!(
        ratios["ack"]["p50"].as_f64().is_some_and(|r| r > 0.0),
        "{report:#}"
    );
}

#[test]
fn with_the_server_pid_each_transport_reports_the_server_cost() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = TestServer::start(dir.path());
    let url = server.url();
    let pid = server.pid().to_string();
    let output = run_bench(
        &[
            "chat",
            "--server",
            &url,
            "--server-pid",
            &pid,
            "--rooms",
            "1",
            "--users-per-room",
            "4",
            "--messages",
            "20",
            "--warmup",
            "2",
            "--rate",
            "40",
            "--timeout",
            "120",
            "--json",
        ],
        LIMIT,
    );
    let report = json_report(&output, None);
    let runs = report["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 2, "{report:#}");
    for run in runs {
        let stats = &run["stats"];
        // 4 users x 20 measured messages, each delivered to the 4 members.
        assert_eq!(stats["throughput"]["measured_acks"], 80, "{run:#}");
        assert_eq!(stats["throughput"]["measured_deliveries"], 320, "{run:#}");
        let cost = &stats["server"];
        assert_eq!(cost["pid"], server.pid(), "{run:#}");
        assert!(cost["error"].is_null(), "{run:#}");
        let figure = |name: &str| cost[name].as_f64().unwrap_or(f64::NAN);
        let cpu = figure("cpu_us");
        let per_delivery = figure("cpu_us_per_delivery");
        // Sending and fanning out 80 messages costs the server some CPU, and far less than a
        // second per delivery; the figures agree with each other.
        assert!(cpu > 0.0, "{run:#}");
        assert!(per_delivery > 0.0 && per_delivery < 1e6, "{run:#}");
        assert!((per_delivery * 320.0 - cpu).abs() < 1.0, "{run:#}");
        assert!(
            (figure("cpu_us_per_ack") * 80.0 - cpu).abs() < 1.0,
            "{run:#}"
        );
        // 20 messages at 40/s: a window of about half a second or more.
        assert!(figure("window_s") >= 0.3, "{run:#}");
        let percent = figure("cpu_percent_of_core");
        assert!(percent > 0.0 && percent <= 250.0, "{run:#}");
        let rss = figure("rss_end_kib");
        assert!(rss > 1_000.0, "{run:#}");
        assert_eq!(
            figure("rss_per_connection_bytes"),
            (rss * 1024.0 / 4.0).floor(),
            "{run:#}"
        );
    }
    let ratio = report["webtransport_over_websocket"]["server_cpu_us_per_delivery"]
        .as_f64()
        .unwrap_or(0.0);
    assert!(ratio > 0.0, "{report:#}");
}

#[test]
fn a_server_pid_that_does_not_exist_is_a_clear_failure() {
    let output = run_bench(
        &[
            "chat",
            "--server",
            "http://127.0.0.1:1",
            "--server-pid",
            "4294967295",
            "--timeout",
            "20",
        ],
        LIMIT,
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "stderr: {stderr}");
    assert!(
        stderr.contains("cannot read /proc/4294967295/status (is the server's pid right?)"),
        "{stderr}"
    );
}

#[test]
fn an_unreachable_server_is_a_clear_failure() {
    // Nothing listens on port 1 of the loopback address.
    let output = run_bench(
        &["chat", "--server", "http://127.0.0.1:1", "--timeout", "20"],
        LIMIT,
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "stderr: {stderr}");
    assert!(
        stderr.contains("cannot reach the server at http://127.0.0.1:1"),
        "{stderr}"
    );
}
