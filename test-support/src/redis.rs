//! Throwaway Redis servers for tests: one server ([`Redis`]) or a three-master Redis Cluster
//! ([`RedisCluster`]), on free loopback ports in temp dirs, stopped by PID and removed when the
//! fixture drops (also on panic).
//!
//! Design:
//! - `/usr/bin/redis-server` and `/usr/bin/redis-cli` (Debian's, installed by
//!   `scripts/setup-services`), found by path.
//! - Each server runs in the foreground (`--daemonize no`) as our child, so we hold its PID and
//!   reap it; its output goes to `redis.log` in its dir. Nothing persists (`--save ''
//!   --appendonly no`): Redis carries fan-out only, and a restart comes back empty.
//! - A server is up when it answers `PING` ([`command`], a few lines of RESP over a
//!   `TcpStream`, so the fixtures need no Redis client crate). Every wait has a deadline; a failed
//!   start panics with the log's tail. A start that loses its port to another process ("address
//!   already in use") retries on new ports; a restart keeps its port and retries for a while.
//! - The cluster: three servers with `--cluster-enabled yes`, each with its own dir,
//!   `nodes.conf` and an explicit free `--cluster-port` (rather than port + 10000, which may be
//!   taken or out of range); joined by `redis-cli --cluster create … --cluster-yes` (all 16384
//!   slots over the three masters), ready once `CLUSTER INFO` says `cluster_state:ok` on every
//!   node. [`RedisCluster::node`] gives one node for kill/restart tests.
//! - A [`Watchdog`] per running server SIGKILLs it and removes its dir should the test process
//!   die without dropping the fixture (a harness timeout, a `static`).

use crate::service::{DEADLINE, Failure, retry_while_taken};
use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{
    Watchdog, free_port, fresh_temp_dir, log_tail, reap_within, send_signal, wait_with_limit,
};

/// How many times a start retries on new ports when a port was taken meanwhile.
const PORT_ATTEMPTS: usize = 5;
const REDIS_SERVER: &str = "/usr/bin/redis-server";
const REDIS_CLI: &str = "/usr/bin/redis-cli";

/// A running throwaway redis-server.
pub struct Redis {
    dir: PathBuf,
    log: PathBuf,
    port: u16,
    /// `Some(bus port)` for a cluster node.
    cluster_port: Option<u16>,
    child: Option<Child>,
    /// Ends the server should this process die without dropping us.
    watchdog: Option<Watchdog>,
}

impl Redis {
    /// Start one redis-server on a free loopback port.
    pub fn start() -> Redis {
        Redis::launch(fresh_temp_dir("quibble-redis"), false)
    }

    fn launch(dir: PathBuf, cluster: bool) -> Redis {
        assert_installed();
        let mut redis = Redis {
            log: dir.join("redis.log"),
            dir,
            port: 0,
            cluster_port: None,
            child: None,
            watchdog: None,
        };
        for attempt in 1..=PORT_ATTEMPTS {
            redis.port = free_port();
            redis.cluster_port = cluster.then(|| other_free_port(redis.port));
            match redis.spawn_and_wait() {
                Ok(()) => return redis,
                Err(Failure::PortTaken) if attempt < PORT_ATTEMPTS => continue,
                Err(failure) => redis.startup_failed(failure),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    /// The port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The server's PID, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The server log.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Send one command and read its reply (see [`command`]).
    pub fn command(&self, args: &[&str]) -> io::Result<Reply> {
        command(self.port, args)
    }

    /// SIGKILL the server and reap it; `start_again` or `restart` brings it back, empty.
    pub fn kill(&mut self) {
        self.watchdog = None;
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            reap_within(&mut child, DEADLINE);
        }
    }

    /// Stop the server: SIGTERM by its PID, SIGKILL when it is not gone within the deadline.
    pub fn shut_down(&mut self) {
        self.watchdog = None;
        if let Some(mut child) = self.child.take() {
            send_signal(child.id(), "TERM");
            reap_within(&mut child, DEADLINE);
        }
    }

    /// Start the server again on the same port (and, for a cluster node, the same
    /// `nodes.conf`, so it rejoins its cluster).
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "start_again: the server is running");
        if let Err(failure) = retry_while_taken(|| self.spawn_and_wait()) {
            self.startup_failed(failure);
        }
    }

    /// Stop the server and remove its dir (what dropping it does).
    pub fn stop(self) {
        drop(self);
    }

    /// `shut_down` (when running), then `start_again` on the same port.
    pub fn restart(&mut self) {
        self.shut_down();
        self.start_again();
    }

