//! The server's resident memory, read from `/proc/PID/status` (`VmRSS`), so the bench and the
//! server must run on the same machine. Only Linux has this file; elsewhere the reading fails
//! with a clear error.

use anyhow::{Context, bail};

/// A process whose memory the bench reads.
#[derive(Debug, Clone, Copy)]
pub struct ServerProcess {
    pid: u32,
}

impl ServerProcess {
    /// Watch process `pid`, checking now that its memory can be read.
    pub fn new(pid: u32) -> anyhow::Result<ServerProcess> {
        let process = ServerProcess { pid };
        process.rss_kib()?;
        Ok(process)
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Its resident set size now, in KiB.
    pub fn rss_kib(&self) -> anyhow::Result<u64> {
        let path = format!("/proc/{}/status", self.pid);
        let status = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {path} (is the server's pid right?)"))?;
        vm_rss_kib(&status).with_context(|| format!("no VmRSS line in {path}"))
    }
}

/// The `VmRSS:   1234 kB` line of a status file, in KiB.
fn vm_rss_kib(status: &str) -> anyhow::Result<u64> {
    let Some(line) = status.lines().find_map(|l| l.strip_prefix("VmRSS:")) else {
        bail!("no VmRSS line");
    };
    let number = line.trim().trim_end_matches("kB").trim();
    number
        .parse()
        .with_context(|| format!("VmRSS is not a number of kB: {line:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_status_line() {
        let status = "Name:\tquibble\nVmPeak:\t  99999 kB\nVmRSS:\t   12345 kB\nThreads:\t4\n";
        assert_eq!(vm_rss_kib(status).unwrap(), 12345);
        assert!(vm_rss_kib("Name:\tx\n").is_err());
        assert!(vm_rss_kib("VmRSS:\tlots kB\n").is_err());
    }

    #[test]
    fn reads_this_process() {
        let me = ServerProcess::new(std::process::id()).unwrap();
        assert!(me.rss_kib().unwrap() > 0);
        assert!(ServerProcess::new(u32::MAX).is_err());
    }
}
