//! The open-file budget. At start the soft `RLIMIT_NOFILE` is raised to the hard limit, and the
//! connection budget is sized below it: each TCP connection is a descriptor, and a reserve stays
//! free for the store, the listening sockets and the runtime, and for refusing
//! connections cleanly (a refusal needs a descriptor to accept and answer on). With the budget
//! below the limit the server answers 503 at its limit instead of failing `accept`.

use std::io;

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// Descriptors kept out of the connection budget.
pub const RESERVE: u64 = 64;

/// Raise the soft open-file limit to the hard one; returns the soft limit now in force
/// (`None`: unlimited).
pub fn raise_to_hard() -> io::Result<Option<u64>> {
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        setrlimit(
            Resource::Nofile,
            Rlimit {
                current: limit.maximum,
                maximum: limit.maximum,
            },
        )?;
    }
    Ok(soft_limit())
}

/// The soft open-file limit in force (`None`: unlimited).
pub fn soft_limit() -> Option<u64> {
    getrlimit(Resource::Nofile).current
}

/// Connections the open-file limit leaves room for.
pub fn connection_budget(soft_limit: Option<u64>) -> usize {
    match soft_limit {
        None => usize::MAX,
        Some(n) => usize::try_from(n.saturating_sub(RESERVE)).unwrap_or(usize::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reserve_comes_off_the_limit() {
        assert_eq!(connection_budget(Some(20_000)), 20_000 - RESERVE as usize);
        assert_eq!(connection_budget(Some(10)), 0);
        assert_eq!(connection_budget(None), usize::MAX);
    }

    #[test]
    fn raising_leaves_soft_equal_to_hard() {
        let soft = raise_to_hard().unwrap();
        assert_eq!(soft, getrlimit(Resource::Nofile).maximum);
    }
}
