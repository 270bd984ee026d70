//! Settings: defaults < config file < `HERALD_*` environment < flags.
//!
//! `config/default.toml` is compiled in and is the single list of keys: a key
//! that is not there is unknown. Each source is checked on its own before they
//! are merged, so an unknown key or a wrong type is reported with the source it
//! came from (the file's path, the environment variable's name, or the flag).
//! Contradictions between keys are checked on the merged result.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use config::{Config, ConfigBuilder, Environment, File, FileFormat, Map, Source, Value, ValueKind};
use herald_actors::broker::BrokerSettings;
use herald_actors::group::GroupSettings;
use herald_actors::partition::scrub::ScrubBudget;
use herald_actors::partition::{FlushPolicy, PartitionSettings};
use herald_actors::topic_config::TopicConfig;
use serde::{Deserialize, Serialize};

/// The compiled-in defaults: `config/default.toml`.
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

/// Settings that do not come from the defaults: `section.key` → (value,
/// where it came from).
pub type Sources = BTreeMap<String, (String, String)>;

/// Why the settings were refused.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("unknown setting `{key}` in {origin}")]
    UnknownKey { key: String, origin: String },
    #[error("invalid setting in {origin}: {message}")]
    Invalid { origin: String, message: String },
    #[error("cannot read config file {path}: {reason}")]
    Unreadable { path: String, reason: String },
    /// A value out of its range, or keys that contradict each other.
    #[error("invalid settings: {0}")]
    Contradiction(String),
}

/// Every setting of the broker.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub storage: StorageSettings,
    /// The `[log]` section: every topic's default settings.
    pub log: TopicConfig,
    pub groups: GroupSettings,
    pub http: HttpSettings,
    pub logging: LoggingSettings,
    pub extensions: ExtensionSettings,
    pub security: SecuritySettings,
    pub quotas: QuotaSettings,
    pub cluster: ClusterSettings,
}

/// The `[cluster]` section: ZooKeeper and this broker's place in a cluster.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClusterSettings {
    pub zookeeper: String,
    pub broker_id: i32,
    pub advertised_host: String,
    pub rack: String,
    pub zookeeper_session_timeout_ms: u64,
    pub default_replication_factor: u32,
    pub replica_lag_time_max_ms: u64,
    /// The longest a stopping broker waits for the controller to move its
    /// leaderships away before it stops anyway; 0 skips the wait.
    pub controlled_shutdown_timeout_ms: u64,
    /// Partitions of `__consumer_offsets` when it is created.
    pub offsets_topic_partitions: u32,
    /// Its replication factor (at most the live brokers when created).
    pub offsets_topic_replication_factor: u32,
    /// Whom this broker authenticates as (SCRAM-SHA-256) to the others;
    /// empty: no one (a client certificate, or anonymous).
    pub inter_broker_user: String,
    pub inter_broker_password: Secret,
    /// The CA that signed the other brokers' certificates; empty:
    /// `security.tls_client_ca_file`.
    pub inter_broker_tls_ca_file: String,
}

/// A secret setting: `Debug` never shows it.
#[derive(Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(transparent)]
pub struct Secret(pub String);

impl Secret {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "\"<hidden>\"" })
    }
}

impl ClusterSettings {
    /// Whether this broker is part of a cluster.
    pub fn enabled(&self) -> bool {
        !self.zookeeper.is_empty()
    }
}

/// The `[quotas]` section: the default rates of every principal or client id.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct QuotaSettings {
    pub producer_byte_rate: u64,
    pub consumer_byte_rate: u64,
    pub request_rate: u64,
}

impl QuotaSettings {
    /// The defaults as rates (0: no limit).
    pub fn rates(&self) -> crate::security::quota::Rates {
        let limit = |n: u64| (n > 0).then_some(n);
        crate::security::quota::Rates {
            producer_byte_rate: limit(self.producer_byte_rate),
            consumer_byte_rate: limit(self.consumer_byte_rate),
            request_rate: limit(self.request_rate),
        }
    }
}

/// The `[security]` section: TLS, authentication and authorization of the
/// client listener (docs/security.md).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SecuritySettings {
    pub tls_cert_file: String,
    pub tls_key_file: String,
    pub tls_client_ca_file: String,
    pub tls_client_auth: ClientAuth,
    pub authentication: Authentication,
    pub sasl_mechanisms: Vec<String>,
    pub auth_failure_delay_ms: u64,
    pub authorization: bool,
    pub super_users: Vec<String>,
}

