//! A throwaway PostgreSQL server for tests: its own cluster in a temp dir, on a free loopback
//! port, stopped by its PID and removed when the fixture drops (also on panic).
//!
//! Design:
//! - Binaries come from Debian's `/usr/lib/postgresql/VERSION/bin` (the newest version there),
//!   never from `PATH`, where other versions may sit (`scripts/setup-services` installs them).
//! - `initdb` refuses to run as root, so as root every server-side command (`initdb`,
//!   `postgres`, `pg_ctl`) runs as the `postgres` user through `runuser -u postgres --`, on a temp
//!   dir chowned to that user; otherwise they run as the current user. The superuser is always
//!   named `postgres`, with trust authentication (the server listens on 127.0.0.1 and on a Unix
//!   socket in the temp dir only).
//! - The postmaster runs in the foreground as our child (through `runuser` as root), its output in
//!   `postgres.log` in the temp dir; its PID is read from `postmaster.pid`, and the server counts
//!   as up when that file says `ready`. Every wait has a deadline; a failed start panics with the
//!   log's tail. A start that loses its port to another process ("address already in use")
//!   retries on a new port; a restart keeps its port and retries for a while instead (after a
//!   SIGKILL, the old backends may hold the shared memory for a moment).
//! - `fsync=on` and `synchronous_commit=on`, since tests check durability; small
//!   `shared_buffers`. `initdb --no-sync`: the empty cluster's files need not reach the disk.
//! - One server per test binary is enough ([`Postgres::shared`]): [`Postgres::fresh_database`]
//!   makes a new database per test for a few milliseconds.
//! - A [`Watchdog`] per running postmaster SIGKILLs it and removes the dir should the test
//!   process die without dropping the fixture (a harness timeout, a `static`).
//! - [`Postgres::kill`] (SIGKILL of the postmaster, for crash tests), [`Postgres::shut_down`]
//!   (`pg_ctl stop -m fast`), [`Postgres::start_again`] and [`Postgres::restart`] keep the data
//!   dir and the port. Dropping stops the server (fast shutdown with a deadline, then SIGKILL of
//!   the postmaster) and removes the dir.

use crate::service::{DEADLINE, Failure, retry_while_taken};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::{
    Watchdog, free_port, fresh_temp_dir, log_tail, process_alive, read_from, reap_within,
    send_signal, wait_with_limit,
};

/// How many times a start retries on a new port when its port was taken meanwhile.
const PORT_ATTEMPTS: usize = 5;

/// A running throwaway PostgreSQL server.
pub struct Postgres {
    bin: PathBuf,
    /// The temp dir: `data/` (the cluster), the Unix socket and `postgres.log`.
    dir: PathBuf,
    data: PathBuf,
    log: PathBuf,
    port: u16,
    /// `Some` when we are root: server-side commands run as `postgres` through `runuser`.
    runuser: Option<PathBuf>,
    /// The postmaster (or `runuser` waiting for it) while it runs.
    child: Option<Child>,
    /// The postmaster's PID while it runs.
    pid: Option<u32>,
    /// Ends the postmaster should this process die without dropping us.
    watchdog: Option<Watchdog>,
}

