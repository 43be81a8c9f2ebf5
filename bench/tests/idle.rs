//! `quibble-bench idle` against the real server binary: a handful of idle connections over
//! each transport are opened, joined, held and closed, and the JSON report says so, with the
//! server's memory readings present and sane.

mod support;

use std::time::Duration;

use support::{TestServer, json_report, run_bench};

const LIMIT: Duration = Duration::from_secs(120);
/// Enough that handshakes run concurrently (the bench opens 8 at a time): a QUIC setting once
/// made some of them fail.
const CONNECTIONS: u64 = 32;

#[test]
fn idle_connections_are_opened_held_and_measured_on_each_transport() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = TestServer::start(dir.path());
    let url = server.url();
    let pid = server.pid().to_string();
    let connections = CONNECTIONS.to_string();
    for transport in ["websocket", "webtransport"] {
        let output = run_bench(
            &[
                "idle",
                "--server",
                &url,
                "--transport",
                transport,
                "--connections",
                &connections,
                "--users",
                "2",
                "--server-pid",
                &pid,
                "--hold",
                "1",
                "--timeout",
                "90",
                "--json",
            ],
            LIMIT,
        );
        let report = json_report(&output, Some(&server));
        assert_eq!(report["ok"], true, "{report:#}");
        assert_eq!(report["transport"], transport, "{report:#}");
        for (figure, expected) in [
            ("connections", CONNECTIONS),
            ("opened", CONNECTIONS),
            ("alive", CONNECTIONS),
            ("disconnects", 0),
        ] {
            assert_eq!(
                report[figure].as_u64(),
                Some(expected),
                "{figure}: {report:#}"
            );
        }
        let memory = &report["memory"];
        for reading in ["before_kib", "joined_kib", "held_kib", "closed_kib"] {
            let kib = memory[reading].as_u64().unwrap_or(0);
            // A running server holds at least a few MiB and, here, far less than 4 GiB.
            assert!(
                (1024..4 * 1024 * 1024).contains(&kib),
                "{reading}: {report:#}"
            );
        }
        // The ramp: every connection's connect+join timed, a setup rate, and the WebTransport
        // sessions on one shared UDP socket (1,000 sessions a socket).
        assert_eq!(
            report["connect_join_us"]["count"].as_u64(),
            Some(CONNECTIONS),
            "{report:#}"
        );
        assert!(
            report["connect_join_us"]["p50"].as_u64().unwrap_or(0) > 0,
            "{report:#}"
        );
        assert!(
            report["handshakes_per_s"].as_f64().unwrap_or(0.0) > 0.0,
            "{report:#}"
        );
        let ramp = report["ramp"].as_array().expect("the ramp");
        let reached: Vec<u64> = ramp
            .iter()
            .filter_map(|s| s["connections"].as_u64())
            .collect();
        assert_eq!(reached, [8, 16, 24, 32], "{report:#}");
        assert!(
            ramp.iter().all(|s| s["connect_join_us"]["count"] == 8
                && s["handshakes_per_s"].as_f64() > Some(0.0)),
            "{report:#}"
        );
        let sockets = if transport == "webtransport" { 1 } else { 0 };
        assert_eq!(report["udp_sockets"].as_u64(), Some(sockets), "{report:#}");
        let per = &report["per_connection"];
        assert!(per["joined_bytes"].is_u64(), "{report:#}");
        assert!(per["held_bytes"].is_u64(), "{report:#}");
    }
}

#[test]
fn a_wrong_server_pid_is_a_clear_failure() {
    let output = run_bench(
        &[
            "idle",
            "--server",
            "http://127.0.0.1:1",
            "--transport",
            "websocket",
            "--connections",
            "1",
            "--server-pid",
            "4294967295",
        ],
        LIMIT,
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "stderr: {stderr}");
    assert!(stderr.contains("/proc/4294967295/status"), "{stderr}");
}
