//! The open-file limit of this process. Every socket the bench holds is an open file here (a
//! TCP socket per WebSocket connection, a UDP socket per `--sessions-per-socket` WebTransport
//! sessions), so before opening many it raises the soft `RLIMIT_NOFILE` to the hard limit and
//! checks that the sockets fit,
//! leaving a reserve for the runtime, the HTTP client and stdio.

use anyhow::{Context, bail};
use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// Descriptors kept out of the connections' share.
const RESERVE: u64 = 64;

/// Raise the soft open-file limit to the hard one and check that `sockets` fit; returns the
/// soft limit now in force (`None`: unlimited).
pub fn make_room_for(sockets: u32) -> anyhow::Result<Option<u64>> {
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        setrlimit(
            Resource::Nofile,
            Rlimit {
                current: limit.maximum,
                maximum: limit.maximum,
            },
        )
        .context("cannot raise the open-file limit to the hard limit")?;
    }
    let soft = getrlimit(Resource::Nofile).current;
    let needed = u64::from(sockets) + RESERVE;
    if let Some(soft) = soft
        && soft < needed
    {
        bail!(
            "{sockets} sockets need about {needed} open files, but this process may \
             open {soft} (the hard limit; see `ulimit -Hn`)"
        );
    }
    Ok(soft)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raises_the_soft_limit_and_refuses_what_cannot_fit() {
        let soft = make_room_for(1).unwrap();
        assert_eq!(soft, getrlimit(Resource::Nofile).maximum);
        if let Some(hard) = soft
            && let Ok(too_many) = u32::try_from(hard)
        {
            let err = make_room_for(too_many).unwrap_err().to_string();
            assert!(err.contains("open files"), "{err}");
        }
    }
}
