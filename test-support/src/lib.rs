//! Test support shared by the client and bench tests: the real `quibble` server binary on an
//! ephemeral loopback port with a temp data dir (killed by its own handle when the guard drops,
//! also on panic), running child processes with a time limit, a fault-injecting proxy
//! ([`proxy`]) for chaos tests, a CA and server certificate for TLS tests ([`pki`]), and
//! throwaway PostgreSQL ([`postgres`]) and Redis ([`redis`]) servers (`scripts/setup-services`
//! installs them).

pub mod pki;
pub mod postgres;
pub mod proxy;
pub mod redis;
mod service;

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
    pub port: u16,
    pub data_dir: PathBuf,
    pub log: PathBuf,
}

impl TestServer {
    /// Makes `username` an admin, as the operator does: `quibble admin promote` (through the
    /// running server's admin socket).
    pub fn promote(&self, username: &str) {
        let run = Command::new(server_binary())
            .args(["admin", "promote", username, "--data-dir"])
            .arg(&self.data_dir)
            .output()
            .expect("run quibble admin");
        assert!(
            run.status.success(),
            "quibble admin promote {username}: {run:?}"
        );
    }

    /// Start a server with its data in `dir` on a free port.
    pub fn start(dir: &Path) -> TestServer {
        TestServer::start_on(dir, 0)
    }

    /// Start a server with its data in `dir` on `port` (0: any free port).
    pub fn start_on(dir: &Path, port: u16) -> TestServer {
        TestServer::spawn(dir, port, &[])
    }

    /// Start a server with its data in `dir` on a free port, with `extra` arguments to
    /// `quibble serve` (e.g. `--postgres URL --redis URL`).
    pub fn start_with_args(dir: &Path, extra: &[&str]) -> TestServer {
        TestServer::spawn(dir, 0, extra)
    }

    /// Start a server with its data in `dir` on a free port, with `toml` as its config file
    /// (written into `dir`).
    pub fn start_with_config(dir: &Path, toml: &str) -> TestServer {
        let config = dir.join(format!("config-{}.toml", unique()));
        std::fs::write(&config, toml).expect("write the server config");
        let config = config.to_str().expect("a UTF-8 temp path");
        TestServer::spawn(dir, 0, &["--config", config])
    }

    fn spawn(dir: &Path, port: u16, extra: &[&str]) -> TestServer {
        let data_dir = dir.join("data");
        let log = dir.join(format!("server-{}.log", unique()));
        let log_file = std::fs::File::create(&log).expect("create the server log");
        let mut child = Command::new(server_binary())
            .arg("serve")
            .args(extra)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(&data_dir)
            .env("RUST_LOG", "info,quibble_server=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file))
            .spawn()
            .expect("start the quibble server");
        let stdout = child.stdout.take().expect("server stdout");
        // Read stdout on a thread: the first line has the address, and the rest must keep
        // being drained so that the server never blocks on a full pipe.
        let (first_tx, first_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let _ = first_tx.send(lines.next());
            for _ in lines {}
        });
        let mut server = TestServer {
            child,
            port: 0,
            data_dir,
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

    /// The server's process id (to read its memory from `/proc`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The HTTP base URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stop the server gracefully (SIGTERM: it tells clients to go away) and wait for it.
    pub fn shut_down(mut self) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
        let deadline = Instant::now() + STARTUP;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "the server did not shut down; its log:\n{}",
            self.log_text()
        );
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The port from `quibble listening on http://127.0.0.1:PORT/`.
pub fn parse_listening_line(line: &str) -> Option<u16> {
    let url = line.strip_prefix("quibble listening on ")?;
    url.trim()
        .trim_end_matches('/')
        .rsplit(':')
        .next()?
        .parse()
        .ok()
}

fn unique() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
}

/// Wait for `child` (spawned with piped stdout and stderr) to exit, killing it (and failing
/// the test) after `limit`. The pipes are drained meanwhile.
pub fn wait_with_limit(mut child: Child, limit: Duration, what: &str) -> Output {
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("poll the child process") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{what} did not finish within {limit:?}; stdout: {:?}; stderr: {:?}",
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

/// A free TCP port on 127.0.0.1: bound to port 0, read, released. Another process may take it
/// before the caller binds it; the service fixtures retry their startup when that happens.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("bind a loopback port")
        .port()
}

/// Whether process `pid` exists and is not a zombie (`/proc/PID/stat`).
pub fn process_alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // `PID (COMM) STATE …`: COMM may hold spaces and parentheses, so look after the last ')'.
    let state = stat
        .rfind(')')
        .and_then(|end| stat[end + 1..].split_whitespace().next());
    !matches!(state, Some("Z" | "X" | "x") | None)
}

/// Send `signal` (e.g. "KILL", "TERM") to process `pid`, which the caller started or tracks.
/// Whether it was delivered (false when the process is already gone).
pub fn send_signal(pid: u32, signal: &str) -> bool {
    Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|status| status.success())
        .unwrap_or(false)
}

/// Wait until process `pid` is gone, at most `limit`; whether it is.
pub fn wait_gone(pid: u32, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while process_alive(pid) {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

/// A new, empty directory under the system temp dir, named after `prefix`; the caller removes it.
pub fn fresh_temp_dir(prefix: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!(
        "{prefix}-{}-{n}-{}",
        std::process::id(),
        unique() % 1_000_000_000
    ));
    std::fs::create_dir(&dir)
        .unwrap_or_else(|e| panic!("create the temp dir {}: {e}", dir.display()));
    dir
}

/// The last `lines` lines of the text file at `path` (for panic messages about a service log).
pub fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| format!("(unreadable: {e})"));
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Wait for `child` to exit, at most `limit`; SIGKILL it (by its handle) when it does not.
pub fn reap_within(child: &mut Child, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(_)) | Err(_) => return,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// The text of `path` from byte `offset` on.
pub(crate) fn read_from(path: &Path, offset: u64) -> String {
    let mut text = String::new();
    if let Ok(mut file) = std::fs::File::open(path) {
        use std::io::Seek;
        let _ = file.seek(std::io::SeekFrom::Start(offset));
        let _ = file.read_to_string(&mut text);
    }
    text
}

/// Ends a service process if this test process dies without stopping it (killed by a harness's
/// timeout, or a fixture kept in a `static`, which never drops): a `sh` child that waits on a
/// pipe from us. Disarmed (dropped) normally, it is told `done` and exits; when this process
/// dies, the pipe closes, and it SIGKILLs the tracked PID and removes the fixture's temp dir.
pub struct Watchdog {
    child: Child,
}

impl Watchdog {
    /// Watch `pid`, whose fixture lives in `dir`.
    pub fn arm(pid: u32, dir: &Path) -> Watchdog {
        let child = Command::new("/bin/sh")
            .arg("-c")
            .arg(
                r#"read -r line; [ "$line" = done ] && exit 0
                   kill -KILL "$1" 2>/dev/null; sleep 1; rm -rf -- "$2""#,
            )
            .arg("quibble-watchdog")
            .arg(pid.to_string())
            .arg(dir)
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start a watchdog shell");
        Watchdog { child }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        if let Some(mut stdin) = self.child.stdin.take() {
            use std::io::Write;
            let _ = stdin.write_all(b"done\n");
        }
        reap_within(&mut self.child, Duration::from_secs(5));
    }
}
