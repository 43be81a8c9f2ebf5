//! The bots' accounts, all made before anything is measured, and kept across runs with
//! `--accounts FILE`.
//!
//! Without a file every run signs up fresh accounts under random names (`bench-<random>-<n>`).
//! With one, the bots are `bench-<n>` and the file (JSON lines: a `{"server"}` header, then one
//! `{"username","token"}` per account) holds their session tokens for that one server. A stored
//! token is reused when `GET /api/account` still accepts it (checked a few at a time); only a
//! missing or refused one costs the server a password hash: a sign-up, or a login when the name
//! is already taken (every bot shares one password). The file is then written back whole (a
//! temp file in the same directory, mode 0600 since tokens are secrets, renamed over it). It is
//! bounded ([`MAX_ENTRIES`] accounts, [`MAX_LINE`] bytes a line), and anything malformed in it
//! is an error that names the line, never a panic.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, anyhow, bail};
use quibble_client::Api;
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::concurrency::bounded;

/// The password of every bot (they are throwaway accounts).
const PASSWORD: &str = "quibble-bench-password";
/// Most accounts a file holds.
pub const MAX_ENTRIES: usize = 100_000;
/// Longest line of the file, in bytes (names and tokens are far shorter).
const MAX_LINE: usize = 1024;
/// Stored tokens checked at once (`GET /api/account` costs the server next to nothing).
const CHECKS_AT_ONCE: usize = 16;
/// Sign-ups and logins in flight at once (each costs the server an argon2id hash).
const SIGNUPS_AT_ONCE: usize = 4;

/// A bot's account, signed in.
#[derive(Debug, Clone)]
pub struct Login {
    pub username: String,
    pub token: String,
}

/// Where the accounts of a run came from, and how long getting them took.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct AccountsSummary {
    /// Stored tokens the server still accepted.
    pub reused: u64,
    /// New accounts (a sign-up each).
    pub signed_up: u64,
    /// Existing accounts without a usable token (a login each).
    pub logged_in: u64,
    /// Seconds spent getting them all, before anything was measured.
    pub setup_s: f64,
}

impl AccountsSummary {
    /// One line for the text reports.
    pub fn text(&self) -> String {
        format!(
            "accounts: {} reused, {} signed up, {} logged in ({:.1} s, before the measurement)",
            self.reused, self.signed_up, self.logged_in, self.setup_s
        )
    }
}

/// The file's first line.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    server: String,
}

/// Every later line.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    username: String,
    token: String,
}

/// `count` signed-in accounts for `api`'s server, reusing and updating `file` if given.
pub async fn provide(
    api: &Api,
    file: Option<&Path>,
    count: usize,
) -> anyhow::Result<(Vec<Login>, AccountsSummary)> {
    let started = Instant::now();
    let Some(file) = file else {
        let tag = format!("{:08x}", rand::rng().random::<u32>());
        let names = (0..count).map(|n| format!("bench-{tag}-{n}")).collect();
        let (logins, mut summary) = sign_in(api, names).await?;
        summary.setup_s = started.elapsed().as_secs_f64();
        return Ok((logins, summary));
    };
    if count > MAX_ENTRIES {
        bail!("this run needs {count} accounts; an accounts file holds at most {MAX_ENTRIES}");
    }
    let server = api.server().base().as_str().to_owned();
    let mut stored = load(file, &server)?;
    // Found out now rather than after the sign-ups, whose tokens would then be lost.
    if !directory_of(file).is_dir() {
        bail!("the directory of {} does not exist", file.display());
    }
    let names: Vec<String> = (0..count).map(|n| format!("bench-{n}")).collect();
    let known = stored.len() + names.iter().filter(|n| !stored.contains_key(*n)).count();
    if known > MAX_ENTRIES {
        bail!(
            "{} would hold {known} accounts, more than {MAX_ENTRIES}: use another file",
            file.display()
        );
    }

    let checks = names
        .iter()
        .map(|name| {
            let api = api.clone();
            let name = name.clone();
            let token = stored.get(&name).cloned();
            async move {
                let Some(token) = token else {
                    return Ok(None);
                };
                match api.account(&token).await {
                    Ok(user) if user.username == name => Ok(Some(token)),
                    Ok(_) => Ok(None),
                    Err(e) if e.status() == Some(401) => Ok(None),
                    Err(e) => Err(anyhow!(e))
                        .with_context(|| format!("cannot check the stored token of {name}")),
                }
            }
        })
        .collect();
    let valid = bounded(CHECKS_AT_ONCE, checks).await?;
    let missing: Vec<String> = names
        .iter()
        .zip(&valid)
        .filter(|(_, token)| token.is_none())
        .map(|(name, _)| name.clone())
        .collect();
    let (fresh, mut summary) = sign_in(api, missing).await?;
    summary.reused = valid.iter().flatten().count() as u64;
    if !fresh.is_empty() {
        for login in &fresh {
            stored.insert(login.username.clone(), login.token.clone());
        }
        save(file, &server, &stored)?;
    }
    let mut fresh = fresh.into_iter();
    let logins = names
        .into_iter()
        .zip(valid)
        .map(|(username, token)| match token {
            Some(token) => Ok(Login { username, token }),
            None => fresh.next().context("an account was not signed in"),
        })
        .collect::<anyhow::Result<Vec<Login>>>()?;
    summary.setup_s = started.elapsed().as_secs_f64();
    Ok((logins, summary))
}

