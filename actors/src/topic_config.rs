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
}

fn one() -> u32 {
    1
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
        ])
    }

    /// The log's share of these settings.
    pub fn log_config(&self) -> LogConfig {
        LogConfig {
            segment_max_bytes: self.segment_max_bytes,
            segment_ms: self.segment_ms,
            index_interval_bytes: self.index_interval_bytes,
            retention_ms: self.retention_ms,
            retention_bytes: self.retention_bytes,
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
