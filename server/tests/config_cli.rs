//! The configuration as an operator meets it, through the real `quibble` binary: every setting
//! in `serve --help` with its variable; flag > environment > file > default, key by key, shown
//! by `config check` with each value's source; an invalid file or combination exits 2 naming
//! the key, for `config check` and `serve` alike; `config check` opens no store and binds no
//! port; `serve` takes its settings from the environment; `--version` names the build.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use quibble_server::config::Settings;
use quibble_test_support::{parse_listening_line, reap_within, send_signal, wait_with_limit};

const LIMIT: Duration = Duration::from_secs(30);

/// `quibble args` with `env` and no other `QUIBBLE_…` variable.
fn quibble(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_quibble"));
    for (key, _) in std::env::vars() {
        if key.starts_with("QUIBBLE_") {
            command.env_remove(key);
        }
    }
    command
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let child = quibble(args, env).spawn().expect("run quibble");
    wait_with_limit(child, LIMIT, "quibble")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The line of `key` in `config check`'s output.
fn line<'a>(text: &'a str, key: &str) -> &'a str {
    text.lines()
        .find(|l| l.starts_with(&format!("{key} = ")) || l.starts_with(&format!("# {key} ")))
        .unwrap_or_else(|| panic!("no line for {key} in:\n{text}"))
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write the config file");
    path.to_str().expect("UTF-8 path").to_owned()
}

#[test]
fn version_names_the_commit_and_the_build_day() {
    let output = run(&["--version"], &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    let rest = text
        .trim()
        .strip_prefix(&format!("quibble {} (commit ", env!("CARGO_PKG_VERSION")))
        .unwrap_or_else(|| panic!("{text}"));
    let (commit, rest) = rest
        .split_once(", built ")
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        commit == "unknown" || (commit.len() == 7 && commit.chars().all(|c| c.is_ascii_hexdigit())),
        "{text}"
    );
    let day = rest.strip_suffix(')').unwrap_or_else(|| panic!("{text}"));
    let parts: Vec<&str> = day.split('-').collect();
    assert!(
        parts.len() == 3 && parts.iter().all(|p| p.parse::<u32>().is_ok()) && parts[0].len() == 4,
        "{text}"
    );
}

#[test]
fn serve_help_lists_every_setting_with_its_variable() {
    let output = run(&["serve", "--help"], &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    let help = stdout(&output);
    for key in Settings::keys() {
        let flag = format!("--{} ", key.replace('_', "-"));
        let env = format!("[env: QUIBBLE_{}", key.to_uppercase());
        assert!(help.contains(&flag), "{flag} not in serve --help");
        assert!(
            help.contains(&format!("{env}=")) || help.contains(&format!("{env}]")),
            "{env} not in serve --help"
        );
    }
    // The defaults are shown, and a password in the environment is not.
    let output = run(
        &["serve", "--help"],
        &[("QUIBBLE_POSTGRES", "postgres://q:hunter2@db/q")],
    );
    let help = stdout(&output);
    assert!(help.contains("[default: 10000]"), "{help}");
    assert!(!help.contains("hunter2"), "{help}");
}

#[test]
fn flag_beats_environment_beats_file_beats_default_key_by_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    // config check reads the certificate files, so they exist (their content is not checked).
    let cert = write(dir.path(), "cert.pem", "");
    let key = write(dir.path(), "key.pem", "");
    let file = write(
        dir.path(),
        "quibble.toml",
        &format!(
            "message_burst = 5\nroom_burst = 3\nhello_timeout_ms = 7000\n\
             [tls]\ncert = \"{cert}\"\nkey = \"{key}\"\n"
        ),
    );
    let output = run(
        &["config", "check", "--config", &file, "--room-burst", "4"],
        &[
            ("QUIBBLE_MESSAGE_BURST", "6"),
            ("QUIBBLE_ROOM_BURST", "8"),
            ("QUIBBLE_LISTEN", "127.0.0.1:7000,[::1]:7000"),
            ("QUIBBLE_POSTGRES", "postgres://quibble:hunter2@db:5432/q"),
            ("QUIBBLE_HEARTBEAT_MS", "1"),
        ],
    );
    let text = stdout(&output);
    assert!(output.status.success(), "{}{text}", stderr(&output));
    let expect = [
        ("room_burst", "room_burst = 4", "# flag"),
        ("message_burst", "message_burst = 6", "# env"),
        (
            "listen",
            "listen = [\"127.0.0.1:7000\", \"[::1]:7000\"]",
            "# env",
        ),
        ("hello_timeout_ms", "hello_timeout_ms = 7000", "# file"),
        ("tls_cert", &format!("tls_cert = \"{cert}\""), "# file"),
        ("delete_burst", "delete_burst = 60", "# default"),
        (
            "heartbeat_ms",
            "heartbeat_ms = 100",
            "# env, clamped from 1",
        ),
        ("redis", "# redis is not set", "# default"),
    ];
    for (key, start, end) in expect {
        let l = line(&text, key);
        assert!(l.starts_with(start) && l.ends_with(end), "{l:?}\n{text}");
    }
    assert!(!text.contains("hunter2"), "{text}");
    assert!(
        line(&text, "postgres").contains("postgres://quibble:***@db:5432/q"),
        "{text}"
    );
    assert!(text.contains(&format!("# config file: {file}")), "{text}");
    // Every setting has a line, and the output reads back as a config file.
    for key in Settings::keys() {
        line(&text, &key);
    }
    let again = write(dir.path(), "effective.toml", &text);
    let output = run(&["config", "check", "--config", &again], &[]);
    let back = stdout(&output);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        line(&back, "room_burst").starts_with("room_burst = 4"),
        "{back}"
    );
    assert!(line(&back, "room_burst").ends_with("# file"), "{back}");
}

