//! Per-topic settings: the broker's `[log]` defaults, overridden per topic.
//!
//! A topic's settings are chosen at creation and may be changed later
//! ([`TopicConfig::altered`], `alter_topic_config`); they are stored whole in
//! its metadata file, and reported by describe. Every key is validated here,
//! the same way at creation and at a change, so an invalid value is refused
//! with `INVALID_CONFIG` before anything touches the disk.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{BrokerError, ErrorCode};
use crate::partition::log::LogConfig;

/// A setting's value: an integer or a string. Which of the two a key takes
/// is checked by [`TopicConfig::with_overrides`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigValue {
    Int(i64),
    Str(String),
}

impl std::fmt::Display for ConfigValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigValue::Int(n) => write!(f, "{n}"),
            ConfigValue::Str(s) => f.write_str(s),
        }
    }
}

/// Whose clock stamps a topic's records.
#[derive(Debug, Serialize, Deserialize, Clone, Copy, PartialEq, Eq)]
pub enum TimestampType {
    /// The producer's timestamp is kept (the broker's time when it sent none).
    CreateTime,
    /// The broker stamps every batch with its own time on append.
    LogAppendTime,
}

/// What becomes of a topic's old records (Kafka's `cleanup.policy`).
#[derive(Debug, Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
pub enum CleanupPolicy {
    /// Retention by time and size removes whole old segments.
    #[default]
    #[serde(rename = "delete")]
    Delete,
    /// The cleaner keeps the latest record per key; retention removes nothing.
    #[serde(rename = "compact")]
    Compact,
    /// Both: the cleaner compacts, and retention removes old segments.
    #[serde(rename = "compact,delete")]
    CompactDelete,
}

impl CleanupPolicy {
    /// The name describe and the config key use.
    pub fn name(self) -> &'static str {
        match self {
            CleanupPolicy::Delete => "delete",
            CleanupPolicy::Compact => "compact",
            CleanupPolicy::CompactDelete => "compact,delete",
        }
    }

    /// Whether the cleaner compacts the topic.
    pub fn compacts(self) -> bool {
        self != CleanupPolicy::Delete
    }

    /// Whether retention by time and size removes segments.
    pub fn deletes(self) -> bool {
        self != CleanupPolicy::Compact
    }
}

/// The settings of one topic.
#[derive(Debug, Serialize, Deserialize, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TopicConfig {
    /// Roll the active segment when it would grow past this many bytes.
    pub segment_max_bytes: u64,
    /// Roll the active segment when its first batch is this old (ms).
    pub segment_ms: u64,
    /// Delete segments whose newest record is older than this (ms); -1 keeps them.
    pub retention_ms: i64,
    /// Delete the oldest segments while a partition is larger; -1 for no limit.
    pub retention_bytes: i64,
    /// The largest record batch one produce may append to one partition (bytes).
    pub max_message_bytes: u64,
    /// Whose clock stamps records.
    pub message_timestamp_type: TimestampType,
    /// Bytes of log between two sparse index entries.
    pub index_interval_bytes: u32,
    /// In a cluster, the fewest in-sync replicas an acks=all produce needs.
    #[serde(default = "one")]
    pub min_insync_replicas: u32,
    /// Delete old segments, compact, or both.
    #[serde(default)]
    pub cleanup_policy: CleanupPolicy,
    /// How long a tombstone stays after the cleaner first rewrote its
    /// segment (ms).
    #[serde(default = "default_delete_retention_ms")]
    pub delete_retention_ms: u64,
    /// The least share of dirty (never cleaned) bytes among the sealed
    /// segments for the cleaner to take the partition, in thousandths
    /// (the config key takes a decimal string, "0.5" = 500).
    #[serde(default = "default_min_cleanable_dirty_permille")]
    pub min_cleanable_dirty_permille: u16,
    /// A record stays uncompacted at least this long after it was written
    /// (by its segment's newest timestamp) (ms).
    #[serde(default)]
    pub min_compaction_lag_ms: u64,
    /// In a cluster, whether a replica outside the ISR may be elected leader
    /// when no in-sync replica is alive (records only the old ISR had are
    /// lost; off by default, as Kafka).
    #[serde(default)]
    pub unclean_leader_election_enable: bool,
}

fn one() -> u32 {
    1
}

fn default_delete_retention_ms() -> u64 {
    86_400_000
}

fn default_min_cleanable_dirty_permille() -> u16 {
    500
}

