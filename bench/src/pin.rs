//! `--pin`: one core for the load generator, another for the server under test, so that the
//! two do not take turns on the same cores and a server's figures are its own core's (the
//! Node peers run their JavaScript on one thread, so one core each is a fair fight). This
//! process pins itself with `sched_setaffinity` before its runtime starts (its threads, the
//! runtime's included, inherit the mask, and the runtime sizes itself to the one core); the
//! servers `versus` starts run under `taskset -c CPU` (util-linux, like `setsid`), which
//! `exec`s the server, so the PID `versus` watches stays the server's.

use std::process::Command;

use anyhow::{Context, bail};
use rustix::thread::{CpuSet, sched_getaffinity, sched_setaffinity};
use serde::Serialize;

/// Which core each side runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Pinning {
    /// This process: every bot.
    pub bench_cpu: usize,
    /// Every server started here (with `chat`, start it yourself under `taskset -c`).
    pub server_cpu: usize,
}

impl Pinning {
    /// Pin this process (call it before any other thread starts) to the first CPU it may use,
    /// and leave the second for the servers.
    pub fn apply() -> anyhow::Result<Pinning> {
        let allowed = sched_getaffinity(None).context("cannot read this process' CPUs")?;
        let mut cpus = (0..CpuSet::MAX_CPU).filter(|&cpu| allowed.is_set(cpu));
        let (Some(bench_cpu), Some(server_cpu)) = (cpus.next(), cpus.next()) else {
            bail!(
                "--pin needs two CPUs, and this process may use {}",
                allowed.count()
            );
        };
        let mut only = CpuSet::new();
        only.set(bench_cpu);
        sched_setaffinity(None, &only).context("cannot pin this process to its CPU")?;
        Ok(Pinning {
            bench_cpu,
            server_cpu,
        })
    }

    /// Where each side runs, for the report.
    pub fn describe(&self) -> String {
        format!(
            "pinned: the load generator on CPU {}, the server under test on CPU {}",
            self.bench_cpu, self.server_cpu
        )
    }
}

/// `command`, to run `program` on `cpu` only (`None`: wherever the scheduler puts it).
pub fn on_cpu(command: &mut Command, cpu: Option<usize>, program: &std::ffi::OsStr) {
    if let Some(cpu) = cpu {
        command.arg("taskset").arg("-c").arg(cpu.to_string());
    }
    command.arg(program);
}
