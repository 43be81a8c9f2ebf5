//! What this build of the server is: its version, the git commit it was built from and the
//! day it was built, as `quibble --version` and `quibble config check` print them. The commit
//! and the day come from `server/build.rs` ("unknown" when built outside a git checkout).

/// `0.1.0 (commit abc1234, built 2026-11-30)`.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("QUIBBLE_COMMIT"),
    ", built ",
    env!("QUIBBLE_BUILD_DATE"),
    ")"
);