impl SecuritySettings {
    /// Whether the client listener speaks TLS.
    pub fn tls(&self) -> bool {
        !self.tls_cert_file.is_empty()
    }
}

/// `security.tls_client_auth`.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    None,
    Requested,
    Required,
}

/// `security.authentication`.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Authentication {
    None,
    Required,
}

/// The `[extensions]` section: which extensions compiled into this binary
/// run (see `crate::server::Builder::extension`).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExtensionSettings {
    pub enabled: Vec<String>,
}

/// The `[http]` section: metrics, health and the admin API.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    pub enabled: bool,
    pub host: String,
    pub port: u16,
    pub metrics_max_label_sets: u32,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    pub host: String,
    pub port: u16,
    pub max_frame_bytes: u32,
    pub max_in_flight: u32,
    pub max_held_requests: u32,
    pub max_connections: u32,
    pub max_connection_bytes: u64,
    pub max_inflight_request_bytes: u64,
    pub max_records_per_request: u32,
    pub handshake_timeout_ms: u64,
    pub frame_timeout_ms: u64,
    pub write_stall_timeout_ms: u64,
    pub shutdown_timeout_ms: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StorageSettings {
    pub data_dir: PathBuf,
    pub flush: FlushPolicy,
    pub flush_interval_ms: u64,
    pub group_commit: bool,
    pub retention_check_interval_ms: u64,
    pub scrub_bytes_per_second: u64,
    pub producer_id_expiration_ms: u64,
    /// The log cleaner's offset map bound, in bytes (24 bytes per key).
    pub cleaner_buffer_bytes: u64,
    pub max_open_segment_files: u32,
    pub arbiters: usize,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Text lines (`human` is the same).
    #[serde(alias = "human")]
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LoggingSettings {
    pub format: LogFormat,
    /// A tracing filter: `error`, `warn`, `info`, `debug`, `trace`, or per
    /// module (`info,herald::frontend=debug`); `RUST_LOG` overrides it.
    pub level: String,
}

/// The values an enumerated setting takes, for error messages.
const CHOICES: &[(&str, &str)] =
    &[("storage.flush", "always, interval or never"), ("logging.format", "text (or human) or json")];

/// Variables named `HERALD_*` that are not settings but are read by the
/// command line (and the test scripts).
const OTHER_VARIABLES: &[&str] = &[
    "HERALD_BROKER",
    "HERALD_TIMEOUT_MS",
    "HERALD_CLIENT_ID",
    "HERALD_USER",
    "HERALD_PASSWORD_FILE",
    "HERALD_BIN",
    "HERALD_HTTP",
];

/// Warnings for `HERALD_*` variables that nothing reads: a mistyped setting
/// (`HERALD_SERVER_PORT` for `HERALD_SERVER__PORT`) would otherwise be ignored
/// without a word. Test-harness variables (`HERALD_FAULT_*`) are left alone.
pub fn unread_environment(vars: impl IntoIterator<Item = (String, String)>) -> Vec<String> {
    vars.into_iter()
        .map(|(name, _)| name)
        .filter(|name| {
            name.starts_with("HERALD_")
                && !name.contains("__")
                && !name.starts_with("HERALD_FAULT_")
                && !OTHER_VARIABLES.contains(&name.as_str())
        })
        .map(|name| {
            format!(
                "environment variable {name} is not read by herald: a setting is HERALD_<SECTION>__<KEY> \
                 with two underscores (e.g. HERALD_SERVER__PORT)"
            )
        })
        .collect()
}

/// One layer of settings and where it came from.
struct Layer {
    origin: String,
    /// For the environment: the variable that set each key.
    key_origins: BTreeMap<String, String>,
    builder: ConfigBuilder<config::builder::DefaultState>,
}

fn defaults() -> ConfigBuilder<config::builder::DefaultState> {
    Config::builder().add_source(File::from_str(DEFAULT_TOML, FileFormat::Toml))
}

/// `HERALD_<SECTION>__<KEY>` variables, as `section.key` → (variable, value).
/// Variables without the double underscore (such as a test's `HERALD_BIN`)
/// are not settings and are left alone.
fn environment_settings(vars: impl IntoIterator<Item = (String, String)>) -> BTreeMap<String, (String, String)> {
    vars.into_iter()
        .filter_map(|(name, value)| {
            let rest = name.strip_prefix("HERALD_")?;
            let (section, key) = rest.split_once("__")?;
            Some((format!("{}.{}", section.to_lowercase(), key.to_lowercase()), (name.clone(), value)))
        })
        .collect()
}

impl Settings {
    /// Loads the settings from the defaults, an optional file, the process's
    /// environment and `flags` (`section.key` → value).
    ///
    /// # Errors
    ///
    /// A [`SettingsError`] naming the key and its source.
    pub fn load(file: Option<&Path>, flags: &[(&str, String)]) -> Result<Settings, SettingsError> {
        Settings::load_from(file, std::env::vars(), flags)
    }

    /// [`Settings::load`] with the settings that do not come from the
    /// defaults, as [`Settings::load_explained`] tells them.
    ///
    /// # Errors
    ///
    /// A [`SettingsError`] naming the key and its source.
    pub fn load_with_sources(
        file: Option<&Path>,
        flags: &[(&str, String)],
    ) -> Result<(Settings, Sources), SettingsError> {
        Settings::load_explained(file, std::env::vars(), flags)
    }

    /// [`Settings::load`] with the environment given explicitly.
    ///
    /// # Errors
    ///
    /// A [`SettingsError`] naming the key and its source.
    pub fn load_from(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        flags: &[(&str, String)],
    ) -> Result<Settings, SettingsError> {
        Settings::load_explained(file, env, flags).map(|(settings, _)| settings)
    }

    /// [`Settings::load_from`], also telling every setting that does not
    /// come from the defaults: `section.key` → (value, where it came from).
    ///
    /// # Errors
    ///
    /// A [`SettingsError`] naming the key and its source.
    pub fn load_explained(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        flags: &[(&str, String)],
    ) -> Result<(Settings, Sources), SettingsError> {
        let mut layers = Vec::new();
        if let Some(path) = file {
            if let Err(err) = std::fs::metadata(path) {
                let reason = if err.kind() == std::io::ErrorKind::NotFound {
                    "no such file".to_string()
                } else {
                    err.to_string()
                };
                return Err(SettingsError::Unreadable { path: path.display().to_string(), reason });
            }
            layers.push(Layer {
                origin: format!("config file {}", path.display()),
                key_origins: BTreeMap::new(),
                builder: Config::builder().add_source(File::from(path).format(FileFormat::Toml).required(true)),
            });
        }
        let env = environment_settings(env);
        if !env.is_empty() {
            let map: Map<String, String> = env.values().map(|(name, value)| (name.clone(), value.clone())).collect();
            layers.push(Layer {
                origin: "the environment".into(),
                key_origins: env
                    .iter()
                    .map(|(key, (name, _))| (key.clone(), format!("environment variable {name}")))
                    .collect(),
                builder: Config::builder().add_source(
                    Environment::with_prefix("HERALD")
                        .prefix_separator("_")
                        .separator("__")
                        .try_parsing(true)
                        .source(Some(map)),
                ),
            });
        }
        if !flags.is_empty() {
            let mut builder = Config::builder();
            let mut key_origins = BTreeMap::new();
            for (key, value) in flags {
                builder = builder.set_override(*key, value.clone()).map_err(|e| SettingsError::Invalid {
                    origin: format!("flag for `{key}`"),
                    message: e.to_string(),
                })?;
                key_origins.insert(key.to_string(), format!("command-line flag for `{key}`"));
            }
            layers.push(Layer { origin: "command-line flags".into(), key_origins, builder });
        }

        let known = flatten_keys(&collect(defaults(), "the defaults")?);
        let mut merged = defaults();
        let mut origins: BTreeMap<String, String> = BTreeMap::new();
        for layer in &layers {
            let config = layer.builder.clone().build().map_err(|e| invalid(&layer.origin, e))?;
            let values = config.collect().map_err(|e| invalid(&layer.origin, e))?;
            for key in flatten_keys(&values) {
                let origin = layer.key_origins.get(&key).cloned().unwrap_or_else(|| layer.origin.clone());
                if !known.contains(&key) {
                    return Err(SettingsError::UnknownKey { key, origin });
                }
                origins.insert(key, origin);
            }
            // Types are checked per layer so that an error names its source.
            let alone = defaults().add_source(config.clone()).build().map_err(|e| invalid(&layer.origin, e))?;
            if let Err(err) = alone.try_deserialize::<Settings>() {
                let message = err.to_string();
                let origin = layer
                    .key_origins
                    .iter()
                    .find(|(key, _)| message.contains(key.as_str()))
                    .map_or_else(|| layer.origin.clone(), |(_, origin)| origin.clone());
                return Err(invalid(&origin, err));
            }
            merged = merged.add_source(config);
        }
        let merged = merged.build().map_err(|e| invalid("the merged settings", e))?;
        let values = flatten_values(&merged.clone().collect().map_err(|e| invalid("the merged settings", e))?);
        let settings: Settings = merged.try_deserialize().map_err(|e| invalid("the merged settings", e))?;
        settings.check()?;
        let explained = origins
            .into_iter()
            .map(|(key, origin)| {
                let value = values.get(&key).cloned().unwrap_or_default();
                (key, (value, origin))
            })
            .collect();
        Ok((settings, explained))
    }

    /// Checks rules that involve more than one key.
    fn check(&self) -> Result<(), SettingsError> {
        let fail = |m: String| Err(SettingsError::Contradiction(m));
        if self.server.max_frame_bytes < 1024 {
            return fail(format!("server.max_frame_bytes must be at least 1024, got {}", self.server.max_frame_bytes));
        }
        if self.server.max_in_flight == 0 {
            return fail("server.max_in_flight must be at least 1".into());
        }
        if self.storage.cleaner_buffer_bytes < 1024 {
            return fail("storage.cleaner_buffer_bytes must be at least 1024".into());
        }
        if self.storage.max_open_segment_files == 0 {
            return fail("storage.max_open_segment_files must be at least 1".into());
        }
        if self.server.max_connections == 0 {
            return fail("server.max_connections must be at least 1".into());
        }
        if self.server.max_held_requests == 0 {
            return fail("server.max_held_requests must be at least 1".into());
        }
        let server = &self.server;
        for (key, bytes) in [
            ("max_connection_bytes", server.max_connection_bytes),
            ("max_inflight_request_bytes", server.max_inflight_request_bytes),
        ] {
            if bytes < u64::from(server.max_frame_bytes) {
                return fail(format!(
                    "server.{key} ({bytes}) must be at least server.max_frame_bytes ({}), \
                     or a frame of that size could never be read",
                    server.max_frame_bytes
                ));
            }
        }
        if server.max_records_per_request == 0 {
            return fail("server.max_records_per_request must be at least 1".into());
        }
        if server.handshake_timeout_ms == 0 || server.frame_timeout_ms == 0 || server.write_stall_timeout_ms == 0 {
            return fail(
                "server.handshake_timeout_ms, server.frame_timeout_ms and server.write_stall_timeout_ms must be at least 1"
                    .into(),
            );
        }
        if self.http.metrics_max_label_sets == 0 {
            return fail("http.metrics_max_label_sets must be at least 1".into());
        }
        if self.http.enabled && self.http.port != 0 && self.http.port == self.server.port {
            return fail(format!(
                "http.port and server.port are both {}: the HTTP listener needs a port of its own",
                self.http.port
            ));
        }
        if self.log.max_message_bytes + 1024 > self.server.max_frame_bytes as u64 {
            return fail(format!(
                "log.max_message_bytes ({}) must be at least 1 KiB below server.max_frame_bytes ({}), \
                 or a produce request of that size could never be sent",
                self.log.max_message_bytes, self.server.max_frame_bytes
            ));
        }
        if self.log.segment_max_bytes < self.log.max_message_bytes {
            return fail(format!(
                "log.segment_max_bytes ({}) must not be smaller than log.max_message_bytes ({})",
                self.log.segment_max_bytes, self.log.max_message_bytes
            ));
        }
        if self.log.segment_max_bytes > i32::MAX as u64 {
            return fail(format!(
                "log.segment_max_bytes must be at most {}, got {}",
                i32::MAX,
                self.log.segment_max_bytes
            ));
        }
        if self.log.segment_ms == 0 || self.log.index_interval_bytes == 0 {
            return fail("log.segment_ms and log.index_interval_bytes must be at least 1".into());
        }
        if self.log.retention_ms == 0 || self.log.retention_ms < -1 {
            return fail(format!("log.retention_ms must be -1 (forever) or positive, got {}", self.log.retention_ms));
        }
        if self.log.retention_bytes == 0 || self.log.retention_bytes < -1 {
            return fail(format!(
                "log.retention_bytes must be -1 (no limit) or positive, got {}",
                self.log.retention_bytes
            ));
        }
        if self.storage.flush == FlushPolicy::Interval && self.storage.flush_interval_ms == 0 {
            return fail("storage.flush = \"interval\" needs storage.flush_interval_ms of at least 1".into());
        }
        let g = &self.groups;
        if g.min_session_timeout_ms == 0
            || g.min_session_timeout_ms > g.default_session_timeout_ms
            || g.default_session_timeout_ms > g.max_session_timeout_ms
        {
            return fail(format!(
                "groups.min_session_timeout_ms ({}) <= groups.default_session_timeout_ms ({}) <= \
                 groups.max_session_timeout_ms ({}) must hold, with the minimum at least 1",
                g.min_session_timeout_ms, g.default_session_timeout_ms, g.max_session_timeout_ms
            ));
        }
        if g.metadata_refresh_ms == 0 {
            return fail("groups.metadata_refresh_ms must be at least 1".into());
        }
        if g.empty_group_retention_ms == 0 || g.empty_group_retention_ms < -1 {
            return fail(format!(
                "groups.empty_group_retention_ms must be -1 (keep groups for ever) or positive, got {}",
                g.empty_group_retention_ms
            ));
        }
        if self.storage.retention_check_interval_ms == 0 {
            return fail("storage.retention_check_interval_ms must be at least 1".into());
        }
        self.check_security()?;
        self.check_cluster()
    }

    fn check_cluster(&self) -> Result<(), SettingsError> {
        let c = &self.cluster;
        if c.enabled() && c.broker_id < 0 {
            return Err(SettingsError::Contradiction(
                "cluster.zookeeper needs cluster.broker_id: a whole number from 0, unique in the cluster".into(),
            ));
        }
        if c.replica_lag_time_max_ms == 0 {
            return Err(SettingsError::Contradiction("cluster.replica_lag_time_max_ms must be at least 1".into()));
        }
        if c.offsets_topic_partitions == 0 || c.offsets_topic_replication_factor == 0 {
            return Err(SettingsError::Contradiction(
                "cluster.offsets_topic_partitions and cluster.offsets_topic_replication_factor must be at least 1"
                    .into(),
            ));
        }
        if c.default_replication_factor == 0 {
            return Err(SettingsError::Contradiction("cluster.default_replication_factor must be at least 1".into()));
        }
        if c.zookeeper_session_timeout_ms == 0 {
            return Err(SettingsError::Contradiction("cluster.zookeeper_session_timeout_ms must be at least 1".into()));
        }
        Ok(())
    }

    fn check_security(&self) -> Result<(), SettingsError> {
        let fail = |m: String| Err(SettingsError::Contradiction(m));
        let s = &self.security;
        if s.tls_cert_file.is_empty() != s.tls_key_file.is_empty() {
            return fail("security.tls_cert_file and security.tls_key_file go together: set both or neither".into());
        }
        if s.tls_client_auth != ClientAuth::None && s.tls_client_ca_file.is_empty() {
            return fail(format!(
                "security.tls_client_auth = \"{}\" needs security.tls_client_ca_file to verify client certificates with",
                if s.tls_client_auth == ClientAuth::Required { "required" } else { "requested" }
            ));
        }
        if !s.tls_client_ca_file.is_empty() && !s.tls() {
            return fail("security.tls_client_ca_file needs TLS: set security.tls_cert_file and tls_key_file".into());
        }
        for mechanism in &s.sasl_mechanisms {
            if mechanism != "SCRAM-SHA-256" {
                return fail(format!(
                    "security.sasl_mechanisms: unknown mechanism `{mechanism}` (this broker offers SCRAM-SHA-256)"
                ));
            }
        }
        if s.authentication == Authentication::Required
            && s.sasl_mechanisms.is_empty()
            && s.tls_client_auth != ClientAuth::Required
        {
            return fail(
                "security.authentication = \"required\" needs a way to authenticate: a SASL mechanism in \
                 security.sasl_mechanisms, or security.tls_client_auth = \"required\""
                    .into(),
            );
        }
        for user in &s.super_users {
            if let Err(err) = crate::security::Principal::parse(user) {
                return fail(format!("security.super_users: {err}"));
            }
        }
        Ok(())
    }

    /// Every topic's default settings.
    pub fn topic_defaults(&self) -> TopicConfig {
        self.log.clone()
    }

    /// What group coordinators need.
    pub fn group_settings(&self) -> GroupSettings {
        self.groups.clone()
    }

    /// What the broker actor needs.
    pub fn broker_settings(&self) -> BrokerSettings {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        BrokerSettings {
            data_dir: self.storage.data_dir.clone(),
            topic_defaults: self.topic_defaults(),
            max_message_ceiling: u64::from(self.server.max_frame_bytes).saturating_sub(1024),
            partition: PartitionSettings {
                flush: self.storage.flush,
                flush_interval_ms: self.storage.flush_interval_ms,
                retention_check_interval_ms: self.storage.retention_check_interval_ms,
                scrub: ScrubBudget::new(self.storage.scrub_bytes_per_second),
                replica_lag_time_max_ms: self.cluster.replica_lag_time_max_ms,
                replicated: self.cluster.enabled(),
                producer_id_expiration_ms: i64::try_from(self.storage.producer_id_expiration_ms).unwrap_or(i64::MAX),
            },
            group_commit: self.storage.group_commit,
            arbiters: if self.storage.arbiters == 0 { cores } else { self.storage.arbiters },
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        // The compiled-in defaults always load; a test guards this.
        Settings::load_from(None, std::iter::empty(), &[])
            .unwrap_or_else(|err| panic!("default.toml is invalid: {err}"))
    }
}

fn invalid(origin: &str, err: config::ConfigError) -> SettingsError {
    SettingsError::Invalid { origin: origin.to_string(), message: plain_message(&err.to_string(), origin) }
}

/// The configuration library's message in the project's words: the key
/// first, what it takes, and what it got; without the library's type names or
/// a second copy of the file name.
fn plain_message(message: &str, origin: &str) -> String {
    let between = |text: &str, start: &str, end: &str| -> Option<String> {
        let from = text.find(start)? + start.len();
        let to = from + text[from..].find(end)?;
        Some(text[from..to].to_string())
    };
    let key = between(message, "for key `", "`");
    if let (Some(key), Some(value)) = (&key, between(message, "does not have variant constructor ", " for key")) {
        let choices = CHOICES.iter().find(|(k, _)| k == key).map_or("one of its documented values", |(_, c)| c);
        return format!("`{key}` must be {choices}, got `{value}`");
    }
    if let (Some(key), Some(got), Some(expected)) =
        (&key, between(message, "invalid type: ", ", expected"), between(message, ", expected ", " for key"))
    {
        let expected = match expected.as_str() {
            "u8" | "u16" | "u32" | "u64" | "usize" => "a whole number of at least 0".to_string(),
            "i16" | "i32" | "i64" => "a whole number".to_string(),
            "a boolean" | "bool" => "true or false".to_string(),
            other => other.to_string(),
        };
        return format!("`{key}` must be {expected}, got {got}");
    }
    // A parse error names the file again: it is already in `origin`.
    let file = origin.strip_prefix("config file ").unwrap_or_default();
    if file.is_empty() {
        return message.to_string();
    }
    // The library names it again on a last line, as a path relative to the
    // working directory: " in ../../tmp/x.toml".
    let name = Path::new(file).file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let mut lines: Vec<&str> = message.trim_end().lines().collect();
    if lines
        .last()
        .is_some_and(|last| last.trim_start().starts_with("in ") && !name.is_empty() && last.ends_with(&name))
    {
        lines.pop();
    }
    lines.join("\n").replace(&format!(" in {file}"), "")
}

fn collect(
    builder: ConfigBuilder<config::builder::DefaultState>,
    origin: &str,
) -> Result<Map<String, Value>, SettingsError> {
    builder.build().and_then(|c| c.collect()).map_err(|e| invalid(origin, e))
}

/// Dotted paths of every leaf in a nested table.
/// Every leaf of `map` as `section.key` → its value, shown.
fn flatten_values(map: &Map<String, Value>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (key, value) in map {
        match &value.kind {
            ValueKind::Table(inner) => {
                out.extend(flatten_values(inner).into_iter().map(|(k, v)| (format!("{key}.{k}"), v)));
            }
            // As TOML writes it: `["kv", "router"]`, `[]`.
            ValueKind::Array(items) => {
                let items: Vec<String> = items.iter().map(|item| format!("{:?}", item.to_string())).collect();
                out.insert(key.clone(), format!("[{}]", items.join(", ")));
            }
            _ => {
                out.insert(key.clone(), value.to_string());
            }
        }
    }
    out
}

fn flatten_keys(map: &Map<String, Value>) -> Vec<String> {
    let mut out = Vec::new();
    for (key, value) in map {
        match &value.kind {
            ValueKind::Table(inner) => {
                let nested = flatten_keys(inner);
                if nested.is_empty() {
                    out.push(key.clone());
                }
                out.extend(nested.into_iter().map(|k| format!("{key}.{k}")));
            }
            _ => out.push(key.clone()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn defaults_load_and_match_the_documented_values() {
        let s = Settings::default();
        assert_eq!(s.server.port, 9092);
        assert_eq!(s.storage.data_dir, PathBuf::from("./data"));
        assert_eq!(s.storage.flush, FlushPolicy::Always);
    }

    #[test]
    fn precedence_is_file_then_environment_then_flags() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("h.toml");
        std::fs::write(&file, "[server]\nport = 1000\nmax_in_flight = 5\n[storage]\nflush = \"never\"\n").unwrap();
        let s = Settings::load_from(
            Some(&file),
            env(&[("HERALD_SERVER__PORT", "2000"), ("HERALD_BIN", "/not/a/setting")]),
            &[("storage.flush", "interval".into())],
        )
        .unwrap();
        assert_eq!(s.server.port, 2000);
        assert_eq!(s.server.max_in_flight, 5);
        assert_eq!(s.storage.flush, FlushPolicy::Interval);
    }

    #[test]
    fn unknown_keys_name_the_key_and_the_source() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("h.toml");
        std::fs::write(&file, "[server]\nprot = 1\n").unwrap();
        let err = Settings::load_from(Some(&file), env(&[]), &[]).unwrap_err().to_string();
        assert!(err.contains("server.prot") && err.contains("h.toml"), "{err}");

        let err = Settings::load_from(None, env(&[("HERALD_STORAGE__FLUSHING", "x")]), &[]).unwrap_err().to_string();
        assert!(err.contains("storage.flushing") && err.contains("HERALD_STORAGE__FLUSHING"), "{err}");
    }

    #[test]
    fn wrong_types_name_the_key_and_the_source() {
        let err = Settings::load_from(None, env(&[("HERALD_SERVER__PORT", "ninety")]), &[]).unwrap_err().to_string();
        assert!(err.contains("server.port") && err.contains("HERALD_SERVER__PORT"), "{err}");
        let err =
            Settings::load_from(None, env(&[]), &[("storage.flush", "sometimes".into())]).unwrap_err().to_string();
        assert!(err.contains("storage.flush") && err.contains("flag"), "{err}");
    }

    #[test]
    fn contradictions_are_refused() {
        let err = Settings::load_from(None, env(&[("HERALD_LOG__MAX_MESSAGE_BYTES", "33554432")]), &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("max_message_bytes") && err.contains("max_frame_bytes"), "{err}");
        let err = Settings::load_from(
            None,
            env(&[("HERALD_STORAGE__FLUSH", "interval"), ("HERALD_STORAGE__FLUSH_INTERVAL_MS", "0")]),
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("flush_interval_ms"), "{err}");
        let err =
            Settings::load_from(None, env(&[("HERALD_SERVER__MAX_HELD_REQUESTS", "0")]), &[]).unwrap_err().to_string();
        assert!(err.contains("server.max_held_requests"), "{err}");
        let err = Settings::load_from(None, env(&[("HERALD_HTTP__METRICS_MAX_LABEL_SETS", "0")]), &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("http.metrics_max_label_sets"), "{err}");
        let err = Settings::load_from(None, env(&[("HERALD_HTTP__PORT", "9092")]), &[]).unwrap_err().to_string();
        assert!(err.contains("http.port and server.port"), "{err}");
    }

    #[test]
    fn security_settings_that_cannot_work_together_are_refused() {
        let refused = |pairs: &[(&str, &str)], expected: &str| {
            let err = Settings::load_from(None, env(pairs), &[]).unwrap_err().to_string();
            assert!(err.contains(expected), "{pairs:?}: {err}");
        };
        refused(&[("HERALD_SECURITY__TLS_CERT_FILE", "c.pem")], "go together");
        refused(
            &[
                ("HERALD_SECURITY__TLS_CERT_FILE", "c.pem"),
                ("HERALD_SECURITY__TLS_KEY_FILE", "k.pem"),
                ("HERALD_SECURITY__TLS_CLIENT_AUTH", "required"),
            ],
            "tls_client_ca_file",
        );
        refused(&[("HERALD_SECURITY__TLS_CLIENT_CA_FILE", "ca.pem")], "needs TLS");
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), "[security]\nsasl_mechanisms = [\"PLAIN\"]\n").unwrap();
        let err = Settings::load_from(Some(file.path()), env(&[]), &[]).unwrap_err().to_string();
        assert!(err.contains("unknown mechanism `PLAIN`"), "{err}");
        std::fs::write(file.path(), "[security]\nsuper_users = [\"admin\"]\n").unwrap();
        let err = Settings::load_from(Some(file.path()), env(&[]), &[]).unwrap_err().to_string();
        assert!(err.contains("`admin` is not a principal"), "{err}");
        std::fs::write(file.path(), "[security]\nsuper_users = [\"User:admin\"]\nauthorization = true\n").unwrap();
        let settings = Settings::load_from(Some(file.path()), env(&[]), &[]).unwrap();
        assert_eq!(settings.security.super_users, ["User:admin"]);
    }

    #[test]
    fn a_missing_config_file_is_an_error() {
        let err = Settings::load_from(Some(Path::new("/nonexistent/herald.toml")), env(&[]), &[]).unwrap_err();
        assert_eq!(err.to_string(), "cannot read config file /nonexistent/herald.toml: no such file");
    }

    #[test]
    fn errors_speak_of_the_setting_not_of_the_library() {
        let err =
            Settings::load_from(None, env(&[]), &[("storage.flush", "sometimes".into())]).unwrap_err().to_string();
        assert!(err.ends_with("`storage.flush` must be always, interval or never, got `sometimes`"), "{err}");
        assert!(!err.contains("enum") && !err.contains("FlushPolicy"), "{err}");
        let err = Settings::load_from(None, env(&[("HERALD_SERVER__PORT", "ninety")]), &[]).unwrap_err().to_string();
        assert!(err.contains("`server.port` must be") && err.contains("ninety"), "{err}");

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("broken.toml");
        std::fs::write(&file, "[server\nport = 1\n").unwrap();
        let err = Settings::load_from(Some(&file), env(&[]), &[]).unwrap_err().to_string();
        assert_eq!(err.matches("broken.toml").count(), 1, "the file is named once: {err}");

        let err = Settings::load_from(None, env(&[("HERALD_LOG__RETENTION_MS", "-5")]), &[]).unwrap_err().to_string();
        assert!(err.starts_with("invalid settings: log.retention_ms"), "{err}");
        assert!(!err.contains("contradictory"), "{err}");
    }

    #[test]
    fn every_setting_not_from_the_defaults_is_explained_with_its_source() {
        let (_, explained) = Settings::load_explained(
            None,
            env(&[("HERALD_SERVER__PORT", "2000")]),
            &[("storage.flush", "never".into())],
        )
        .unwrap();
        assert_eq!(
            explained.get("server.port"),
            Some(&("2000".to_string(), "environment variable HERALD_SERVER__PORT".to_string()))
        );
        assert_eq!(explained.get("storage.flush").map(|(v, _)| v.as_str()), Some("never"));
        assert_eq!(explained.len(), 2, "{explained:?}");
    }

    #[test]
    fn the_readme_and_the_operations_guide_document_every_key_with_its_default() {
        let documents = [
            ("README.md", include_str!("../README.md")),
            ("docs/operations.md", include_str!("../docs/operations.md")),
        ];
        let defaults = flatten_values(&collect(defaults(), "the defaults").unwrap());
        assert!(defaults.len() > 30, "{defaults:?}");
        for (key, value) in defaults {
            let value = match value.trim_matches('"') {
                "" => "\"\"",
                value => value,
            };
            let row = format!("| `{key}` | `{value}` |");
            for (name, text) in documents {
                let shown = text.lines().any(|line| line.starts_with(&row));
                assert!(shown, "{name}'s configuration table lacks `{row}`");
            }
        }
    }

    #[test]
    fn mistyped_environment_variables_are_reported() {
        let vars = env(&[
            ("HERALD_SERVER_PORT", "1"),
            ("HERALD_SERVER__PORT", "2"),
            ("HERALD_BROKER", "x"),
            ("HERALD_USER", "alice"),
            ("HERALD_PASSWORD_FILE", "/run/secrets/pw"),
            ("HERALD_FAULT_SEED", "3"),
            ("PATH", "/bin"),
        ]);
        let warnings = unread_environment(vars);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("HERALD_SERVER_PORT") && warnings[0].contains("HERALD_SERVER__PORT"));
    }

    #[test]
    fn logging_takes_text_or_human_and_a_level() {
        let s = Settings::load_from(None, env(&[("HERALD_LOGGING__FORMAT", "human")]), &[]).unwrap();
        assert_eq!(s.logging.format, LogFormat::Text);
        let s = Settings::load_from(None, env(&[("HERALD_LOGGING__LEVEL", "debug")]), &[]).unwrap();
        assert_eq!(s.logging.level, "debug");
    }
}