/// Sign `names` up, logging in instead for a name that is taken; the logins in order.
async fn sign_in(api: &Api, names: Vec<String>) -> anyhow::Result<(Vec<Login>, AccountsSummary)> {
    let tasks = names
        .into_iter()
        .map(|username| {
            let api = api.clone();
            async move {
                let (login, new) = match api.signup(&username, PASSWORD).await {
                    Ok(login) => (login, true),
                    Err(e) if e.code() == Some("name_taken") => {
                        let login = api
                            .login(&username, PASSWORD)
                            .await
                            .with_context(|| format!("cannot log the bot {username} in"))?;
                        (login, false)
                    }
                    Err(e) => {
                        return Err(anyhow!(e))
                            .with_context(|| format!("cannot sign up the bot {username}"));
                    }
                };
                let token = login.token;
                Ok((Login { username, token }, new))
            }
        })
        .collect();
    let results = bounded(SIGNUPS_AT_ONCE, tasks).await?;
    let signed_up = results.iter().filter(|(_, new)| *new).count() as u64;
    let summary = AccountsSummary {
        signed_up,
        logged_in: results.len() as u64 - signed_up,
        ..AccountsSummary::default()
    };
    Ok((
        results.into_iter().map(|(login, _)| login).collect(),
        summary,
    ))
}

