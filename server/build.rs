//! Records the git commit and the build day for `quibble --version` (src/build_info.rs).
//!
//! Reruns only when the checkout's HEAD or the branch it points to moves (a commit, a
//! checkout), not on every build: the server crate is not rebuilt for nothing. Without git,
//! or outside a checkout, the commit is "unknown". `SOURCE_DATE_EPOCH` (reproducible builds)
//! sets the day when given.

use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

fn main() {
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    let commit = git(&["rev-parse", "--short=7", "HEAD"]);
    // HEAD itself, and the ref it names ("ref: refs/heads/main"), loose or packed.
    for path in [git(&["rev-parse", "--git-path", "HEAD"])]
        .into_iter()
        .chain([git(&["symbolic-ref", "-q", "HEAD"])
            .and_then(|r| git(&["rev-parse", "--git-path", &r]))])
        .chain([git(&["rev-parse", "--git-path", "packed-refs"])])
        .flatten()
    {
        // A path that does not exist would make cargo rerun this script on every build.
        if std::path::Path::new(&path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    // Without any git path to watch, still rerun only when this script changes.
    println!("cargo:rerun-if-changed=build.rs");
    println!(
        "cargo:rustc-env=QUIBBLE_COMMIT={}",
        commit.as_deref().unwrap_or("unknown")
    );
    println!("cargo:rustc-env=QUIBBLE_BUILD_DATE={}", build_day());
}

/// `git ARGS` run in this crate's directory, its trimmed output if it succeeded. Paths it
/// prints relative to that directory stay valid for cargo, which runs scripts there too.
fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (!text.is_empty()).then_some(text)
}

/// The build's day, YYYY-MM-DD (UTC).
fn build_day() -> String {
    let secs = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        });
    let (y, m, d) = civil_from_days(secs / 86_400);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, for days on or after the epoch).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}
