//! Layered configuration (SPEC §6): the built-in `config/default.toml`, then the file given with `--config`, then
//! `SLUICE_<SECTION>__<KEY>` environment variables (and `DATABASE_URL`). Invalid configuration fails fast with the
//! key and the place the bad value came from.

use crate::parse::{DelimitedProfile, Profile};
use figment::providers::{Env, Format, Toml};
use figment::Figment;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The defaults compiled into the binary.
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

/// A secret string that never prints.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "\"***\"" })
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub data_dir: PathBuf,
    pub database: DatabaseSettings,
    pub admin: AdminSettings,
    pub pipeline: PipelineSettings,
    pub delivery: DeliverySettings,
    pub supervision: SupervisionSettings,
    #[serde(default)]
    pub sources: Vec<SourceSettings>,
    #[serde(default)]
    pub sinks: Vec<SinkSettings>,
}

/// The supervision tree's limits (SPEC §2): restart intensity, shutdown and the stuck-message deadline.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SupervisionSettings {
    /// More than this many restarts within `restart_period` and a supervisor gives up and escalates.
    pub max_restarts: u32,
    #[serde(with = "humantime_serde")]
    pub restart_period: Duration,
    /// How long each actor gets to stop on shutdown (delivery: to finish the attempts in flight).
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// An actor busy with one message for longer than this is restarted.
    #[serde(with = "humantime_serde")]
    pub stuck_after: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    /// Empty: the embedded cluster under `data_dir/pg`.
    pub url: Secret,
    pub pool_size: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSettings {
    pub listen: SocketAddr,
    pub token: Secret,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineSettings {
    pub shards: usize,
    pub parser_workers: usize,
    pub chunk_bytes: usize,
    pub writer_batch: usize,
    /// EventLogWriters, each with its own connection: shards' batches are written this many at a time.
    pub writers: usize,
    pub edges: EdgeSettings,
}

/// Capacities of the data edges' mailboxes: the bound that makes a fast stage wait for a slow one.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EdgeSettings {
    pub watcher_to_parser: usize,
    pub parser_to_dedupe: usize,
    pub dedupe_to_writer: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliverySettings {
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    pub claim_batch: usize,
    /// While this process ingests a snapshot, delivery waits for it to end, for at most this long at a time.
    #[serde(with = "humantime_serde")]
    pub yield_to_ingest: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pending {
    /// Only the newest waiting file is processed; older ones are recorded `superseded`.
    Latest,
    /// Every waiting file is processed, oldest first.
    All,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProfileKind {
    Eclrs,
    Delimited,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSettings {
    pub name: String,
    pub profile: ProfileKind,
    pub inbox: PathBuf,
    #[serde(default)]
    pub archive: PathBuf,
    #[serde(default = "default_pending")]
    pub pending: Pending,
    #[serde(default = "default_settle", with = "humantime_serde")]
    pub settle: Duration,
    /// How often the inbox is listed, in case a filesystem event was lost.
    #[serde(default = "default_rescan", with = "humantime_serde")]
    pub rescan: Duration,
    #[serde(default)]
    pub emit_removed: bool,
    // Delimited profile only.
    #[serde(default)]
    pub delimiter: Option<String>,
    #[serde(default)]
    pub quote: Option<String>,
    #[serde(default)]
    pub key_columns: Vec<String>,
    #[serde(default)]
    pub required_columns: Vec<String>,
    #[serde(default)]
    pub hash_exclude: Vec<String>,
    #[serde(default)]
    pub order_column: Option<String>,
}

fn default_pending() -> Pending {
    Pending::Latest
}
fn default_settle() -> Duration {
    Duration::from_secs(5)
}
fn default_rescan() -> Duration {
    Duration::from_secs(2)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SinkKind {
    Webhook,
    Commcare,
    File,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkSettings {
    pub name: String,
    pub kind: SinkKind,
    #[serde(default)]
    pub url: String,
    /// Value of the `Authorization` header sent to a webhook.
    #[serde(default)]
    pub authorization: Secret,
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    #[serde(default)]
    pub rate_limit: u32,
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Retry backoff: full jitter over `backoff_base · 2^(attempt-1)`, capped at `backoff_cap`.
    #[serde(default = "default_backoff_base", with = "humantime_serde")]
    pub backoff_base: Duration,
    #[serde(default = "default_backoff_cap", with = "humantime_serde")]
    pub backoff_cap: Duration,
    /// Consecutive connection errors, timeouts or 5xx answers that open the sink's circuit.
    #[serde(default = "default_circuit_threshold")]
    pub circuit_threshold: u32,
    /// 401/403/404/422 answers within `pause_window` that pause the sink.
    #[serde(default = "default_pause_threshold")]
    pub pause_threshold: u32,
    #[serde(default = "default_pause_window", with = "humantime_serde")]
    pub pause_window: Duration,
    /// File sink: output directory.
    #[serde(default)]
    pub dir: PathBuf,
    // CommCare sink.
    #[serde(default)]
    pub base_url: String,
    #[serde(default)]
    pub api_user: String,
    #[serde(default)]
    pub api_key: Secret,
    #[serde(default)]
    pub statewide_domain: String,
    #[serde(default)]
    pub counties: BTreeMap<String, County>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct County {
    pub domain: String,
    #[serde(default)]
    pub owner_id: String,
    #[serde(default = "yes")]
    pub participating: bool,
}

fn default_concurrency() -> usize {
    16
}
fn default_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_max_attempts() -> u32 {
    20
}
fn default_backoff_base() -> Duration {
    Duration::from_secs(1)
}
fn default_backoff_cap() -> Duration {
    Duration::from_secs(600)
}
fn default_circuit_threshold() -> u32 {
    5
}
fn default_pause_threshold() -> u32 {
    5
}
fn default_pause_window() -> Duration {
    Duration::from_secs(60)
}
fn yes() -> bool {
    true
}

/// A configuration problem, with the key and where its value came from.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid configuration: {0}")]
    Parse(String),
    #[error("invalid configuration: `{key}` {problem} (value from {origin})")]
    Invalid {
        key: String,
        problem: String,
        origin: String,
    },
}

/// Where configuration comes from, in order of precedence (lowest first).
#[derive(Debug, Clone, Default)]
pub struct ConfigSources {
    pub file: Option<PathBuf>,
    /// Extra TOML merged after the file and before the environment (used by `sluice demo` and tests).
    pub overrides: Option<String>,
    /// Whether the process environment is read.
    pub env: bool,
}

impl Settings {
    /// Loads and validates the configuration.
    pub fn load(sources: &ConfigSources) -> Result<Settings, ConfigError> {
        let figment = figment(sources)?;
        let mut settings: Settings = figment
            .extract()
            .map_err(|e| ConfigError::Parse(describe_figment_error(e)))?;
        settings.validate(&figment)?;
        if settings.sinks.is_empty() {
            settings
                .sinks
                .push(SinkSettings::file_default(&settings.data_dir));
        }
        Ok(settings)
    }

    /// Settings from the built-in defaults alone (plus optional TOML overrides), ignoring the environment.
    pub fn with_overrides(toml: &str) -> Result<Settings, ConfigError> {
        Settings::load(&ConfigSources {
            file: None,
            overrides: Some(toml.to_string()),
            env: false,
        })
    }

    fn validate(&self, figment: &Figment) -> Result<(), ConfigError> {
        let invalid = |key: &str, problem: String| ConfigError::Invalid {
            key: key.to_string(),
            problem,
            origin: origin(figment, key),
        };
        if self.database.pool_size == 0 {
            return Err(invalid("database.pool_size", "must be at least 1".into()));
        }
        let p = &self.pipeline;
        for (key, v) in [
            ("pipeline.shards", p.shards),
            ("pipeline.parser_workers", p.parser_workers),
            ("pipeline.writer_batch", p.writer_batch),
            ("pipeline.writers", p.writers),
            (
                "pipeline.edges.watcher_to_parser",
                p.edges.watcher_to_parser,
            ),
            ("pipeline.edges.parser_to_dedupe", p.edges.parser_to_dedupe),
            ("pipeline.edges.dedupe_to_writer", p.edges.dedupe_to_writer),
            ("delivery.claim_batch", self.delivery.claim_batch),
        ] {
            if v == 0 {
                return Err(invalid(key, "must be at least 1".into()));
            }
        }
        if p.chunk_bytes < 64 * 1024 {
            return Err(invalid(
                "pipeline.chunk_bytes",
                "must be at least 65536".into(),
            ));
        }
        let mut names = std::collections::HashSet::new();
        for (i, s) in self.sources.iter().enumerate() {
            let key = |k: &str| format!("sources[{i}].{k}");
            if !valid_name(&s.name) {
                return Err(invalid(&key("name"), "must be 1-64 of [a-z0-9_-]".into()));
            }
            if !names.insert(s.name.clone()) {
                return Err(invalid(&key("name"), format!("repeats `{}`", s.name)));
            }
            if s.profile == ProfileKind::Delimited {
                if s.key_columns.is_empty() {
                    return Err(invalid(
                        &key("key_columns"),
                        "is required for a delimited source".into(),
                    ));
                }
                single_byte(s.delimiter.as_deref(), b'|')
                    .map_err(|p| invalid(&key("delimiter"), p))?;
                single_byte(s.quote.as_deref(), b'"').map_err(|p| invalid(&key("quote"), p))?;
            }
        }
        let mut sink_names = std::collections::HashSet::new();
        for (i, s) in self.sinks.iter().enumerate() {
            let key = |k: &str| format!("sinks[{i}].{k}");
            if !valid_name(&s.name) {
                return Err(invalid(&key("name"), "must be 1-64 of [a-z0-9_-]".into()));
            }
            if !sink_names.insert(s.name.clone()) {
                return Err(invalid(&key("name"), format!("repeats `{}`", s.name)));
            }
            if s.concurrency == 0 {
                return Err(invalid(&key("concurrency"), "must be at least 1".into()));
            }
            if s.max_attempts == 0 {
                return Err(invalid(&key("max_attempts"), "must be at least 1".into()));
            }
            match s.kind {
                SinkKind::Webhook if !s.url.starts_with("http") => {
                    return Err(invalid(&key("url"), "must be an http(s) URL".into()))
                }
                SinkKind::Commcare if !s.base_url.starts_with("http") => {
                    return Err(invalid(&key("base_url"), "must be an http(s) URL".into()))
                }
                SinkKind::Commcare if s.statewide_domain.is_empty() => {
                    return Err(invalid(
                        &key("statewide_domain"),
                        "is required for a commcare sink".into(),
                    ))
                }
                SinkKind::File if s.dir.as_os_str().is_empty() => {
                    return Err(invalid(&key("dir"), "is required for a file sink".into()))
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The embedded cluster's directory.
    pub fn pg_dir(&self) -> PathBuf {
        self.data_dir.join("pg")
    }
}

impl SourceSettings {
    /// The format profile this source reads.
    pub fn profile(&self) -> Profile {
        match self.profile {
            ProfileKind::Eclrs => Profile::Eclrs,
            ProfileKind::Delimited => Profile::Delimited(DelimitedProfile {
                delimiter: single_byte(self.delimiter.as_deref(), b'|').unwrap_or(b'|'),
                quote: single_byte(self.quote.as_deref(), b'"').unwrap_or(b'"'),
                key_columns: self.key_columns.clone(),
                required_columns: self.required_columns.clone(),
                hash_exclude: self.hash_exclude.clone(),
                order_column: self.order_column.clone(),
            }),
        }
    }

    /// Where files that cannot be read are moved.
    pub fn failed_dir(&self) -> PathBuf {
        self.inbox.join("failed")
    }
}

impl SinkSettings {
    /// The default sink when none is configured: JSON lines under `data_dir/out`.
    pub fn file_default(data_dir: &Path) -> SinkSettings {
        SinkSettings {
            name: "file".into(),
            kind: SinkKind::File,
            url: String::new(),
            authorization: Secret::default(),
            concurrency: 1,
            rate_limit: 0,
            timeout: default_timeout(),
            max_attempts: default_max_attempts(),
            backoff_base: default_backoff_base(),
            backoff_cap: default_backoff_cap(),
            circuit_threshold: default_circuit_threshold(),
            pause_threshold: default_pause_threshold(),
            pause_window: default_pause_window(),
            dir: data_dir.join("out"),
            base_url: String::new(),
            api_user: String::new(),
            api_key: Secret::default(),
            statewide_domain: String::new(),
            counties: BTreeMap::new(),
        }
    }
}

fn figment(sources: &ConfigSources) -> Result<Figment, ConfigError> {
    let mut f = Figment::from(Named("built-in defaults", Toml::string(DEFAULT_TOML)));
    if let Some(path) = &sources.file {
        if !path.is_file() {
            return Err(ConfigError::Parse(format!(
                "config file `{}` does not exist or is not a file",
                path.display()
            )));
        }
        f = f.merge(Toml::file_exact(path));
    }
    if let Some(toml) = &sources.overrides {
        f = f.merge(Named("overrides", Toml::string(toml)));
    }
    if sources.env {
        // SLUICE_LOG and SLUICE_LOG_FORMAT set logging, SLUICE_FAULTS test faults: not configuration.
        let config_vars = Env::prefixed("SLUICE_")
            .ignore(&["LOG", "LOG_FORMAT", "FAULTS"])
            .split("__");
        f = f.merge(config_vars).merge(
            Env::raw()
                .only(&["DATABASE_URL"])
                .map(|_| "database.url".into()),
        );
    }
    Ok(f)
}

/// A provider under a name of our choosing, so that errors say where a value came from.
struct Named<P>(&'static str, P);

impl<P: figment::Provider> figment::Provider for Named<P> {
    fn metadata(&self) -> figment::Metadata {
        figment::Metadata::named(self.0)
    }
    fn data(
        &self,
    ) -> Result<figment::value::Map<figment::Profile, figment::value::Dict>, figment::Error> {
        self.1.data()
    }
}

fn describe_figment_error(e: figment::Error) -> String {
    e.into_iter()
        .map(|e| {
            let key = if e.path.is_empty() {
                String::from("(top level)")
            } else {
                e.path.join(".")
            };
            let origin = e
                .metadata
                .as_ref()
                .map(|m| match &m.source {
                    Some(src) => format!("{} ({src})", m.name),
                    None => m.name.to_string(),
                })
                .unwrap_or_else(|| "unknown source".into());
            format!("`{key}`: {} (value from {origin})", e.kind)
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn origin(figment: &Figment, key: &str) -> String {
    // `sources[0].name` → `sources.0.name`, figment's path form.
    let path = key.replace('[', ".").replace(']', "");
    match figment.find_metadata(&path) {
        Some(m) => match &m.source {
            Some(src) => format!("{} ({src})", m.name),
            None => m.name.to_string(),
        },
        None => "built-in defaults".into(),
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

fn single_byte(s: Option<&str>, default: u8) -> Result<u8, String> {
    match s {
        None => Ok(default),
        Some(s) if s.len() == 1 => Ok(s.as_bytes()[0]),
        Some("\\t") => Ok(b'\t'),
        Some(_) => Err("must be a single ASCII character".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_load_and_add_a_file_sink() {
        let s = Settings::with_overrides("").unwrap();
        assert_eq!(s.sources.len(), 1);
        assert_eq!(s.sources[0].pending, Pending::Latest);
        assert_eq!(s.sources[0].settle, Duration::from_secs(5));
        assert_eq!(s.sinks.len(), 1);
        assert_eq!(s.sinks[0].kind, SinkKind::File);
        assert_eq!(s.admin.listen.port(), 9187);
    }

    #[test]
    fn a_bad_value_names_its_key_and_origin() {
        let err = Settings::with_overrides("[database]\npool_size = \"many\"\n").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("database.pool_size"), "{msg}");
        assert!(msg.contains("overrides"), "{msg}");
    }

    #[test]
    fn a_semantic_error_names_its_key_and_origin() {
        let err = Settings::with_overrides("[pipeline]\nshards = 0\n").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("pipeline.shards"), "{msg}");
        assert!(msg.contains("overrides"), "{msg}");
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = Settings::with_overrides("[database]\npoolsize = 3\n").unwrap_err();
        assert!(err.to_string().contains("poolsize"), "{err}");
    }

    #[test]
    fn sources_in_a_file_replace_the_default_source() {
        let s = Settings::with_overrides(
            "[[sources]]\nname = \"other\"\nprofile = \"delimited\"\ninbox = \"/tmp/x\"\nkey_columns = [\"ID\"]\n",
        )
        .unwrap();
        assert_eq!(s.sources.len(), 1);
        assert_eq!(s.sources[0].name, "other");
    }

    #[test]
    fn secrets_do_not_print() {
        let s = Settings::with_overrides("[admin]\ntoken = \"hunter2\"\n").unwrap();
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
