//! Where each setting comes from: merges the command line, the environment, the config file
//! and the defaults into one [`Settings`], in that order of precedence (a flag wins over its
//! `QUIBBLE_…` variable, which wins over the file's key, which wins over the default).
//!
//! clap has already resolved flag > variable > default and says which it used
//! ([`clap::parser::ValueSource`]); the file fills in what clap took from its defaults. The
//! merge goes through TOML tables keyed by setting, so it is written once for every setting:
//! each source's typed [`Settings`] is serialized to a table, the winning value of each key is
//! taken from its source's table, and the merged table is read back as [`Settings`]. The
//! source of each key is kept for `quibble config check`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use clap::ArgMatches;
use clap::parser::ValueSource;
use serde::Serialize;

use super::{Config, ConfigError, Settings};

/// Where a setting's value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Default,
    File,
    Env,
    Flag,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Source::Default => "default",
            Source::File => "file",
            Source::Env => "env",
            Source::Flag => "flag",
        })
    }
}

/// The effective settings (clamped, derived defaults filled in) and where each came from.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub settings: Settings,
    /// The config file read, if any.
    pub file: Option<PathBuf>,
    /// Per key: its source, and the value before clamping where that changed it.
    origins: BTreeMap<String, Origin>,
}

#[derive(Debug, Clone)]
struct Origin {
    source: Source,
    clamped_from: Option<toml::Value>,
}

impl Loaded {
    /// Merge `cli` (parsed from `matches`, which tell flag from variable from default) with
    /// the config file at `file`.
    pub fn load(
        cli: Settings,
        matches: &ArgMatches,
        file: Option<&Path>,
    ) -> Result<Loaded, ConfigError> {
        let file_table = match file {
            Some(path) => read_file(path)?,
            None => toml::Table::new(),
        };
        let cli_table = to_table(&cli)?;
        let mut merged = toml::Table::new();
        let mut sources = BTreeMap::new();
        // Ids the matches know (asking about any other panics in debug builds).
        let known: Vec<String> = matches.ids().map(|id| id.to_string()).collect();
        for key in Settings::keys() {
            let from_clap = if known.contains(&key) {
                matches.value_source(&key)
            } else {
                None
            };
            let (source, value) = match from_clap {
                Some(ValueSource::CommandLine) => (Source::Flag, cli_table.get(&key)),
                Some(ValueSource::EnvVariable) => (Source::Env, cli_table.get(&key)),
                _ => match file_table.get(&key) {
                    Some(value) => (Source::File, Some(value)),
                    None => (Source::Default, cli_table.get(&key)),
                },
            };
            if let Some(value) = value {
                merged.insert(key.clone(), value.clone());
            }
            sources.insert(key, source);
        }
        let mut settings: Settings = merged.clone().try_into().map_err(ConfigError::internal)?;
        settings.clamp();
        let clamped = to_table(&settings)?;
        let origins = sources
            .into_iter()
            .map(|(key, source)| {
                let before = merged.get(&key);
                let clamped_from = match (before, clamped.get(&key)) {
                    (Some(before), Some(after)) if before != after => Some(before.clone()),
                    _ => None,
                };
                (
                    key,
                    Origin {
                        source,
                        clamped_from,
                    },
                )
            })
            .collect();
        Ok(Loaded {
            settings,
            file: file.map(Path::to_owned),
            origins,
        })
    }

    /// The settings of the config file at `path`, over the defaults (no command line).
    pub fn from_file(path: &Path) -> Result<Loaded, ConfigError> {
        Loaded::load(Settings::default(), &ArgMatches::default(), Some(path))
    }

    /// Where `key`'s value came from.
    pub fn source(&self, key: &str) -> Option<Source> {
        self.origins.get(key).map(|o| o.source)
    }

    /// `key`'s value before it was brought within its bounds, if that changed it.
    pub fn clamped_from(&self, key: &str) -> Option<&toml::Value> {
        self.origins.get(key).and_then(|o| o.clamped_from.as_ref())
    }

    /// The server's configuration.
    pub fn config(&self) -> Result<Config, ConfigError> {
        self.settings.clone().into_config()
    }
}

/// The keys the file sets, checked against the settings' types (an error names the file, the
/// line and the key). The older `[tls]` table becomes `tls_cert` and `tls_key`.
fn read_file(path: &Path) -> Result<toml::Table, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let parse_error = |source| ConfigError::Parse {
        path: path.to_owned(),
        source: Box::new(source),
    };
    // Typed first: toml's errors then point at the offending key.
    let typed: Settings = toml::from_str(&text).map_err(parse_error)?;
    let mut table: toml::Table = toml::from_str(&text).map_err(parse_error)?;
    if table.remove("tls").is_some()
        && let Some(tls) = typed.tls.clone()
    {
        if table.contains_key("tls_cert") || table.contains_key("tls_key") {
            return Err(ConfigError::TlsTwice);
        }
        let typed_paths = Settings {
            tls_cert: Some(tls.cert),
            tls_key: Some(tls.key),
            ..Settings::default()
        };
        let paths = to_table(&typed_paths)?;
        for key in ["tls_cert", "tls_key"] {
            if let Some(value) = paths.get(key) {
                table.insert(key.to_owned(), value.clone());
            }
        }
    }
    // Values as the settings' types write them (e.g. integers in a float-free form).
    let canonical = to_table(&typed)?;
    for (key, value) in table.iter_mut() {
        if let Some(typed_value) = canonical.get(key) {
            *value = typed_value.clone();
        }
    }
    Ok(table)
}

/// `value` as a TOML table (settings that are not set are left out).
fn to_table(value: &impl Serialize) -> Result<toml::Table, ConfigError> {
    toml::Table::try_from(value).map_err(|e| ConfigError::Unrepresentable(e.to_string()))
}