impl Default for TopicConfig {
    fn default() -> Self {
        TopicConfig {
            segment_max_bytes: 1 << 30,
            segment_ms: 7 * 24 * 3_600_000,
            retention_ms: 7 * 24 * 3_600_000,
            retention_bytes: -1,
            max_message_bytes: 8 << 20,
            message_timestamp_type: TimestampType::CreateTime,
            index_interval_bytes: 4096,
            min_insync_replicas: 1,
            cleanup_policy: CleanupPolicy::Delete,
            delete_retention_ms: default_delete_retention_ms(),
            min_cleanable_dirty_permille: default_min_cleanable_dirty_permille(),
            min_compaction_lag_ms: 0,
            unclean_leader_election_enable: false,
        }
    }
}

/// The keys a topic may override at creation and change later.
pub const TOPIC_KEYS: &[&str] = &[
    "segment_max_bytes",
    "segment_ms",
    "retention_ms",
    "retention_bytes",
    "max_message_bytes",
    "message_timestamp_type",
    "min_insync_replicas",
    "cleanup_policy",
    "delete_retention_ms",
    "min_cleanable_dirty_ratio",
    "min_compaction_lag_ms",
    "unclean_leader_election_enable",
];

fn invalid(message: String) -> BrokerError {
    BrokerError::new(ErrorCode::INVALID_CONFIG, message)
}

fn int(key: &str, value: &ConfigValue, min: i64) -> Result<i64, BrokerError> {
    let n = match value {
        ConfigValue::Int(n) => *n,
        ConfigValue::Str(s) => {
            return Err(invalid(format!("topic setting `{key}` must be an integer, got the string `{s}`")))
        }
    };
    if n < min {
        return Err(invalid(format!("topic setting `{key}` must be at least {min}, got {n}")));
    }
    Ok(n)
}

fn limit(key: &str, value: &ConfigValue) -> Result<i64, BrokerError> {
    let n = int(key, value, -1)?;
    if n == 0 {
        return Err(invalid(format!("topic setting `{key}` must be -1 (no limit) or positive")));
    }
    Ok(n)
}

fn string<'a>(key: &str, value: &'a ConfigValue) -> Result<&'a str, BrokerError> {
    match value {
        ConfigValue::Str(s) => Ok(s),
        ConfigValue::Int(n) => Err(invalid(format!("topic setting `{key}` must be a string, got the integer {n}"))),
    }
}

/// A ratio from 0 to 1 with at most three decimals ("0.5", "1", or the
/// integers 0 and 1), in thousandths.
fn permille(key: &str, value: &ConfigValue) -> Result<u16, BrokerError> {
    let text = match value {
        ConfigValue::Int(n) => n.to_string(),
        ConfigValue::Str(s) => s.clone(),
    };
    let bad = || invalid(format!("topic setting `{key}` must be a decimal from 0 to 1 such as \"0.5\", got `{text}`"));
    let (whole, fraction) = text.split_once('.').unwrap_or((&text, ""));
    if whole.is_empty() && fraction.is_empty()
        || fraction.len() > 3
        || !whole.bytes().chain(fraction.bytes()).all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    let whole: u32 = if whole.is_empty() { 0 } else { whole.parse().map_err(|_| bad())? };
    let fraction: u32 = format!("{fraction:0<3}").parse().map_err(|_| bad())?;
    let n = whole.checked_mul(1000).and_then(|w| w.checked_add(fraction)).filter(|n| *n <= 1000).ok_or_else(bad)?;
    Ok(n as u16)
}

fn permille_text(n: u16) -> String {
    let text = format!("{}.{:03}", n / 1000, n % 1000);
    let text = text.trim_end_matches('0');
    text.strip_suffix('.').unwrap_or(text).to_string()
}

fn unknown(key: &str) -> BrokerError {
    if key == "partitions" {
        return invalid(
            "`partitions` is not a topic setting: a topic's partition count is grown with add_partitions \
             (`herald topic add-partitions`) and never shrinks"
                .into(),
        );
    }
    invalid(format!("unknown topic setting `{key}`; known: {}", TOPIC_KEYS.join(", ")))
}

