//! `quibble config check`'s output: the effective settings as a TOML file, every key in
//! declaration order, each line ending with where its value came from (`# default`, `# file`,
//! `# env`, `# flag`, and the value before clamping when a bound changed it). A setting that
//! is not set is a comment. Passwords in the PostgreSQL and Redis URLs are replaced by `***`.
//! Apart from those, the output is a config file that gives the same settings when read back.

use std::fmt::Write;

use super::{Loaded, Settings};

/// Settings whose values may hold a password.
const SECRET_KEYS: &[&str] = &["postgres", "redis"];

/// What stands in for a password.
const REDACTED: &str = "***";

/// The effective configuration as TOML, with sources as trailing comments.
pub fn render(loaded: &Loaded) -> String {
    let mut out = String::new();
    let file = match &loaded.file {
        Some(path) => path.display().to_string(),
        None => "none".to_owned(),
    };
    let _ = writeln!(
        out,
        "# quibble {}: effective configuration\n\
         # precedence: flag > environment (QUIBBLE_...) > config file > default\n\
         # config file: {file}",
        crate::build_info::VERSION
    );
    let values = match toml::Table::try_from(&loaded.settings) {
        Ok(table) => table,
        Err(e) => {
            let _ = writeln!(out, "# cannot write the settings as TOML: {e}");
            return out;
        }
    };
    let lines: Vec<(String, String)> = Settings::keys()
        .into_iter()
        .map(|key| {
            let mut note = loaded
                .source(&key)
                .map_or_else(|| "default".to_owned(), |s| s.to_string());
            if let Some(before) = loaded.clamped_from(&key) {
                let _ = write!(note, ", clamped from {before}");
            }
            let line = match values.get(&key) {
                Some(value) if SECRET_KEYS.contains(&key.as_str()) => {
                    let shown = match value.as_str() {
                        Some(text) => toml::Value::String(redact_passwords(text)).to_string(),
                        None => value.to_string(),
                    };
                    format!("{key} = {shown}")
                }
                Some(value) => format!("{key} = {value}"),
                None => format!("# {key} is not set"),
            };
            (line, note)
        })
        .collect();
    let width = lines
        .iter()
        .map(|(line, _)| line.len())
        .filter(|len| *len <= 48)
        .max()
        .unwrap_or(0);
    for (line, note) in lines {
        let _ = writeln!(out, "{line:width$}  # {note}");
    }
    out
}

/// `text` with every password replaced by [`REDACTED`]: the one in a URL's user info
/// (`scheme://user:PASSWORD@host`) and any `password=VALUE` (PostgreSQL's key-value form and
/// URL query), for each of several comma-separated URLs.
pub fn redact_passwords(text: &str) -> String {
    let urls: Vec<String> = text.split(',').map(redact_one).collect();
    urls.join(",")
}

fn redact_one(text: &str) -> String {
    let mut out = match text.find("://") {
        Some(scheme_end) => {
            let rest_start = scheme_end + 3;
            let rest = &text[rest_start..];
            let authority_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            let authority = &rest[..authority_len];
            match authority.rfind('@') {
                Some(at) => {
                    let userinfo = &authority[..at];
                    let user = match userinfo.find(':') {
                        Some(colon) => format!("{}:{REDACTED}", &userinfo[..colon]),
                        None => userinfo.to_owned(),
                    };
                    format!("{}{user}{}", &text[..rest_start], &text[rest_start + at..])
                }
                None => text.to_owned(),
            }
        }
        None => text.to_owned(),
    };
    let mut from = 0;
    while let Some(found) = out[from..].to_ascii_lowercase().find("password=") {
        let value_start = from + found + "password=".len();
        let value_len = out[value_start..]
            .find(|c: char| c == '&' || c == '#' || c.is_whitespace())
            .unwrap_or(out.len() - value_start);
        out.replace_range(value_start..value_start + value_len, REDACTED);
        from = value_start + REDACTED.len();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::redact_passwords;

    #[test]
    fn passwords_are_redacted_and_the_rest_kept() {
        let cases = [
            (
                "postgres://quibble:s3cr:et@db:5432/q",
                "postgres://quibble:***@db:5432/q",
            ),
            ("postgres://quibble@db/q", "postgres://quibble@db/q"),
            ("redis://:hunter2@cache:6379", "redis://:***@cache:6379"),
            (
                "redis://a:x@r1:1,redis://r2:2,redis://b:y@r3:3",
                "redis://a:***@r1:1,redis://r2:2,redis://b:***@r3:3",
            ),
            (
                "host=db user=q password=abc dbname=q",
                "host=db user=q password=*** dbname=q",
            ),
            (
                "postgres://db/q?user=q&password=abc&sslmode=disable",
                "postgres://db/q?user=q&password=***&sslmode=disable",
            ),
            ("redis://cache:6379/0", "redis://cache:6379/0"),
        ];
        for (given, shown) in cases {
            assert_eq!(redact_passwords(given), shown, "{given}");
        }
    }
}
