//! What the server spends during a run's measured window (`chat --server-pid`): its CPU time
//! (user + system, from `/proc/PID/stat`, clock ticks converted with `sysconf(_SC_CLK_TCK)`)
//! and its resident memory (through [`ServerProcess`]), read once when the first measured
//! message is sent and once when the last thing owed has arrived, and turned into CPU-µs per
//! delivery and per acknowledged message, utilisation of one core and RSS per connection.
//! The nodes of a fleet (several `--server-pid`) are read together: their sums.
//! A reading that fails (the server exited, no /proc) leaves the figures out and says why.

use std::time::Instant;

use anyhow::{Context, bail};
use serde::Serialize;

use crate::server_memory::ServerProcess;

/// The server's CPU time and memory at one moment.
#[derive(Debug, Clone, Copy)]
pub struct Reading {
    at: Instant,
    cpu_us: u64,
    rss_kib: u64,
}

impl Reading {
    /// Read `server` now.
    pub fn take(server: ServerProcess) -> anyhow::Result<Reading> {
        Reading::take_all(&[server])
    }

    /// Read `servers` now: their CPU times and RSS summed.
    pub fn take_all(servers: &[ServerProcess]) -> anyhow::Result<Reading> {
        let (mut cpu_us_sum, mut rss_kib) = (0u64, 0u64);
        for server in servers {
            cpu_us_sum = cpu_us_sum.saturating_add(cpu_us(server.pid())?);
            rss_kib = rss_kib.saturating_add(server.rss_kib()?);
        }
        Ok(Reading {
            at: Instant::now(),
            cpu_us: cpu_us_sum,
            rss_kib,
        })
    }
}

/// The server's cost over one run's measured window (present with `--server-pid`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServerCost {
    pub pid: u32,
    /// With several processes (a fleet's nodes), all of them, `pid` first: every figure is
    /// their sum. Left out for one.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pids: Vec<u32>,
    /// Seconds between the two readings.
    pub window_s: Option<f64>,
    /// Server CPU time (user + system) over the window, µs.
    pub cpu_us: Option<u64>,
    /// `cpu_us` / measured deliveries (first arrivals of measured messages, the author's own
    /// copy included: messages × room size).
    pub cpu_us_per_delivery: Option<f64>,
    /// `cpu_us` / acknowledged measured messages.
    pub cpu_us_per_ack: Option<f64>,
    /// `cpu_us` over the window's length, in % of one core.
    pub cpu_percent_of_core: Option<f64>,
    /// VmRSS at the start and end of the window, KiB.
    pub rss_start_kib: Option<u64>,
    pub rss_end_kib: Option<u64>,
    /// `rss_end_kib` (the whole server) / the run's connections, bytes.
    pub rss_per_connection_bytes: Option<u64>,
    /// Why the figures are missing.
    pub error: Option<String>,
}

/// What the window's figures are divided by.
#[derive(Debug, Clone, Copy)]
pub struct Counts {
    pub deliveries: u64,
    pub acks: u64,
    pub connections: u64,
}

impl ServerCost {
    /// The cost between `start` and `end` (either failed: the figures are missing and the
    /// error says why).
    pub fn between(
        pid: u32,
        start: anyhow::Result<Reading>,
        end: anyhow::Result<Reading>,
        counts: Counts,
    ) -> ServerCost {
        let (start, end) = match (start, end) {
            (Ok(start), Ok(end)) => (start, end),
            (Err(e), _) | (_, Err(e)) => return ServerCost::missing(pid, format!("{e:#}")),
        };
        let cpu_us = end.cpu_us.saturating_sub(start.cpu_us);
        let window_s = end.at.saturating_duration_since(start.at).as_secs_f64();
        let per = |n: u64| (n > 0).then(|| cpu_us as f64 / n as f64);
        ServerCost {
            pid,
            pids: Vec::new(),
            window_s: Some(window_s),
            cpu_us: Some(cpu_us),
            cpu_us_per_delivery: per(counts.deliveries),
            cpu_us_per_ack: per(counts.acks),
            cpu_percent_of_core: (window_s > 0.0).then(|| cpu_us as f64 / window_s / 1e4),
            rss_start_kib: Some(start.rss_kib),
            rss_end_kib: Some(end.rss_kib),
            rss_per_connection_bytes: (counts.connections > 0)
                .then(|| end.rss_kib.saturating_mul(1024) / counts.connections),
            error: None,
        }
    }

    /// These figures as those of all `processes` (read with [`Reading::take_all`]): with
    /// several, they are listed.
    pub fn of_all(self, processes: &[ServerProcess]) -> ServerCost {
        let pids = if processes.len() > 1 {
            processes.iter().map(ServerProcess::pid).collect()
        } else {
            Vec::new()
        };
        ServerCost { pids, ..self }
    }