impl TopicConfig {
    /// These settings with `overrides` applied.
    ///
    /// # Errors
    ///
    /// `INVALID_CONFIG` naming the key for an unknown key, a wrong type or an
    /// out-of-range value, or naming both for a `segment_max_bytes` smaller
    /// than `max_message_bytes`.
    pub fn with_overrides(&self, overrides: &BTreeMap<String, ConfigValue>) -> Result<TopicConfig, BrokerError> {
        let mut config = self.clone();
        for (key, value) in overrides {
            match key.as_str() {
                "segment_max_bytes" => config.segment_max_bytes = int(key, value, 1024)? as u64,
                "segment_ms" => config.segment_ms = int(key, value, 1)? as u64,
                "retention_ms" => config.retention_ms = limit(key, value)?,
                "retention_bytes" => config.retention_bytes = limit(key, value)?,
                "max_message_bytes" => config.max_message_bytes = int(key, value, 1)? as u64,
                "min_insync_replicas" => {
                    config.min_insync_replicas = int(key, value, 1)?.min(i64::from(u32::MAX)) as u32
                }
                "cleanup_policy" => {
                    config.cleanup_policy = match string(key, value)? {
                        "delete" => CleanupPolicy::Delete,
                        "compact" => CleanupPolicy::Compact,
                        "compact,delete" | "delete,compact" => CleanupPolicy::CompactDelete,
                        other => {
                            return Err(invalid(format!(
                            "topic setting `cleanup_policy` must be delete, compact or compact,delete, got `{other}`"
                        )))
                        }
                    }
                }
                "delete_retention_ms" => config.delete_retention_ms = int(key, value, 0)? as u64,
                "min_cleanable_dirty_ratio" => config.min_cleanable_dirty_permille = permille(key, value)?,
                "min_compaction_lag_ms" => config.min_compaction_lag_ms = int(key, value, 0)? as u64,
                "unclean_leader_election_enable" => {
                    config.unclean_leader_election_enable = match string(key, value)? {
                        "true" => true,
                        "false" => false,
                        other => {
                            return Err(invalid(format!(
                                "topic setting `unclean_leader_election_enable` must be true or false, got `{other}`"
                            )))
                        }
                    }
                }
                "message_timestamp_type" => {
                    let ConfigValue::Str(name) = value else {
                        return Err(invalid(format!(
                            "topic setting `message_timestamp_type` must be a string, got the integer {value}"
                        )));
                    };
                    config.message_timestamp_type = match name.as_str() {
                        "CreateTime" => TimestampType::CreateTime,
                        "LogAppendTime" => TimestampType::LogAppendTime,
                        other => {
                            return Err(invalid(format!(
                            "topic setting `message_timestamp_type` must be CreateTime or LogAppendTime, got `{other}`"
                        )))
                        }
                    }
                }
                other => return Err(unknown(other)),
            }
        }
        // As the broker's own [log] settings: a segment holds the largest batch.
        if config.segment_max_bytes < config.max_message_bytes {
            return Err(invalid(format!(
                "topic setting segment_max_bytes ({}) must not be smaller than max_message_bytes ({}): every batch \
                 must fit in one segment; set max_message_bytes too",
                config.segment_max_bytes, config.max_message_bytes
            )));
        }
        Ok(config)
    }

    /// These settings changed by an `alter_topic_config`: each key of
    /// `delete` back to its value in `defaults` (the broker's `[log]`
    /// settings now), then each of `set` to its value, every key checked as
    /// [`TopicConfig::with_overrides`] checks it, and the result against the
    /// broker's limit (see [`TopicConfig::check_ceiling`]).
    ///
    /// # Errors
    ///
    /// `INVALID_CONFIG` naming the key: as [`TopicConfig::with_overrides`],
    /// for an unknown key in `delete`, and for a key both set and deleted.
    pub fn altered(
        &self,
        defaults: &TopicConfig,
        set: &BTreeMap<String, ConfigValue>,
        delete: &[String],
        max_message_ceiling: u64,
    ) -> Result<TopicConfig, BrokerError> {
        let default_values = defaults.to_map();
        let mut changes = BTreeMap::new();
        for key in delete {
            if set.contains_key(key) {
                return Err(invalid(format!("topic setting `{key}` is both set and deleted in one change")));
            }
            let value = default_values.get(key).ok_or_else(|| unknown(key))?;
            changes.insert(key.clone(), value.clone());
        }
        changes.extend(set.iter().map(|(k, v)| (k.clone(), v.clone())));
        let config = self.with_overrides(&changes)?;
        config.check_ceiling(max_message_ceiling)?;
        Ok(config)
    }

