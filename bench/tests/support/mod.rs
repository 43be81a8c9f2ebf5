//! Test support: the real `quibble` server binary on an ephemeral loopback port with a temp
//! data dir (killed through its own `Child` handle when the guard drops, also on panic), and
//! running the bench binary with a time limit.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long a server may take to print its address.
const STARTUP: Duration = Duration::from_secs(30);

/// The server binary: `<target dir>/debug/quibble`, next to this test's `deps/` directory.
pub fn server_binary() -> PathBuf {
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

/// A running `quibble serve`, killed when dropped.
pub struct TestServer {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl TestServer {
    /// Start a server with its data and log in `dir`, on a free port.
    pub fn start(dir: &Path) -> TestServer {
        let log = dir.join("server.log");
        let log_file = std::fs::File::create(&log).expect("create the server log");
        let mut child = Command::new(server_binary())
            .arg("serve")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(dir.join("data"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file))
            .spawn()
            .expect("start the quibble server");
        let stdout = child.stdout.take().expect("server stdout");
        // The first line has the address; the rest must keep being drained so that the
        // server never blocks on a full pipe.
        let (first_tx, first_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let _ = first_tx.send(lines.next());
            for _ in lines {}
        });
        let mut server = TestServer {
            child,
            port: 0,
            log,
        };
        let first = match first_rx.recv_timeout(STARTUP) {
            Ok(Some(Ok(line))) => line,
            other => panic!(
                "the server printed no address ({other:?}); its log:\n{}",
                server.log_text()
            ),
        };
        server.port = parse_listening_line(&first)
            .unwrap_or_else(|| panic!("unexpected first line from the server: {first:?}"));
        server
    }

    /// The HTTP base URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The port from `quibble listening on http://127.0.0.1:PORT/`.
fn parse_listening_line(line: &str) -> Option<u16> {
    let url = line.strip_prefix("quibble listening on ")?;
    url.trim()
        .trim_end_matches('/')
        .rsplit(':')
        .next()?
        .parse()
        .ok()
}

/// Run the bench binary with `args`, killing it (and failing the test) after `limit`.
pub fn run_bench(args: &[&str], limit: Duration) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_quibble-bench"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start quibble-bench");
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("poll quibble-bench") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "quibble-bench did not finish within {limit:?}; stdout: {}; stderr: {}",
                String::from_utf8_lossy(&collect(stdout)),
                String::from_utf8_lossy(&collect(stderr))
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: collect(stdout),
        stderr: collect(stderr),
    }
}

type Drained = Option<std::thread::JoinHandle<Vec<u8>>>;

fn drain(pipe: Option<impl Read + Send + 'static>) -> Drained {
    pipe.map(|mut pipe| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    })
}

fn collect(drained: Drained) -> Vec<u8> {
    drained
        .and_then(|handle| handle.join().ok())
        .unwrap_or_default()
}