#[test]
fn config_check_opens_no_store_and_binds_no_port() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("address").to_string();
    let output = run(
        &[
            "config",
            "check",
            "--data-dir",
            data.to_str().expect("UTF-8"),
            "--listen",
            &addr,
        ],
        &[],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(!data.exists(), "config check made the data directory");
    // The same settings do start the server's checks: serve cannot bind the taken port.
    let output = run(
        &[
            "serve",
            "--data-dir",
            data.to_str().expect("UTF-8"),
            "--listen",
            &addr,
        ],
        &[],
    );
    assert!(!output.status.success());
    drop(taken);
}

#[test]
fn an_invalid_configuration_exits_2_naming_the_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cases = [
        (
            "max_connections = \"many\"\n",
            vec![],
            vec!["max_connections", "line 1"],
        ),
        (
            "data_dir = \"d\"\nmax_conections = 10\n",
            vec![],
            vec!["max_conections", "line 2"],
        ),
        (
            "",
            vec![("QUIBBLE_REDIS", "redis://r:1")],
            vec!["redis", "postgres"],
        ),
        (
            "trusted_proxies = [\"proxy.example\"]\n",
            vec![],
            vec!["trusted_proxies", "proxy.example"],
        ),
        ("tls_cert = \"c.pem\"\n", vec![], vec!["tls_key"]),
    ];
    for (i, (file_text, env, needles)) in cases.into_iter().enumerate() {
        let file = write(dir.path(), &format!("bad-{i}.toml"), file_text);
        for subcommand in [&["config", "check"][..], &["serve"][..]] {
            let mut args = subcommand.to_vec();
            args.extend(["--config", &file, "--listen", "127.0.0.1:0"]);
            let data = dir.path().join(format!("data-{i}"));
            args.extend(["--data-dir", data.to_str().expect("UTF-8")]);
            let output = run(&args, &env);
            let said = stderr(&output);
            assert_eq!(output.status.code(), Some(2), "{args:?}: {said}");
            for needle in &needles {
                assert!(said.contains(needle), "{args:?}: {needle} not in {said}");
            }
            assert!(stdout(&output).is_empty(), "{args:?}");
            assert!(!data.exists(), "{args:?} made the data directory");
        }
    }
    // config check also reads the certificate files.
    let missing = dir.path().join("missing.pem");
    let missing = missing.to_str().expect("UTF-8");
    let output = run(
        &[
            "config",
            "check",
            "--tls-cert",
            missing,
            "--tls-key",
            missing,
        ],
        &[],
    );
    assert_eq!(output.status.code(), Some(2));
    let said = stderr(&output);
    assert!(
        said.contains("tls_cert") && said.contains(missing),
        "{said}"
    );
    // An environment value that does not parse is clap's usage error (also 2), naming it.
    let output = run(&["config", "check"], &[("QUIBBLE_HASH_QUEUE", "lots")]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("hash-queue"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn serve_takes_its_settings_from_the_environment() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("from-env");
    let file = write(dir.path(), "quibble.toml", "listen = [\"127.0.0.1:1\"]\n");
    let mut child = quibble(
        &["serve", "--config", &file],
        &[
            ("QUIBBLE_LISTEN", "127.0.0.1:0"),
            ("QUIBBLE_DATA_DIR", data.to_str().expect("UTF-8")),
            ("QUIBBLE_LOG_FORMAT", "json"),
        ],
    )
    .spawn()
    .expect("start quibble serve");
    let out = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let first = rx.recv_timeout(LIMIT);
    send_signal(child.id(), "TERM");
    reap_within(&mut child, LIMIT);
    let first = first.expect("quibble serve announces its address");
    let port = parse_listening_line(&first).unwrap_or_else(|| panic!("{first}"));
    assert_ne!(port, 1, "the file's listen won over the environment");
    assert!(
        data.join("admin.sock").exists() || data.is_dir(),
        "no data directory at {data:?}"
    );
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut err);
    }
    let json_lines = err.lines().filter(|l| l.starts_with('{')).count();
    assert!(json_lines > 0, "log_format from the environment: {err}");
}

#[test]
fn admin_takes_the_data_directory_from_the_config_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("from-file");
    let file = write(
        dir.path(),
        "quibble.toml",
        &format!("data_dir = \"{}\"\nmax_connections = 5\n", data.display()),
    );
    // No server there and no store yet: the refusal names the file's directory.
    let output = run(&["admin", "--config", &file, "bans"], &[]);
    let said = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{said}");
    assert!(said.contains("from-file"), "{said}");
    assert!(!said.contains("panicked"), "{said}");
}
