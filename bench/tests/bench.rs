//! End to end: the real `quibble` server binary on an ephemeral loopback port with a temp data
//! dir, and the real `quibble-bench` binary chatting against it over both transports.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long the server may take to print its address.
const STARTUP: Duration = Duration::from_secs(30);
/// How long the bench may take.
const BENCH_LIMIT: Duration = Duration::from_secs(180);

/// The server binary: `<target dir>/debug/quibble`, next to this test's `deps/` directory.
fn server_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("path of the test executable");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test executable lives in <target>/<profile>/deps");
    let binary = profile_dir.join(format!("quibble{}", std::env::consts::EXE_SUFFIX));
    assert!(
        binary.is_file(),
        "the server binary {} is missing: build it with `cargo build -p quibble-server` \
         (`cargo test --workspace` builds it too)",
        binary.display()
    );
    binary
}

/// A running `quibble serve`, killed when dropped (also when a test panics).
struct Server {
    child: Child,
    url: String,
    log: PathBuf,
}

impl Server {
    fn start(dir: &Path) -> Server {
        let log = dir.join("server.log");
        let log_file = std::fs::File::create(&log).expect("create the server log");
        let mut child = Command::new(server_binary())
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.join("data"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file))
            .spawn()
            .expect("start the quibble server");
        let stdout = child.stdout.take().expect("server stdout");
        let (first_tx, first_rx) = mpsc::channel();
        // The first line has the address; the rest is drained so the server never blocks.
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let _ = first_tx.send(lines.next());
            for _ in lines {}
        });
        let mut server = Server {
            child,
            url: String::new(),
            log,
        };
        let first = match first_rx.recv_timeout(STARTUP) {
            Ok(Some(Ok(line))) => line,
            other => panic!(
                "the server printed no address ({other:?}); its log:\n{}",
                server.log_text()
            ),
        };
        server.url = first
            .strip_prefix("quibble listening on ")
            .map(|url| url.trim().trim_end_matches('/').to_owned())
            .unwrap_or_else(|| panic!("unexpected first line from the server: {first:?}"));
        server
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run `command` with piped output, killing it (and failing) after `limit`.
fn run_with_limit(command: &mut Command, limit: Duration) -> Output {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start quibble-bench");
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("poll quibble-bench") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("quibble-bench did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

fn number(value: &Value, pointer: &str) -> u64 {
    value
        .pointer(pointer)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("no number at {pointer} in {value}"))
}

#[test]
fn both_transports_deliver_every_message_exactly_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(dir.path());
    let output = run_with_limit(
        Command::new(env!("CARGO_BIN_EXE_quibble-bench")).args([
            "chat",
            "--server",
            &server.url,
            "--transport",
            "both",
            "--rooms",
            "2",
            "--users-per-room",
            "3",
            "--messages",
            "10",
            "--rate",
            "20",
            "--timeout",
            "60",
            "--json",
        ]),
        BENCH_LIMIT,
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let context = || {
        format!(
            "status {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}\nserver log:\n{}",
            output.status,
            server.log_text()
        )
    };
    let report: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("the output is not JSON ({e}): {}", context()));

    let runs = report["runs"].as_array().expect("runs");
    let transports: Vec<&str> = runs
        .iter()
        .filter_map(|r| r["transport"].as_str())
        .collect();
    assert_eq!(transports, ["webtransport", "websocket"], "{}", context());
    // 2 rooms × 3 members × 10 messages, each delivered to all 3 members of its room.
    for run in runs {
        let name = &run["transport"];
        assert_eq!(number(run, "/sent"), 60, "{name}: {}", context());
        assert_eq!(number(run, "/acked"), 60, "{name}: {}", context());
        assert_eq!(number(run, "/expected_deliveries"), 180, "{name}");
        assert_eq!(number(run, "/delivered"), 180, "{name}: {}", context());
        assert_eq!(number(run, "/lost"), 0, "{name}");
        assert_eq!(number(run, "/duplicated"), 0, "{name}");
        assert_eq!(number(run, "/rejected"), 0, "{name}");
        assert_eq!(run["errors"], serde_json::json!({}), "{name}");
        assert_eq!(number(run, "/ack_latency_us/count"), 60, "{name}");
        assert_eq!(number(run, "/fanout_latency_us/count"), 120, "{name}");
        for figure in ["ack_latency_us", "fanout_latency_us", "connect_join_us"] {
            assert!(
                number(run, &format!("/{figure}/p50_us")) > 0,
                "{name} {figure}"
            );
            assert!(
                number(run, &format!("/{figure}/max_us")) > 0,
                "{name} {figure}"
            );
        }
        assert!(run["delivered_per_s"].as_f64().is_some_and(|r| r > 0.0));
        assert_eq!(run["ok"], true, "{name}");
    }
    assert!(
        report["ratios"]["ack p50 ms"]
            .as_f64()
            .is_some_and(|r| r > 0.0),
        "{}",
        context()
    );
    assert_eq!(report["ok"], true);
    assert!(output.status.success(), "{}", context());
    assert!(
        report["command"]
            .as_str()
            .is_some_and(|c| c.contains("--transport both")),
        "{}",
        context()
    );
}

#[test]
fn an_unreachable_server_is_a_clear_failure() {
    // Port 1 on loopback: nothing listens there, so the first signup fails at once.
    let output = run_with_limit(
        Command::new(env!("CARGO_BIN_EXE_quibble-bench")).args([
            "chat",
            "--server",
            "http://127.0.0.1:1",
            "--rooms",
            "1",
            "--users-per-room",
            "1",
            "--messages",
            "1",
            "--timeout",
            "20",
        ]),
        Duration::from_secs(60),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("sign up bot bench-"), "{stderr}");
}