    /// No figures, for `error`.
    pub fn missing(pid: u32, error: String) -> ServerCost {
        ServerCost {
            pid,
            pids: Vec::new(),
            window_s: None,
            cpu_us: None,
            cpu_us_per_delivery: None,
            cpu_us_per_ack: None,
            cpu_percent_of_core: None,
            rss_start_kib: None,
            rss_end_kib: None,
            rss_per_connection_bytes: None,
            error: Some(error),
        }
    }
}

/// Watch process `pid`, checking now that its CPU time and memory can be read (Linux only).
pub fn watch(pid: u32) -> anyhow::Result<ServerProcess> {
    if !cfg!(target_os = "linux") {
        bail!("--server-pid reads Linux's /proc: not available on this system");
    }
    let server = ServerProcess::new(pid)?;
    Reading::take(server)?;
    Ok(server)
}

/// User + system CPU time of process `pid` so far, µs.
fn cpu_us(pid: u32) -> anyhow::Result<u64> {
    if !cfg!(target_os = "linux") {
        bail!("server CPU time is read from Linux's /proc/PID/stat: not available on this system");
    }
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {path} (has the server exited?)"))?;
    let ticks = cpu_ticks(&stat).with_context(|| format!("unexpected contents of {path}"))?;
    let per_second = rustix::param::clock_ticks_per_second();
    if per_second == 0 {
        bail!("the system reports 0 clock ticks per second");
    }
    Ok(u64::try_from(u128::from(ticks) * 1_000_000 / u128::from(per_second)).unwrap_or(u64::MAX))
}

/// utime + stime (fields 14 and 15) of a `/proc/PID/stat` line, in clock ticks. The command
/// name (field 2) is in parentheses and may hold spaces or parentheses: fields are counted
/// from the last `)`.
fn cpu_ticks(stat: &str) -> anyhow::Result<u64> {
    let Some((_, rest)) = stat.rsplit_once(')') else {
        bail!("no command name in parentheses");
    };
    // `rest` starts at field 3 (state): utime is its 12th field, stime its 13th.
    let mut fields = rest.split_whitespace().skip(11);
    let mut next = |name: &str| -> anyhow::Result<u64> {
        let field = fields.next().with_context(|| format!("no {name} field"))?;
        field
            .parse()
            .with_context(|| format!("{name} is not a number: {field:?}"))
    };
    let utime = next("utime")?;
    let stime = next("stime")?;
    Ok(utime.saturating_add(stime))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_utime_and_stime() {
        let stat = "4242 (quib ble) (x)) S 1 4242 4242 0 -1 4194560 700 0 0 0 \
                    1234 567 0 0 20 0 9 0 100 2000000 500 18446744073709551615\n";
        assert_eq!(cpu_ticks(stat).unwrap(), 1234 + 567);
        assert!(cpu_ticks("4242 quibble S 1").is_err());
        assert!(cpu_ticks("4242 (quibble) S 1 2 3").is_err());
        assert!(cpu_ticks("4242 (q) S 1 1 1 0 -1 0 0 0 0 0 lots 5 0").is_err());
    }

    #[test]
    fn reads_this_process_and_refuses_a_missing_one() {
        let me = ServerProcess::new(std::process::id()).unwrap();
        let start = Reading::take(me).unwrap();
        // Burn some CPU so that the clock advances at least one tick.
        let mut x = 0u64;
        while start.at.elapsed().as_millis() < 60 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let end = Reading::take(me).unwrap();
        let counts = Counts {
            deliveries: 100,
            acks: 10,
            connections: 4,
        };
        let cost = ServerCost::between(me.pid(), Ok(start), Ok(end), counts);
        let cpu = cost.cpu_us.unwrap();
        assert!(cpu > 0, "{cost:?}");
        assert_eq!(cost.cpu_us_per_delivery, Some(cpu as f64 / 100.0));
        assert_eq!(cost.cpu_us_per_ack, Some(cpu as f64 / 10.0));
        let percent = cost.cpu_percent_of_core.unwrap();
        assert!(percent > 0.0 && percent.is_finite(), "{cost:?}");
        assert_eq!(cost.rss_per_connection_bytes, Some(end.rss_kib * 1024 / 4));
        assert!(cpu_us(u32::MAX).is_err());
        assert!(watch(u32::MAX).is_err());
        assert!(watch(me.pid()).is_ok());
        let gone = ServerCost::between(me.pid(), Ok(start), cpu_us(u32::MAX).map(|_| end), counts);
        let parent = ServerProcess::new(std::os::unix::process::parent_id()).unwrap();
        let one = Reading::take(me).unwrap();
        let both = Reading::take_all(&[me, parent]).unwrap();
        assert!(
            both.cpu_us >= one.cpu_us && both.rss_kib > one.rss_kib,
            "{both:?} {one:?}"
        );
        let fleet = cost.clone().of_all(&[me, parent]);
        assert_eq!(fleet.pids, [me.pid(), parent.pid()]);
        assert_eq!(cost.clone().of_all(&[me]).pids, Vec::<u32>::new());
        assert!(gone.cpu_us.is_none());
        assert!(gone.error.unwrap().contains("has the server exited"));
    }
}
