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
                    let redact = if key == "redis" {
                        redact_passwords
                    } else {
                        redact_password
                    };
                    let shown = match value.as_str() {
                        Some(text) => toml::Value::String(redact(text)).to_string(),
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
/// (`scheme://user:PASSWORD@host`) and any `password=VALUE` (PostgreSQL's key-value form, where
/// spaces may surround `=` and a value may be quoted, and a URL's query), for each of several
/// comma-separated URLs (the `redis` setting's form).
pub fn redact_passwords(text: &str) -> String {
    let urls: Vec<String> = text.split(',').map(redact_one).collect();
    urls.join(",")
}

/// [`redact_passwords`] for a setting that holds ONE URL or key-value string (`postgres`): a
/// comma there may be part of the password, so the text is not split.
pub fn redact_password(text: &str) -> String {
    redact_one(text)
}

fn redact_one(text: &str) -> String {
    let mut out = match text.find("://") {
        Some(scheme_end) => {
            let rest_start = scheme_end + 3;
            let rest = &text[rest_start..];
            // The PostgreSQL client takes everything up to the first `@` as the user info, so
            // a password may hold `/`, `?` or `,`; one that holds `@` runs to the last `@`
            // before the host's end. Redact the larger of the two readings.
            let at = rest.find('@').map(|first| {
                let after = &rest[first + 1..];
                let host_end = first + 1 + after.find(['/', '?', '#']).unwrap_or(after.len());
                rest[..host_end].rfind('@').unwrap_or(first)
            });
            match at {
                Some(at) => {
                    let userinfo = &rest[..at];
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
    while let Some(found) = out[from..].to_ascii_lowercase().find("password") {
        let key_end = from + found + "password".len();
        let after_key = &out[key_end..];
        let spaces = after_key.len() - after_key.trim_start().len();
        if !after_key[spaces..].starts_with('=') {
            from = key_end;
            continue;
        }
        let after_eq = &out[key_end + spaces + 1..];
        let value_start = key_end + spaces + 1 + (after_eq.len() - after_eq.trim_start().len());
        let value = &out[value_start..];
        let value_len = if value.starts_with('\'') {
            // A quoted value runs to the next quote that no backslash escapes.
            let mut escaped = false;
            value
                .char_indices()
                .skip(1)
                .find(|&(_, c)| {
                    let end = c == '\'' && !escaped;
                    escaped = c == '\\' && !escaped;
                    end
                })
                .map_or(value.len(), |(i, _)| i + 1)
        } else {
            value
                .find(|c: char| c == '&' || c == '#' || c.is_whitespace())
                .unwrap_or(value.len())
        };
        out.replace_range(value_start..value_start + value_len, REDACTED);
        from = value_start + REDACTED.len();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{redact_password, redact_passwords};

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

    /// Forms the PostgreSQL client accepts whose password the first version showed (in part):
    /// a comma, `/` or `@` in a URL's password, spaces around `=` and quoted values.
    #[test]
    fn postgres_passwords_in_every_accepted_form_are_redacted() {
        let cases = [
            (
                "postgres://quibble:pa,ss@db/q",
                "postgres://quibble:***@db/q",
            ),
            (
                "postgres://quibble:pa/ss@db/q",
                "postgres://quibble:***@db/q",
            ),
            (
                "postgres://quibble:p@ss@db/q?sslmode=disable",
                "postgres://quibble:***@db/q?sslmode=disable",
            ),
            (
                "host=db user=q password = abc dbname=q",
                "host=db user=q password = *** dbname=q",
            ),
            (
                "host=db password='my s3cret, quoted' dbname=q",
                "host=db password=*** dbname=q",
            ),
            (
                r"host=db password='it\'s secret' dbname=q",
                "host=db password=*** dbname=q",
            ),
            (
                "postgres://quibble@db:5432/q",
                "postgres://quibble@db:5432/q",
            ),
            ("host=db user=password_user", "host=db user=password_user"),
        ];
        for (given, shown) in cases {
            assert_eq!(redact_password(given), shown, "{given}");
        }
    }
}