    /// Checks `max_message_bytes` against the broker's ceiling: a batch must
    /// fit in one request frame with the request's own fields.
    ///
    /// # Errors
    ///
    /// `INVALID_CONFIG` naming `max_message_bytes` and the ceiling.
    pub fn check_ceiling(&self, max_message_ceiling: u64) -> Result<(), BrokerError> {
        if self.max_message_bytes > max_message_ceiling {
            return Err(invalid(format!(
                "topic setting max_message_bytes ({}) must be at most {max_message_ceiling} (the broker's \
                 server.max_frame_bytes less 1 KiB): a larger batch could not reach the broker",
                self.max_message_bytes
            )));
        }
        Ok(())
    }

    /// The settings as describe reports them.
    pub fn to_map(&self) -> BTreeMap<String, ConfigValue> {
        let ts = match self.message_timestamp_type {
            TimestampType::CreateTime => "CreateTime",
            TimestampType::LogAppendTime => "LogAppendTime",
        };
        BTreeMap::from([
            ("segment_max_bytes".into(), ConfigValue::Int(self.segment_max_bytes as i64)),
            ("segment_ms".into(), ConfigValue::Int(self.segment_ms as i64)),
            ("retention_ms".into(), ConfigValue::Int(self.retention_ms)),
            ("retention_bytes".into(), ConfigValue::Int(self.retention_bytes)),
            ("max_message_bytes".into(), ConfigValue::Int(self.max_message_bytes as i64)),
            ("message_timestamp_type".into(), ConfigValue::Str(ts.into())),
            ("min_insync_replicas".into(), ConfigValue::Int(i64::from(self.min_insync_replicas))),
            ("cleanup_policy".into(), ConfigValue::Str(self.cleanup_policy.name().into())),
            ("delete_retention_ms".into(), ConfigValue::Int(self.delete_retention_ms as i64)),
            ("min_cleanable_dirty_ratio".into(), ConfigValue::Str(permille_text(self.min_cleanable_dirty_permille))),
            ("min_compaction_lag_ms".into(), ConfigValue::Int(self.min_compaction_lag_ms as i64)),
            (
                "unclean_leader_election_enable".into(),
                ConfigValue::Str(self.unclean_leader_election_enable.to_string()),
            ),
        ])
    }

