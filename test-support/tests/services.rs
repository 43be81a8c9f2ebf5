//! The service fixtures against the real binaries (`scripts/setup-services` installs them):
//! a throwaway PostgreSQL answers `psql`, keeps its data over a restart and a crash, and leaves
//! no process behind; a throwaway Redis answers PING and comes back on its port after a kill;
//! a three-master Redis Cluster covers all 16384 slots. Each test runs under a time limit.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use quibble_test_support::postgres::{self, Postgres};
use quibble_test_support::redis::{Redis, RedisCluster, Reply};
use quibble_test_support::{process_alive, wait_gone, wait_with_limit};

/// Every test here must finish within this.
const LIMIT: Duration = Duration::from_secs(30);

/// Run `test` on a thread and fail if it takes longer than `LIMIT` (its fixtures then still
/// drop when the test process exits with the failure).
fn bounded(name: &str, test: impl FnOnce() + Send + 'static) {
    let (done_tx, done_rx) = mpsc::channel();
    let handle = std::thread::spawn(move || {
        test();
        let _ = done_tx.send(());
    });
    match done_rx.recv_timeout(LIMIT) {
        Ok(()) => handle.join().expect("the test thread"),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            // The test panicked: re-raise its panic here.
            if let Err(panic) = handle.join() {
                std::panic::resume_unwind(panic);
            }
        }
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{name} took longer than {LIMIT:?}"),
    }
}