/// The tokens stored in `file` for `server` (none if the file does not exist or is empty).
fn load(file: &Path, server: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let opened = match std::fs::File::open(file) {
        Ok(opened) => opened,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot open {}", file.display())),
    };
    let limit = (MAX_ENTRIES + 1) * (MAX_LINE + 1);
    let mut bytes = Vec::new();
    opened
        .take(limit as u64 + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {}", file.display()))?;
    if bytes.len() > limit {
        bail!("{} is larger than an accounts file can be", file.display());
    }
    let text =
        String::from_utf8(bytes).map_err(|_| anyhow!("{} is not UTF-8 text", file.display()))?;
    parse(&text, server).with_context(|| format!("{} is not a valid accounts file", file.display()))
}

/// The tokens of an accounts file's text, which must be for `server`.
fn parse(text: &str, server: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let mut tokens = BTreeMap::new();
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let Some((index, first)) = lines.next() else {
        return Ok(tokens);
    };
    let header: Header = serde_json::from_str(first).with_context(|| {
        format!(
            "line {}: expected {{\"server\": URL}} (the server the tokens are for)",
            index + 1
        )
    })?;
    if header.server != server {
        bail!(
            "it holds accounts of {}, not of {server}: use one file per server",
            header.server
        );
    }
    for (index, line) in lines {
        let number = index + 1;
        if line.len() > MAX_LINE {
            bail!("line {number} is longer than {MAX_LINE} bytes");
        }
        let entry: Entry = serde_json::from_str(line)
            .with_context(|| format!("line {number}: expected {{\"username\", \"token\"}}"))?;
        if entry.username.is_empty() || entry.token.is_empty() {
            bail!("line {number}: an empty username or token");
        }
        if tokens.len() == MAX_ENTRIES {
            bail!("more than {MAX_ENTRIES} accounts");
        }
        if tokens.insert(entry.username.clone(), entry.token).is_some() {
            bail!("line {number}: {} appears twice", entry.username);
        }
    }
    Ok(tokens)
}

/// The text of an accounts file.
fn render(server: &str, tokens: &BTreeMap<String, String>) -> anyhow::Result<String> {
    let mut text = serde_json::to_string(&Header {
        server: server.to_owned(),
    })?;
    text.push('\n');
    for (username, token) in tokens {
        let entry = Entry {
            username: username.clone(),
            token: token.clone(),
        };
        text.push_str(&serde_json::to_string(&entry)?);
        text.push('\n');
    }
    Ok(text)
}

/// Replace `file` with `tokens`, atomically: a temp file (mode 0600) in the same directory,
/// flushed to disk, then renamed over it.
fn save(file: &Path, server: &str, tokens: &BTreeMap<String, String>) -> anyhow::Result<()> {
    let text = render(server, tokens)?;
    let dir = directory_of(file);
    let write = || -> anyhow::Result<()> {
        // tempfile creates it with mode 0600 and removes it if we stop before the rename.
        let mut temp = tempfile::NamedTempFile::new_in(dir)?;
        temp.write_all(text.as_bytes())?;
        temp.as_file().sync_all()?;
        temp.persist(file)?;
        Ok(())
    };
    write().with_context(|| format!("cannot write {}", file.display()))
}

/// The directory `file` is in (`.` for a bare file name).
fn directory_of(file: &Path) -> &Path {
    match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVER: &str = "http://127.0.0.1:4433/";

    #[test]
    fn a_file_round_trips() {
        let tokens = BTreeMap::from([
            ("bench-0".to_owned(), "tok0".to_owned()),
            ("bench-1".to_owned(), "tok\"1".to_owned()),
        ]);
        let text = render(SERVER, &tokens).unwrap();
        assert_eq!(parse(&text, SERVER).unwrap(), tokens);
        assert!(parse("", SERVER).unwrap().is_empty());
    }

    #[test]
    fn bad_files_are_errors_that_name_the_problem() {
        let header = format!("{{\"server\":\"{SERVER}\"}}\n");
        let error = |text: &str| format!("{:#}", parse(text, SERVER).unwrap_err());
        assert!(error("not json\n").contains("line 1"));
        assert!(error("{\"server\":\"http://other:1/\"}\n").contains("not of"));
        let garbled = format!("{header}{{\"username\":\"a\",\"token\":\"t\"}}\n{{\"user\n");
        assert!(error(&garbled).contains("line 3"), "{}", error(&garbled));
        let twice = format!(
            "{header}{{\"username\":\"a\",\"token\":\"t\"}}\n{{\"username\":\"a\",\"token\":\"u\"}}\n"
        );
        assert!(error(&twice).contains("appears twice"));
        let empty = format!("{header}{{\"username\":\"\",\"token\":\"t\"}}\n");
        assert!(error(&empty).contains("empty"));
        let long = format!("{header}{}\n", "x".repeat(MAX_LINE + 1));
        assert!(error(&long).contains("longer than"));
    }

    #[test]
    fn saving_replaces_the_file_with_mode_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("accounts.jsonl");
        std::fs::write(&file, "old").unwrap();
        let tokens = BTreeMap::from([("bench-0".to_owned(), "tok".to_owned())]);
        save(&file, SERVER, &tokens).unwrap();
        assert_eq!(load(&file, SERVER).unwrap(), tokens);
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
