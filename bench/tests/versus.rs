//! `quibble-bench versus` against the real servers: the `quibble` binary over both transports
//! and the Node peers of bench/peers/ (`ws`, Socket.IO 4). A tiny scenario must be delivered
//! completely by every server, and every column must carry its server's CPU per delivery, with
//! the ratios against `ws`. Skipped, saying so, only where `node` is missing (CI installs it
//! with bench/peers/setup).

mod support;

use std::process::Command;
use std::time::Duration;

use support::{json_report, run_bench};

const LIMIT: Duration = Duration::from_secs(150);
const PEERS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/peers");

fn node_is_installed() -> bool {
    Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success())
}

#[test]
fn every_server_delivers_everything_and_is_measured() {
    if !node_is_installed() {
        eprintln!("SKIPPED: `node` is not installed (bench/peers/setup installs it)");
        return;
    }
    assert!(
        std::path::Path::new(PEERS).join("node_modules").is_dir(),
        "bench/peers/node_modules is missing: run bench/peers/setup"
    );
    let quibble = quibble_test_support::server_binary();
    let output = run_bench(
        &[
            "versus",
            "--quibble-bin",
            quibble.to_str().expect("a UTF-8 path"),
            "--peers-dir",
            PEERS,
            "--rooms",
            "2",
            "--users-per-room",
            "3",
            "--messages",
            "20",
            "--warmup",
            "2",
            "--rate",
            "50",
            "--timeout",
            "120",
            "--json",
        ],
        LIMIT,
    );
    let report = json_report(&output, None);
    assert_eq!(report["ok"], true, "{report:#}");

    let servers = report["servers"].as_array().expect("servers");
    let names: Vec<&str> = servers
        .iter()
        .filter_map(|s| s["server"].as_str())
        .collect();
    assert_eq!(names, ["quibble-wt", "quibble-ws", "ws", "socketio"]);
    // 2 rooms x 3 users, 22 messages each (2 of them warmup): 132 sends, each to the 3
    // members of its room; 120 measured, so 360 measured deliveries.
    for server in servers {
        let run = &server["run"];
        assert_eq!(run["status"], "complete", "{server:#}");
        let stats = &run["stats"];
        let count = |name: &str| stats[name].as_u64().unwrap_or(u64::MAX);
        assert_eq!((count("sent"), count("acked")), (132, 132), "{server:#}");
        assert_eq!(
            (count("expected"), count("delivered")),
            (396, 396),
            "{server:#}"
        );
        for zero in [
            "lost",
            "duplicated",
            "out_of_order",
            "unexpected",
            "errors",
            "unanswered",
        ] {
            assert_eq!(count(zero), 0, "{zero} in {server:#}");
        }
        assert_eq!(stats["throughput"]["measured_deliveries"], 360);
        let cost = &stats["server"];
        let per_delivery = cost["cpu_us_per_delivery"].as_f64();
        assert!(
            per_delivery.is_some_and(|v| v > 0.0),
            "no server CPU figure in {server:#}"
        );
        assert!(cost["rss_end_kib"].as_u64().is_some_and(|v| v > 0));
        assert!(stats["bench"]["cpu_us"].as_u64().is_some(), "{server:#}");
        assert!(server["acks"].as_str().is_some());
    }
    // Quibble's acks are durable, the peers' are not, and the report says which.
    assert!(servers[0]["acks"].as_str().unwrap().contains("durable"));
    assert!(servers[2]["acks"].as_str().unwrap().contains("received"));

    // Every server's CPU per delivery over ws's (ws's own is 1).
    let over_ws = report["over_ws"].as_array().expect("over_ws");
    assert_eq!(over_ws.len(), 4, "{report:#}");
    for entry in over_ws {
        let r = entry["ratios"]["server_cpu_us_per_delivery"].as_f64();
        assert!(r.is_some_and(|r| r > 0.0), "{entry:#}");
    }
    assert_eq!(over_ws[2]["ratios"]["server_cpu_us_per_delivery"], 1.0);
    assert!(
        report["targets"]
            .as_array()
            .is_some_and(|t| t.len() == 4 && t.iter().all(|t| t["ratio"].is_number())),
        "{report:#}"
    );
}

#[test]
fn a_sweep_runs_every_step_on_both_quibble_transports_and_ws() {
    if !node_is_installed() {
        eprintln!("SKIPPED: `node` is not installed (bench/peers/setup installs it)");
        return;
    }
    let quibble = quibble_test_support::server_binary();
    // One room of 4, 5 then 10 messages/s per bot for 1 s each: everything owed arrives
    // before each step's deadline.
    let output = run_bench(
        &[
            "versus",
            "--sweep",
            "--only",
            "quibble-wt,quibble-ws,ws",
            "--quibble-bin",
            quibble.to_str().expect("a UTF-8 path"),
            "--peers-dir",
            PEERS,
            "--rooms",
            "1",
            "--users-per-room",
            "4",
            "--rate",
            "5",
            "--sweep-steps",
            "2",
            "--step-secs",
            "1",
            "--step-warmup-secs",
            "0",
            "--timeout",
            "120",
            "--json",
        ],
        LIMIT,
    );
    let report = json_report(&output, None);
    assert_eq!(report["ok"], true, "{report:#}");
    assert_eq!(
        report["rates"],
        serde_json::json!([5.0, 10.0]),
        "{report:#}"
    );
    let servers = report["servers"].as_array().expect("servers");
    assert_eq!(servers.len(), 3, "{report:#}");
    for server in servers {
        let steps = server["steps"].as_array().expect("steps");
        assert_eq!(steps.len(), 2, "{server:#}");
        for (step, offered) in steps.iter().zip([80.0, 160.0]) {
            // 4 bots x rate x 4 members, for 1 s.
            assert_eq!(step["offered_per_s"], offered, "{step:#}");
            assert_eq!(step["run"]["status"], "complete", "{step:#}");
            let figures = &step["run"]["stats"]["step"];
            assert_eq!(figures["cut"], false, "{step:#}");
            assert_eq!(figures["lost"], 0, "{step:#}");
            assert_eq!(figures["delivered_in_time"], offered, "{step:#}");
            assert!(
                figures["delivered_per_s"].as_f64().is_some_and(|d| d > 0.0),
                "{step:#}"
            );
            assert!(step["run"]["stats"]["server"]["cpu_percent_of_core"].is_number());
            assert!(step["run"]["stats"]["bench"]["cpu_percent_of_core"].is_number());
            // Sustained or not, the verdict says why.
            let why_not = step["why_not"].as_array().expect("why_not");
            assert_eq!(step["sustained"], why_not.is_empty(), "{step:#}");
        }
        let sustained = steps.iter().rposition(|s| s["sustained"] == true);
        assert_eq!(
            server["saturation_per_s"].is_number(),
            sustained.is_some(),
            "{server:#}"
        );
    }
    let targets = report["targets"].as_array().expect("targets");
    assert_eq!(targets.len(), 2, "{report:#}");
    assert_eq!(targets[0]["at_least"], 4.0, "{report:#}");
    assert_eq!(targets[1]["at_least"], 3.0, "{report:#}");
}