    /// The log's share of these settings. Under `cleanup_policy = compact`
    /// alone, time and size retention are off (as in Kafka).
    pub fn log_config(&self) -> LogConfig {
        let deletes = self.cleanup_policy.deletes();
        LogConfig {
            segment_max_bytes: self.segment_max_bytes,
            segment_ms: self.segment_ms,
            index_interval_bytes: self.index_interval_bytes,
            retention_ms: if deletes { self.retention_ms } else { -1 },
            retention_bytes: if deletes { self.retention_bytes } else { -1 },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_apply_and_bad_values_name_the_key() {
        let base = TopicConfig::default();
        let mut o = BTreeMap::new();
        o.insert("retention_bytes".to_string(), ConfigValue::Int(2048));
        o.insert("message_timestamp_type".to_string(), ConfigValue::Str("LogAppendTime".into()));
        let c = base.with_overrides(&o).unwrap();
        assert_eq!(c.retention_bytes, 2048);
        assert_eq!(c.message_timestamp_type, TimestampType::LogAppendTime);

        let small_segments = BTreeMap::from([("segment_max_bytes".to_string(), ConfigValue::Int(1024))]);
        let err = base.with_overrides(&small_segments).unwrap_err();
        assert!(err.message.contains("max_message_bytes"), "{}", err.message);
        let mut both = small_segments.clone();
        both.insert("max_message_bytes".to_string(), ConfigValue::Int(1024));
        assert_eq!(base.with_overrides(&both).unwrap().segment_max_bytes, 1024);

        for (k, v) in [
            ("retention_ms", ConfigValue::Int(0)),
            ("segment_max_bytes", ConfigValue::Int(10)),
            ("segment_ms", ConfigValue::Str("soon".into())),
            ("segment_max_bytes", ConfigValue::Str("1048576".into())),
            ("message_timestamp_type", ConfigValue::Int(0)),
            ("colour", ConfigValue::Int(1)),
            ("partitions", ConfigValue::Int(3)),
        ] {
            let err = base.with_overrides(&BTreeMap::from([(k.to_string(), v)])).unwrap_err();
            assert_eq!(err.code, ErrorCode::INVALID_CONFIG);
            assert!(err.message.contains(k), "{}", err.message);
        }
    }

    #[test]
    fn compaction_keys_are_checked_and_described() {
        let base = TopicConfig::default();
        assert_eq!(base.cleanup_policy, CleanupPolicy::Delete);
        let set = |pairs: &[(&str, ConfigValue)]| {
            base.with_overrides(&pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect())
        };
        let c = set(&[
            ("cleanup_policy", ConfigValue::Str("compact".into())),
            ("min_cleanable_dirty_ratio", ConfigValue::Str("0.25".into())),
            ("delete_retention_ms", ConfigValue::Int(0)),
            ("min_compaction_lag_ms", ConfigValue::Int(1000)),
        ])
        .unwrap();
        assert_eq!(c.cleanup_policy, CleanupPolicy::Compact);
        assert_eq!(c.min_cleanable_dirty_permille, 250);
        assert_eq!((c.delete_retention_ms, c.min_compaction_lag_ms), (0, 1000));
        // Compact alone: retention removes nothing.
        assert_eq!((c.log_config().retention_ms, c.log_config().retention_bytes), (-1, -1));
        let map = c.to_map();
        assert_eq!(map["cleanup_policy"], ConfigValue::Str("compact".into()));
        assert_eq!(map["min_cleanable_dirty_ratio"], ConfigValue::Str("0.25".into()));
        // What describe shows is accepted back as it is.
        assert_eq!(base.with_overrides(&map).unwrap(), c);
        let both = set(&[("cleanup_policy", ConfigValue::Str("compact,delete".into()))]).unwrap();
        assert_eq!(both.log_config().retention_ms, base.retention_ms);
        assert_eq!(
            set(&[("min_cleanable_dirty_ratio", ConfigValue::Int(1))]).unwrap().min_cleanable_dirty_permille,
            1000
        );

        for (k, v) in [
            ("cleanup_policy", ConfigValue::Str("shred".into())),
            ("cleanup_policy", ConfigValue::Int(1)),
            ("min_cleanable_dirty_ratio", ConfigValue::Str("1.5".into())),
            ("min_cleanable_dirty_ratio", ConfigValue::Str("0.1234".into())),
            ("min_cleanable_dirty_ratio", ConfigValue::Str("-0.5".into())),
            ("min_cleanable_dirty_ratio", ConfigValue::Str(".".into())),
            ("delete_retention_ms", ConfigValue::Int(-1)),
            ("min_compaction_lag_ms", ConfigValue::Str("soon".into())),
        ] {
            let err = set(&[(k, v)]).unwrap_err();
            assert_eq!(err.code, ErrorCode::INVALID_CONFIG);
            assert!(err.message.contains(k), "{}", err.message);
        }
    }

    #[test]
    fn a_change_sets_and_deletes_keys_and_is_checked_whole() {
        let defaults = TopicConfig::default();
        let current =
            defaults.with_overrides(&BTreeMap::from([("retention_ms".to_string(), ConfigValue::Int(60_000))])).unwrap();
        let set = BTreeMap::from([("retention_bytes".to_string(), ConfigValue::Int(4096))]);
        let changed = current.altered(&defaults, &set, &["retention_ms".to_string()], u64::MAX).unwrap();
        assert_eq!(changed.retention_ms, defaults.retention_ms);
        assert_eq!(changed.retention_bytes, 4096);

        let refused = |set: &[(&str, ConfigValue)], delete: &[&str], ceiling: u64| {
            let set = set.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
            let delete: Vec<String> = delete.iter().map(|k| k.to_string()).collect();
            current.altered(&defaults, &set, &delete, ceiling).unwrap_err()
        };
        let err = refused(&[("retention_ms", ConfigValue::Int(5))], &["retention_ms"], u64::MAX);
        assert!(err.message.contains("both set and deleted"), "{}", err.message);
        let err = refused(&[], &["colour"], u64::MAX);
        assert!(err.message.contains("colour"), "{}", err.message);
        let err = refused(&[("max_message_bytes", ConfigValue::Int(2 << 20))], &[], 1 << 20);
        assert!(err.message.contains("max_message_bytes") && err.message.contains("1048576"), "{}", err.message);
        // Against each other: a smaller segment than the largest batch.
        let err = refused(&[("segment_max_bytes", ConfigValue::Int(4096))], &[], u64::MAX);
        assert_eq!(err.code, ErrorCode::INVALID_CONFIG);
        assert!(err.message.contains("segment_max_bytes"), "{}", err.message);
    }
}
