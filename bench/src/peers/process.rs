//! A server under test as a child process of `versus`: Quibble's binary or a Node peer, started
//! on a loopback port it picks itself, its port read from the first line it prints on stdout
//! (within [`STARTUP`]; a thread drains the rest so that it never blocks on a full pipe), its
//! stderr kept in a log file whose tail explains a failure. It is stopped by its PID: SIGTERM,
//! then SIGKILL after [`STOP_LIMIT`]; dropping it kills it. Std processes and threads rather
//! than tokio's, whose `process` feature the workspace does not build.
//!
//! A server runs in a session of its own ([`server_command`], through `setsid`): Linux's
//! autogroup scheduling shares the CPU fairly between sessions, so in the bench's session the
//! server under test would split one share with the load generator on a machine busy with
//! other work, and every server's saturation would be half what it is.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, bail};
use rustix::process::{Pid, Signal, kill_process};

use crate::pin;

/// How long a server may take to print its port.
const STARTUP: Duration = Duration::from_secs(30);
/// How long a server may take to exit once asked to.
const STOP_LIMIT: Duration = Duration::from_secs(10);
/// Lines of its log shown when a server fails.
const LOG_TAIL: usize = 20;

/// A command that runs `program` in a session of its own (`setsid`, which does not fork from
/// a child that leads no process group: the child's PID stays the server's), on `cpu` only
/// if given (`--pin`).
pub fn server_command(program: impl AsRef<std::ffi::OsStr>, cpu: Option<usize>) -> Command {
    let mut command = Command::new("setsid");
    pin::on_cpu(&mut command, cpu, program.as_ref());
    command
}

/// A running server, killed when dropped.
#[derive(Debug)]
pub struct RunningServer {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl RunningServer {
    /// Start `command` with its stderr in `log`, and wait until its first stdout line gives
    /// the port (`port_of` reads it).
    pub async fn start(
        mut command: Command,
        log: &Path,
        port_of: fn(&str) -> Option<u16>,
    ) -> anyhow::Result<RunningServer> {
        let log_file =
            File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file))
            .spawn()
            .with_context(|| format!("cannot start {:?}", command.get_program()))?;
        let (first_tx, first_rx) = mpsc::channel();
        if let Some(stdout) = child.stdout.take() {
            std::thread::spawn(move || {
                let mut lines = BufReader::new(stdout).lines();
                let _ = first_tx.send(lines.next());
                for _ in lines {}
            });
        }
        let mut server = RunningServer {
            child,
            port: 0,
            log: log.to_owned(),
        };
        let first = tokio::task::spawn_blocking(move || first_rx.recv_timeout(STARTUP))
            .await
            .context("the startup watcher failed")?;
        let line = match first {
            Ok(Some(Ok(line))) => line,
            Ok(_) => bail!("the server exited at startup{}", server.log_tail()),
            Err(_) => bail!(
                "the server printed no port within {STARTUP:?}{}",
                server.log_tail()
            ),
        };
        server.port = port_of(&line).with_context(|| {
            format!(
                "unexpected first line from the server: {line:?}{}",
                server.log_tail()
            )
        })?;
        Ok(server)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stop the server: SIGTERM, then SIGKILL if it is still there after [`STOP_LIMIT`].
    /// An error if it had exited on its own before, with the tail of its log.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Ok(Some(status)) = self.child.try_wait() {
            bail!("the server had exited ({status}){}", self.log_tail());
        }
        let pid = i32::try_from(self.child.id())
            .ok()
            .and_then(Pid::from_raw)
            .context("the server's pid does not fit a pid")?;
        // Gone meanwhile: the wait below finds out.
        let _ = kill_process(pid, Signal::TERM);
        if self.wait(STOP_LIMIT).await.is_none() {
            let _ = self.child.kill();
            let _ = self.wait(STOP_LIMIT).await;
        }
        Ok(())
    }

    async fn wait(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The last lines of the server's log, as a note (empty if there are none).
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = &lines[lines.len().saturating_sub(LOG_TAIL)..];
        if tail.is_empty() {
            String::new()
        } else {
            format!("; the end of its log:\n{}", tail.join("\n"))
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shell(script: &str) -> Command {
        let mut command = Command::new("sh");
        command.args(["-c", script]);
        command
    }

    #[tokio::test]
    async fn a_server_runs_in_a_session_of_its_own_under_its_own_pid() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let mut command = server_command("sh", None);
        command.args(["-c", "echo listening 4321; exec sleep 60"]);
        let port_of = |line: &str| line.strip_prefix("listening ")?.parse().ok();
        let server = RunningServer::start(command, &log, port_of).await.unwrap();
        let pid = server.pid();
        // setsid did not fork: the PID is the server's (the shell, or already `sleep`).
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
        assert!(["sh", "sleep"].contains(&comm.trim()), "{comm}");
        let session = |pid: u32| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
            // pid (comm) state ppid pgrp session ...
            let after_comm = stat.rsplit_once(')').unwrap().1.to_owned();
            after_comm.split_whitespace().nth(3).unwrap().to_owned()
        };
        assert_eq!(session(pid), pid.to_string(), "it leads its own session");
        assert_ne!(session(std::process::id()), pid.to_string());
        server.stop().await.unwrap();
    }

    #[tokio::test]
    async fn a_pinned_server_keeps_its_pid_and_runs_on_its_cpu_only() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let mut command = server_command("sh", Some(0));
        command.args(["-c", "echo listening 4321; exec sleep 60"]);
        let port_of = |line: &str| line.strip_prefix("listening ")?.parse().ok();
        let server = RunningServer::start(command, &log, port_of).await.unwrap();
        let pid = server.pid();
        // taskset exec'd the server: the PID is the server's, not taskset's.
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
        assert!(["sh", "sleep"].contains(&comm.trim()), "{comm}");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let cpus = status
            .lines()
            .find_map(|line| line.strip_prefix("Cpus_allowed_list:"))
            .unwrap();
        assert_eq!(cpus.trim(), "0");
        server.stop().await.unwrap();
    }

    #[tokio::test]
    async fn reads_the_port_and_stops_by_pid() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let port_of = |line: &str| line.strip_prefix("listening ")?.parse().ok();
        let server =
            RunningServer::start(shell("echo listening 4321; exec sleep 60"), &log, port_of)
                .await
                .unwrap();
        assert_eq!(server.port(), 4321);
        let pid = server.pid();
        assert!(Path::new(&format!("/proc/{pid}")).exists());
        server.stop().await.unwrap();

        let err = RunningServer::start(shell("echo oops >&2; exit 3"), &log, port_of)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("exited at startup") && err.contains("oops"),
            "{err}"
        );
        let err = RunningServer::start(shell("echo hello; exec sleep 60"), &log, port_of)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"hello\""), "{err}");
        let early = RunningServer::start(shell("echo listening 1; echo bye >&2"), &log, port_of)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let err = early.stop().await.unwrap_err().to_string();
        assert!(err.contains("had exited") && err.contains("bye"), "{err}");
    }
}