    fn spawn_and_wait(&mut self) -> Result<(), Failure> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open the Redis log");
        let log_start = log.metadata().map(|m| m.len()).unwrap_or(0);
        let err = log.try_clone().expect("clone the log handle");
        let mut server = Command::new(REDIS_SERVER);
        server
            .arg("--port")
            .arg(self.port.to_string())
            .args(["--bind", "127.0.0.1", "--daemonize", "no"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir);
        if let Some(bus) = self.cluster_port {
            server
                .args(["--cluster-enabled", "yes", "--cluster-config-file"])
                .arg(self.dir.join("nodes.conf"))
                .arg("--cluster-port")
                .arg(bus.to_string());
        }
        server
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err));
        let mut child = server.spawn().expect("start redis-server");
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let text = crate::read_from(&self.log, log_start);
                return Err(if text.contains("already in use") {
                    Failure::PortTaken
                } else {
                    Failure::Exited(format!("{status}"))
                });
            }
            if matches!(command(self.port, &["PING"]), Ok(Reply::Simple(ref pong)) if pong == "PONG")
            {
                self.watchdog = Some(Watchdog::arm(child.id(), &self.dir));
                self.child = Some(child);
                return Ok(());
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                reap_within(&mut child, Duration::from_secs(5));
                return Err(Failure::Timeout);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn startup_failed(&self, failure: Failure) -> ! {
        panic!(
            "redis-server on 127.0.0.1:{} did not start ({failure}); the tail of {}:\n{}",
            self.port,
            self.log.display(),
            log_tail(&self.log, 30)
        )
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A running three-master Redis Cluster on loopback.
pub struct RedisCluster {
    nodes: Vec<Redis>,
    dir: PathBuf,
}

impl RedisCluster {
    /// Start three cluster-enabled servers, join them with `redis-cli --cluster create`, and
    /// wait until every node reports `cluster_state:ok`.
    pub fn start() -> RedisCluster {
        let dir = fresh_temp_dir("quibble-redis-cluster");
        let nodes = (0..3)
            .map(|i| {
                let node_dir = dir.join(format!("node{i}"));
                std::fs::create_dir(&node_dir).expect("create a cluster node's dir");
                Redis::launch(node_dir, true)
            })
            .collect();
        let cluster = RedisCluster { nodes, dir };
        let mut create = Command::new(REDIS_CLI);
        create.arg("--cluster").arg("create");
        for node in &cluster.nodes {
            create.arg(format!("127.0.0.1:{}", node.port));
        }
        let child = create
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run redis-cli --cluster create");
        let out = wait_with_limit(child, DEADLINE, "redis-cli --cluster create");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        cluster.wait_ok();
        cluster
    }

    /// Wait until every running node reports `cluster_state:ok` (e.g. after a node restarted).
    pub fn wait_ok(&self) {
        let deadline = Instant::now() + DEADLINE;
        for node in self.nodes.iter().filter(|node| node.child.is_some()) {
            loop {
                let info = node.command(&["CLUSTER", "INFO"]);
                if let Ok(Reply::Bulk(ref text)) = info
                    && text.lines().any(|line| line.trim() == "cluster_state:ok")
                {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "the Redis Cluster node on port {} is not ok within {DEADLINE:?}: {info:?}; \
                     the tail of {}:\n{}",
                    node.port,
                    node.log.display(),
                    log_tail(&node.log, 30)
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// `redis://127.0.0.1:PORT` of each master.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(Redis::url).collect()
    }

    /// The masters' ports.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|node| node.port).collect()
    }

    /// The running masters' PIDs.
    pub fn pids(&self) -> Vec<u32> {
        self.nodes.iter().filter_map(Redis::pid).collect()
    }

    /// Stop every node and remove the dir (what dropping it does).
    pub fn stop(self) {
        drop(self);
    }

    /// Master `index` (0..3), to kill or restart.
    pub fn node(&mut self, index: usize) -> &mut Redis {
        &mut self.nodes[index]
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        self.nodes.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A free loopback port other than `not`.
fn other_free_port(not: u16) -> u16 {
    loop {
        let port = free_port();
        if port != not {
            return port;
        }
    }
}

fn assert_installed() {
    for binary in [REDIS_SERVER, REDIS_CLI] {
        assert!(
            Path::new(binary).is_file(),
            "{binary} is missing: run scripts/setup-services"
        );
    }
}

/// A Redis reply (RESP2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Simple(String),
    Error(String),
    Integer(i64),
    Bulk(String),
    Nil,
    Array(Vec<Reply>),
}

/// Send one command to the Redis on 127.0.0.1:`port` over a new connection and read its reply
/// (connect, read and write each time out after a few seconds).
pub fn command(port: u16, args: &[&str]) -> io::Result<Reply> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut request = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        request.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        request.extend_from_slice(arg.as_bytes());
        request.extend_from_slice(b"\r\n");
    }
    (&stream).write_all(&request)?;
    read_reply(&mut BufReader::new(stream))
}

fn read_reply(reader: &mut impl BufRead) -> io::Result<Reply> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "Redis closed the connection",
        ));
    }
    let line = line.trim_end_matches("\r\n");
    let bad = || io::Error::new(io::ErrorKind::InvalidData, format!("bad reply {line:?}"));
    let (kind, rest) = line.split_at_checked(1).ok_or_else(bad)?;
    let number = || rest.parse::<i64>().map_err(|_| bad());
    Ok(match kind {
        "+" => Reply::Simple(rest.to_owned()),
        "-" => Reply::Error(rest.to_owned()),
        ":" => Reply::Integer(number()?),
        "$" => match usize::try_from(number()?) {
            Err(_) => Reply::Nil,
            Ok(len) => {
                let mut bytes = vec![0; len + 2];
                reader.read_exact(&mut bytes)?;
                bytes.truncate(len);
                Reply::Bulk(String::from_utf8_lossy(&bytes).into_owned())
            }
        },
        "*" => match usize::try_from(number()?) {
            Err(_) => Reply::Nil,
            Ok(len) => Reply::Array(
                (0..len)
                    .map(|_| read_reply(reader))
                    .collect::<io::Result<_>>()?,
            ),
        },
        _ => return Err(bad()),
    })
}
