//! The `chat` scenarios against the real server binary: late joiners (who join halfway through
//! a `--duration` run, after more messages than a fresh join's recent page, and must still get
//! every one: replay plus live) with the latency plot of both transports; and the hot room
//! (every bot in one room).

mod support;

use std::time::Duration;

use serde_json::Value;

use support::{TestServer, json_report, run_bench};

const LIMIT: Duration = Duration::from_secs(150);

/// Run the bench and parse its JSON report, failing with everything it said if it failed.
fn chat(server: &TestServer, args: &[&str]) -> Value {
    let url = server.url();
    let mut all = vec!["chat", "--server", &url, "--timeout", "120", "--json"];
    all.extend_from_slice(args);
    let output = run_bench(&all, LIMIT);
    json_report(&output, Some(server))
}

fn count(value: &Value) -> u64 {
    value.as_u64().unwrap_or(u64::MAX)
}

#[test]
fn late_joiners_receive_every_message_and_the_plot_has_a_line_per_transport() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = TestServer::start(dir.path());
    let plot = dir.path().join("fanout.svg");
    // One room of 5, one of whom joins late, 1.5 s into 3 s of 4 senders at 20/s: about 120
    // messages are in the room before it joins (a fresh join replays only the last 50).
    let report = chat(
        &server,
        &[
            "--scenario",
            "late-joiners",
            "--late-fraction",
            "0.2",
            "--rooms",
            "1",
            "--users-per-room",
            "5",
            "--duration",
            "3",
            "--rate",
            "20",
            "--plot",
            plot.to_str().expect("a UTF-8 temp path"),
        ],
    );
    assert_eq!(report["ok"], true, "{report:#}");
    let scenario = &report["scenario"];
    assert_eq!(scenario["kind"], "late-joiners", "{report:#}");
    assert_eq!(
        (
            count(&scenario["late_per_room"]),
            count(&scenario["messages"])
        ),
        (1, 60),
        "{report:#}"
    );
    let runs = report["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 2, "{report:#}");
    for run in runs {
        let stats = &run["stats"];
        // 4 senders x 60 messages, each owed to all 5 members, the late one included.
        assert_eq!(count(&stats["sent"]), 240, "{run:#}");
        assert_eq!(
            (count(&stats["expected"]), count(&stats["delivered"])),
            (1_200, 1_200),
            "{run:#}"
        );
        assert_eq!(count(&stats["lost"]), 0, "{run:#}");
        let latency = &stats["latency_us"];
        assert_eq!(count(&latency["connect_join"]["count"]), 4, "{run:#}");
        assert_eq!(count(&latency["late_connect_join"]["count"]), 1, "{run:#}");
        // Fan-out to the 3 other on-time members only.
        assert_eq!(count(&latency["fanout"]["count"]), 720, "{run:#}");
    }

    let svg = std::fs::read_to_string(&plot).expect("the plot was written");
    let doc = roxmltree::Document::parse(&svg).expect("the plot is well-formed XML");
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    let lines: Vec<_> = doc
        .descendants()
        .filter(|n| n.tag_name().name() == "path" && n.attribute("class") == Some("series"))
        .collect();
    let labels: Vec<&str> = lines
        .iter()
        .filter_map(|n| n.attribute("data-label"))
        .collect();
    assert_eq!(labels, ["webtransport", "websocket"]);
    for line in lines {
        let d = line.attribute("d").expect("a path");
        let points: Vec<(f64, f64)> = d
            .trim_start_matches('M')
            .split(" L")
            .map(|point| {
                let (x, y) = point.split_once(',').expect("x,y");
                (x.parse().expect("x"), y.parse().expect("y"))
            })
            .collect();
        assert!(points.len() > 50, "{d}");
        // Left to right, and never down (SVG's y grows downwards).
        assert!(
            points
                .windows(2)
                .all(|w| w[0].0 < w[1].0 && w[0].1 >= w[1].1),
            "{d}"
        );
        assert!(points[0].1 > points[points.len() - 1].1, "a flat line: {d}");
    }
    let text: String = doc
        .descendants()
        .filter(|n| n.is_text())
        .filter_map(|n| n.text())
        .collect::<Vec<_>>()
        .join(" ");
    for label in [
        "percentile (%)",
        "latency (ms)",
        "99.9",
        "webtransport (p50",
    ] {
        assert!(text.contains(label), "no {label:?} in the plot: {text}");
    }
}

#[test]
fn the_hot_room_puts_every_bot_in_one_room() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = TestServer::start(dir.path());
    let report = chat(
        &server,
        &[
            "--scenario",
            "hot-room",
            "--transport",
            "websocket",
            "--rooms",
            "3",
            "--users-per-room",
            "2",
            "--messages",
            "5",
        ],
    );
    assert_eq!(report["ok"], true, "{report:#}");
    let scenario = &report["scenario"];
    assert_eq!(
        (
            count(&scenario["rooms"]),
            count(&scenario["users_per_room"])
        ),
        (1, 6),
        "{report:#}"
    );
    let stats = &report["runs"][0]["stats"];
    // 6 bots x 5 messages, each to all 6 members of the one room.
    assert_eq!(
        (count(&stats["sent"]), count(&stats["delivered"])),
        (30, 180),
        "{report:#}"
    );
    assert_eq!(
        count(&stats["latency_us"]["fanout"]["count"]),
        150,
        "{report:#}"
    );
}