impl Postgres {
    /// Create a cluster in a new temp dir and start it on a free loopback port.
    pub fn start() -> Postgres {
        let bin = bin_dir();
        let dir = fresh_temp_dir("quibble-pg");
        let runuser = if running_as_root() {
            let (uid, gid) = postgres_user();
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
                .unwrap_or_else(|e| panic!("chown {} to the postgres user: {e}", dir.display()));
            Some(runuser_binary())
        } else {
            None
        };
        let mut postgres = Postgres {
            data: dir.join("data"),
            log: dir.join("postgres.log"),
            bin,
            dir,
            port: 0,
            runuser,
            child: None,
            pid: None,
            watchdog: None,
        };
        postgres.initdb();
        for attempt in 1..=PORT_ATTEMPTS {
            postgres.port = free_port();
            match postgres.spawn_and_wait() {
                Ok(()) => return postgres,
                Err(Failure::PortTaken) if attempt < PORT_ATTEMPTS => continue,
                Err(failure) => postgres.startup_failed(failure),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    /// One server for the whole test binary, started on first use (each test then takes its
    /// own [`fresh_database`](Postgres::fresh_database)). It never drops: its [`Watchdog`]
    /// stops it and removes its dir when the test process exits.
    pub fn shared() -> &'static Postgres {
        static SHARED: std::sync::OnceLock<Postgres> = std::sync::OnceLock::new();
        SHARED.get_or_init(Postgres::start)
    }

    /// The port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The postmaster's PID, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// The temp dir (the cluster is in its `data/`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The server log.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The URL of the `postgres` database: `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> String {
        self.url_for("postgres")
    }

    /// The URL of database `database`.
    pub fn url_for(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Create database `name` (lowercase letters, digits and `_`) and return its URL.
    pub fn create_database(&self, name: &str) -> String {
        assert!(
            !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
            "database names here are [a-z0-9_]+, not {name:?}"
        );
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
        self.url_for(name)
    }

    /// Create a database with a new name (`test_N`) and return its URL.
    pub fn fresh_database(&self) -> String {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        self.create_database(&format!("test_{}", NEXT.fetch_add(1, Ordering::Relaxed)))
    }

    /// Run `sql` with `psql` over TCP in `database`; its output, unaligned and tuples only
    /// (`psql -XAt`). Panics when psql fails or takes longer than the deadline.
    pub fn psql(&self, database: &str, sql: &str) -> String {
        let child = Command::new(self.bin.join("psql"))
            .args([
                "-X",
                "-A",
                "-t",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
            ])
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-U", "postgres", "-d", database, "-c", sql])
            .env("PGCONNECT_TIMEOUT", "5")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run psql");
        let out = wait_with_limit(child, DEADLINE, "psql");
        assert!(
            out.status.success(),
            "psql -c {sql:?} on port {} failed: {}; server log:\n{}",
            self.port,
            String::from_utf8_lossy(&out.stderr),
            log_tail(&self.log, 30)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// SIGKILL the postmaster (a crash: no shutdown checkpoint), and wait until it is gone.
    /// `start_again` or `restart` brings it back with crash recovery.
    pub fn kill(&mut self) {
        let pid = self.pid;
        self.kill_postmaster();
        if let Some(pid) = pid {
            assert!(!process_alive(pid), "postmaster {pid} survived SIGKILL");
        }
    }

    /// SIGKILL the postmaster by its PID and reap our child, without panicking (Drop uses it).
    fn kill_postmaster(&mut self) {
        self.watchdog = None;
        if let Some(pid) = self.pid.take() {
            send_signal(pid, "KILL");
            crate::wait_gone(pid, DEADLINE);
        }
        if let Some(mut child) = self.child.take() {
            reap_within(&mut child, DEADLINE);
        }
    }

    /// Stop the server (`pg_ctl stop -m fast`, with a deadline, then SIGKILL of the
    /// postmaster), keeping its data dir and port for `start_again`.
    pub fn shut_down(&mut self) {
        let Some(pid) = self.pid else {
            return;
        };
        self.watchdog = None;
        let mut stop = self.server_command("pg_ctl");
        stop.arg("-D")
            .arg(&self.data)
            .args(["-m", "fast", "-w", "-t", "15", "stop"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // A stop that fails or hangs is not fatal: SIGKILL below ends the server anyway.
        if let Ok(mut child) = stop.spawn() {
            reap_within(&mut child, DEADLINE);
        }
        if !crate::wait_gone(pid, Duration::from_secs(1)) {
            self.kill_postmaster();
        }
        self.pid = None;
        if let Some(mut child) = self.child.take() {
            reap_within(&mut child, DEADLINE);
        }
    }

    /// Start the server again on the same port and data dir, after `kill` or `shut_down`.
    pub fn start_again(&mut self) {
        assert!(self.pid.is_none(), "start_again: the server is running");
        if let Err(failure) = retry_while_taken(|| self.spawn_and_wait()) {
            self.startup_failed(failure);
        }
    }

    /// Stop the server and remove its dir (what dropping it does).
    pub fn stop(self) {
        drop(self);
    }

    /// `shut_down` (when running), then `start_again`: same port, same data.
    pub fn restart(&mut self) {
        self.shut_down();
        self.start_again();
    }

    /// A command running `program` from the PostgreSQL bin dir as the server's user.
    fn server_command(&self, program: &str) -> Command {
        let program = self.bin.join(program);
        let mut command = match &self.runuser {
            Some(runuser) => {
                let mut command = Command::new(runuser);
                command.args(["-u", "postgres", "--"]).arg(program);
                command
            }
            None => Command::new(program),
        };
        // The postgres user may not be able to enter the caller's working directory.
        command.current_dir(&self.dir);
        command
    }

    fn initdb(&self) {
        let mut initdb = self.server_command("initdb");
        initdb
            .arg("-D")
            .arg(&self.data)
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C"])
            .arg("--no-sync")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let child = initdb.spawn().expect("run initdb");
        let out = wait_with_limit(child, DEADLINE, "initdb");
        assert!(
            out.status.success(),
            "initdb -D {} failed: {}{}",
            self.data.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Start the postmaster on `self.port` and wait until `postmaster.pid` says it is ready.
    fn spawn_and_wait(&mut self) -> Result<(), Failure> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open the PostgreSQL log");
        let log_start = log.metadata().map(|m| m.len()).unwrap_or(0);
        let err = log.try_clone().expect("clone the log handle");
        let pid_file = self.data.join("postmaster.pid");
        let mut postgres = self.server_command("postgres");
        postgres
            .arg("-D")
            .arg(&self.data)
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-k")
            .arg(&self.dir)
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args(["-c", "fsync=on", "-c", "synchronous_commit=on"])
            .args(["-c", "shared_buffers=16MB", "-c", "max_connections=200"])
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err));
        let mut child = postgres.spawn().expect("start postgres");
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(pid) = ready_postmaster(&pid_file) {
                self.child = Some(child);
                self.pid = Some(pid);
                self.watchdog = Some(Watchdog::arm(pid, &self.dir));
                return Ok(());
            }
            if let Ok(Some(status)) = child.try_wait() {
                let new_log = read_from(&self.log, log_start);
                // "Address already in use"; after a SIGKILL, "pre-existing shared memory block
                // … is still in use" while the old backends exit.
                return Err(
                    if new_log.contains("already in use") || new_log.contains("still in use") {
                        Failure::PortTaken
                    } else {
                        Failure::Exited(format!("{status}"))
                    },
                );
            }
            if Instant::now() >= deadline {
                // Not ready in time: end it by PID if it wrote one, and by our handle.
                if let Some(pid) = postmaster_pid(&pid_file) {
                    send_signal(pid, "KILL");
                }
                let _ = child.kill();
                reap_within(&mut child, Duration::from_secs(5));
                return Err(Failure::Timeout);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn startup_failed(&self, failure: Failure) -> ! {
        panic!(
            "PostgreSQL on 127.0.0.1:{} did not start ({failure}); the tail of {}:\n{}",
            self.port,
            self.log.display(),
            log_tail(&self.log, 30)
        )
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.shut_down();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The newest `/usr/lib/postgresql/VERSION/bin` holding `initdb`, `pg_ctl` and `postgres`.
pub fn bin_dir() -> PathBuf {
    let root = Path::new("/usr/lib/postgresql");
    let newest = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            ["initdb", "pg_ctl", "postgres", "psql"]
                .iter()
                .all(|tool| bin.join(tool).is_file())
                .then_some((version, bin))
        })
        .max_by_key(|(version, _)| *version);
    match newest {
        Some((_, bin)) => bin,
        None => panic!(
            "no PostgreSQL under {}/VERSION/bin (initdb, pg_ctl, postgres, psql): \
             run scripts/setup-services",
            root.display()
        ),
    }
}

fn running_as_root() -> bool {
    // `/proc/self` belongs to the effective user of this process.
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// The `postgres` user's uid and gid, from `/etc/passwd`.
fn postgres_user() -> (u32, u32) {
    let passwd = std::fs::read_to_string("/etc/passwd").expect("read /etc/passwd");
    passwd
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            if fields.first() != Some(&"postgres") || fields.len() < 4 {
                return None;
            }
            Some((fields[2].parse().ok()?, fields[3].parse().ok()?))
        })
        .expect("no postgres user in /etc/passwd (running as root needs it): run scripts/setup-services")
}

fn runuser_binary() -> PathBuf {
    ["/usr/sbin/runuser", "/sbin/runuser", "/usr/bin/runuser"]
        .iter()
        .map(PathBuf::from)
        .find(|path| path.is_file())
        .expect("runuser (util-linux) is needed to run PostgreSQL as the postgres user")
}

/// The postmaster's PID from `postmaster.pid` (its first line), when it is alive.
fn postmaster_pid(pid_file: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(pid_file).ok()?;
    let pid = text.lines().next()?.trim().parse().ok()?;
    process_alive(pid).then_some(pid)
}

/// The postmaster's PID once `postmaster.pid` says `ready` (its eighth line).
fn ready_postmaster(pid_file: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(pid_file).ok()?;
    let ready = text.lines().nth(7).map(str::trim) == Some("ready");
    if ready {
        postmaster_pid(pid_file)
    } else {
        None
    }
}