/// `psql -h 127.0.0.1 -p PORT -U postgres -c SQL`, as an operator would type it.
fn psql(port: u16, sql: &str) -> (bool, String) {
    let child = Command::new(postgres::bin_dir().join("psql"))
        .args(["-X", "-At", "-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-U", "postgres", "-c", sql])
        .env("PGCONNECT_TIMEOUT", "5")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run psql");
    let out = wait_with_limit(child, Duration::from_secs(10), "psql");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn postgres_answers_keeps_its_data_over_restart_and_crash_and_leaves_nothing() {
    bounded("the PostgreSQL test", || {
        let mut pg = Postgres::start();
        let port = pg.port();
        assert!(pg.url().starts_with("postgres://postgres@127.0.0.1:"));
        assert_eq!(psql(port, "select 1"), (true, "1\n".to_owned()));
        let settings = pg.psql("postgres", "show fsync; show synchronous_commit");
        assert_eq!(settings, "on\non\n", "durability settings");

        // A fresh database per test is cheap; it has its own tables.
        let url = pg.fresh_database();
        let db = url.rsplit('/').next().expect("a database name").to_owned();
        pg.psql(
            &db,
            "create table kept (n int); insert into kept values (7)",
        );

        // A clean restart keeps the port and the data.
        let first_pid = pg.pid().expect("running");
        pg.restart();
        assert_eq!(pg.port(), port);
        assert!(!process_alive(first_pid), "the old postmaster is gone");
        assert_eq!(pg.psql(&db, "select n from kept"), "7\n");

        // A crash (SIGKILL) keeps every committed row: crash recovery on the same port.
        pg.psql(&db, "insert into kept values (8)");
        let crashed_pid = pg.pid().expect("running");
        pg.kill();
        assert!(!process_alive(crashed_pid));
        assert!(
            !psql(port, "select 1").0,
            "nothing answers while it is down"
        );
        pg.start_again();
        assert_eq!(pg.port(), port);
        assert_eq!(pg.psql(&db, "select n from kept order by n"), "7\n8\n");

        // stop() (as Drop) stops the postmaster and removes the dir.
        let pid = pg.pid().expect("running");
        let dir: PathBuf = pg.dir().to_owned();
        pg.stop();
        assert!(
            wait_gone(pid, Duration::from_secs(5)),
            "postmaster {pid} left running"
        );
        assert!(!dir.exists(), "{} left behind", dir.display());
    });
}

#[test]
fn redis_answers_ping_and_comes_back_on_its_port_after_a_kill() {
    bounded("the Redis test", || {
        let mut redis = Redis::start();
        let port = redis.port();
        assert_eq!(redis.url(), format!("redis://127.0.0.1:{port}"));
        assert_eq!(
            redis.command(&["PING"]).expect("PING"),
            Reply::Simple("PONG".into())
        );
        assert_eq!(
            redis.command(&["SET", "k", "v"]).expect("SET"),
            Reply::Simple("OK".into())
        );
        assert_eq!(
            redis.command(&["GET", "k"]).expect("GET"),
            Reply::Bulk("v".into())
        );

        let killed = redis.pid().expect("running");
        redis.kill();
        assert!(
            !process_alive(killed),
            "redis-server {killed} survived kill()"
        );
        assert!(
            redis.command(&["PING"]).is_err(),
            "nothing answers while down"
        );

        redis.restart();
        assert_eq!(redis.port(), port);
        assert_eq!(
            redis.command(&["PING"]).expect("PING after restart"),
            Reply::Simple("PONG".into())
        );
        assert_eq!(
            redis.command(&["GET", "k"]).expect("GET"),
            Reply::Nil,
            "nothing persists"
        );

        let pid = redis.pid().expect("running");
        drop(redis);
        assert!(
            wait_gone(pid, Duration::from_secs(5)),
            "redis-server {pid} left running"
        );
    });
}

#[test]
fn redis_cluster_of_three_masters_covers_every_slot() {
    bounded("the Redis Cluster test", || {
        let cluster = RedisCluster::start();
        let urls = cluster.urls();
        assert_eq!(urls.len(), 3);
        for port in cluster.ports() {
            let Reply::Bulk(info) =
                quibble_test_support::redis::command(port, &["CLUSTER", "INFO"])
                    .expect("CLUSTER INFO")
            else {
                panic!("CLUSTER INFO is a bulk string");
            };
            for expected in [
                "cluster_state:ok",
                "cluster_slots_assigned:16384",
                "cluster_slots_ok:16384",
                "cluster_known_nodes:3",
                "cluster_size:3",
            ] {
                assert!(
                    info.lines().any(|line| line.trim() == expected),
                    "port {port}: no {expected} in {info}"
                );
            }
            // Sharded pub/sub answers: 0 receivers on the slot's owner, MOVED elsewhere.
            let reply = quibble_test_support::redis::command(port, &["SPUBLISH", "{p0}", "m"]);
            let answered = match &reply {
                Ok(Reply::Integer(0)) => true,
                Ok(Reply::Error(e)) => e.starts_with("MOVED"),
                _ => false,
            };
            assert!(answered, "SPUBLISH on {port}: {reply:?}");
        }

        // A master killed and started again rejoins from its nodes.conf.
        let mut cluster = cluster;
        cluster.node(0).kill();
        cluster.node(0).start_again();
        cluster.wait_ok();

        let pids = cluster.pids();
        assert_eq!(pids.len(), 3);
        drop(cluster);
        for pid in pids {
            assert!(
                wait_gone(pid, Duration::from_secs(5)),
                "redis-server {pid} left running"
            );
        }
    });
}

/// Set in the environment of the child process `fixtures_die_with_their_test_process` starts.
const WATCHDOG_CHILD: &str = "QUIBBLE_WATCHDOG_CHILD";

/// In a child test process only: start the shared PostgreSQL and a Redis, report their PIDs
/// and dirs, and wait to be killed.
#[test]
fn watchdog_child() {
    if std::env::var_os(WATCHDOG_CHILD).is_none() {
        return;
    }
    let pg = Postgres::shared();
    let redis = Redis::start();
    println!(
        "\nwatchdog-pid {} {}",
        pg.pid().expect("running"),
        pg.dir().display()
    );
    println!(
        "\nwatchdog-pid {} {}",
        redis.pid().expect("running"),
        redis.log_path().parent().expect("dir").display()
    );
    println!("\nwatchdog-ready");
    std::thread::sleep(LIMIT);
}

#[test]
fn fixtures_die_with_their_test_process() {
    bounded("the watchdog test", || {
        use std::io::BufRead;
        // Killed by its handle when this test fails early, too.
        struct Killed(std::process::Child);
        impl Drop for Killed {
            fn drop(&mut self) {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }
        let mut child = Killed(
            Command::new(std::env::current_exe().expect("this test binary"))
                .args([
                    "--exact",
                    "watchdog_child",
                    "--nocapture",
                    "--test-threads",
                    "1",
                ])
                .env(WATCHDOG_CHILD, "1")
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("start the child test process"),
        );
        let mut servers = Vec::new();
        for line in std::io::BufReader::new(child.0.stdout.take().expect("stdout")).lines() {
            let line = line.expect("read the child's output");
            if line == "watchdog-ready" {
                break;
            }
            if let Some(rest) = line.strip_prefix("watchdog-pid ") {
                let (pid, dir) = rest.split_once(' ').expect("PID DIR");
                servers.push((pid.parse::<u32>().expect("a PID"), PathBuf::from(dir)));
            }
        }
        assert_eq!(servers.len(), 2, "the child reported its servers");
        for (pid, dir) in &servers {
            assert!(process_alive(*pid) && dir.exists());
        }
        // SIGKILL: the test process dies without dropping anything (the shared server never
        // would anyway).
        drop(child);
        for (pid, dir) in &servers {
            assert!(
                wait_gone(*pid, Duration::from_secs(5)),
                "server {pid} outlived its test process"
            );
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while dir.exists() {
                assert!(
                    std::time::Instant::now() < deadline,
                    "{} left behind",
                    dir.display()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    });
}
