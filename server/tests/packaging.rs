//! packaging/: the systemd unit passes `systemd-analyze verify` (on a copy whose ExecStart is
//! the built binary, since verify checks that it exists), keeps its hardening, and the example
//! config passes `quibble config check` with the unit's environment; the sysusers file makes
//! the quibble user (`systemd-sysusers --root`, in a temp dir). systemd-analyze and
//! systemd-sysusers come with Debian's `systemd` package (scripts/setup-services installs it).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use quibble_test_support::wait_with_limit;

const LIMIT: Duration = Duration::from_secs(30);

fn packaging() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging")
}

fn unit_text() -> String {
    std::fs::read_to_string(packaging().join("quibble.service")).expect("packaging/quibble.service")
}

/// `program args`, within [`LIMIT`]; a clear failure when the program is missing.
fn run(program: &str, args: &[&str]) -> Output {
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run {program} ({e}): install it with scripts/setup-services (Debian's systemd package)")
        });
    wait_with_limit(child, LIMIT, program)
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The unit's text with ExecStart on the binary this build made, in `dir` as quibble.service.
fn unit_for_this_build(dir: &Path, unit: &str) -> PathBuf {
    let binary = env!("CARGO_BIN_EXE_quibble");
    assert!(unit.contains("ExecStart=/usr/local/bin/quibble "), "{unit}");
    let unit = unit.replace(
        "ExecStart=/usr/local/bin/quibble ",
        &format!("ExecStart={binary} "),
    );
    let path = dir.join("quibble.service");
    std::fs::write(&path, unit).expect("write the unit");
    path
}

/// What `systemd-analyze verify` says about the unit file at `path` (it exits 0 on unknown keys
/// and bad values and only warns: any line about the unit is a finding).
fn verify_findings(path: &Path) -> Vec<String> {
    let output = run(
        "systemd-analyze",
        &["verify", path.to_str().expect("UTF-8 path")],
    );
    let said = text(&output);
    let mut findings: Vec<String> = said
        .lines()
        .filter(|line| line.contains("quibble"))
        .map(str::to_owned)
        .collect();
    if !output.status.success() {
        findings.push(format!("exit {:?}: {said}", output.status.code()));
    }
    findings
}

#[test]
fn the_unit_passes_systemd_analyze_verify() {
    let dir = tempfile::tempdir().expect("temp dir");
    let unit = unit_text();
    let findings = verify_findings(&unit_for_this_build(dir.path(), &unit));
    assert!(findings.is_empty(), "systemd-analyze verify: {findings:#?}");
    // The check sees mistakes: the same unit with a misspelt key and a bad value.
    let broken = unit.replace(
        "NoNewPrivileges=yes",
        "NoNewPrivileges=maybe\nProtectSytem=strict",
    );
    let findings = verify_findings(&unit_for_this_build(dir.path(), &broken));
    assert!(findings.len() >= 2, "{findings:#?}");
}

#[test]
fn the_unit_is_hardened_and_runs_as_its_own_user() {
    let unit = unit_text();
    let directives: Vec<&str> = unit
        .lines()
        .map(str::trim)
        .filter(|line| !line.starts_with('#') && line.contains('='))
        .collect();
    for wanted in [
        "User=quibble",
        "Group=quibble",
        "StateDirectory=quibble",
        "ConfigurationDirectory=quibble",
        "Environment=QUIBBLE_DATA_DIR=/var/lib/quibble",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "PrivateDevices=yes",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "CapabilityBoundingSet=",
    ] {
        assert!(directives.contains(&wanted), "the unit lacks {wanted}");
    }
    let nofile: u64 = directives
        .iter()
        .find_map(|d| d.strip_prefix("LimitNOFILE="))
        .and_then(|n| n.parse().ok())
        .expect("LimitNOFILE=N");
    let max_connections = quibble_server::config::Settings::default().max_connections as u64;
    assert!(
        nofile > max_connections + 64,
        "LimitNOFILE={nofile} leaves no room for max_connections={max_connections} and the reserve"
    );
    // systemd's own rating of the sandbox (0 is the best, 10 the worst; "OK" is below 4).
    let dir = tempfile::tempdir().expect("temp dir");
    let path = unit_for_this_build(dir.path(), &unit);
    let output = run(
        "systemd-analyze",
        &[
            "security",
            "--offline=true",
            path.to_str().expect("UTF-8 path"),
        ],
    );
    let said = text(&output);
    let exposure: f64 = said
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for quibble.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in: {said}"));
    assert!(exposure <= 2.0, "exposure {exposure}: {said}");
}

#[test]
fn the_example_config_passes_config_check_with_the_units_environment() {
    let unit = unit_text();
    let mut command = Command::new(env!("CARGO_BIN_EXE_quibble"));
    for (key, _) in std::env::vars() {
        if key.starts_with("QUIBBLE_") {
            command.env_remove(key);
        }
    }
    for assignment in unit
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Environment="))
    {
        let (key, value) = assignment.split_once('=').expect("Environment=KEY=VALUE");
        command.env(key, value);
    }
    let example = packaging().join("quibble.toml");
    let child = command
        .args(["config", "check", "--config"])
        .arg(&example)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run quibble config check");
    let output = wait_with_limit(child, LIMIT, "quibble config check");
    let said = text(&output);
    assert!(output.status.success(), "{said}");
    let line = |key: &str| {
        said.lines()
            .find(|l| l.starts_with(&format!("{key} = ")))
            .unwrap_or_else(|| panic!("no {key} in:\n{said}"))
    };
    assert!(line("data_dir").contains("\"/var/lib/quibble\""), "{said}");
    assert!(line("data_dir").ends_with("# env"), "{said}");
    assert!(line("listen").ends_with("# file"), "{said}");
    assert!(line("metrics_listen").contains("127.0.0.1"), "{said}");
}

#[test]
fn the_sysusers_file_makes_the_quibble_user() {
    let root = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir(root.path().join("etc")).expect("etc");
    let file = packaging().join("quibble.sysusers");
    let root_arg = format!("--root={}", root.path().display());
    let output = run(
        "systemd-sysusers",
        &[&root_arg, file.to_str().expect("UTF-8 path")],
    );
    assert!(output.status.success(), "{}", text(&output));
    let passwd = std::fs::read_to_string(root.path().join("etc/passwd")).expect("passwd");
    let user = passwd
        .lines()
        .find(|l| l.starts_with("quibble:"))
        .unwrap_or_else(|| panic!("no quibble user in {passwd}"));
    assert!(
        user.ends_with(":/var/lib/quibble:/usr/sbin/nologin"),
        "{user}"
    );
    let group = std::fs::read_to_string(root.path().join("etc/group")).expect("group");
    assert!(group.lines().any(|l| l.starts_with("quibble:")), "{group}");
}
