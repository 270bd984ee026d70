//! A per-topic setting's value as the wire carries it.

use serde::{Deserialize, Serialize};

/// A setting's value: an integer or a string, as it travels on the wire.
///
/// Deserialized exactly: an integer (any encoding that fits `i64`) is `Int`, a
/// string is `Str`, anything else (bytes, a float, a bool, nil) is an error.
/// Which of the two a key takes is checked by [`TopicConfig::with_overrides`].
#[derive(Debug, Serialize, Clone, PartialEq, Eq)]
#[serde(untagged)]
pub enum ConfigValue {
    Int(i64),
    Str(String),
}

impl<'de> Deserialize<'de> for ConfigValue {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ConfigValueVisitor)
    }
}

struct ConfigValueVisitor;

impl serde::de::Visitor<'_> for ConfigValueVisitor {
    type Value = ConfigValue;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an integer or a string")
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<ConfigValue, E> {
        Ok(ConfigValue::Int(v))
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<ConfigValue, E> {
        i64::try_from(v).map(ConfigValue::Int).map_err(|_| {
            E::invalid_value(serde::de::Unexpected::Unsigned(v), &"an integer that fits in 64 signed bits")
        })
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ConfigValue, E> {
        Ok(ConfigValue::Str(v.to_owned()))
    }

    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<ConfigValue, E> {
        Ok(ConfigValue::Str(v))
    }
}

impl std::fmt::Display for ConfigValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigValue::Int(n) => write!(f, "{n}"),
            ConfigValue::Str(s) => f.write_str(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_deserialize_as_exactly_an_integer_or_a_string() {
        use serde::de::value::{BoolDeserializer, BytesDeserializer, Error, F64Deserializer, UnitDeserializer};
        use serde::de::IntoDeserializer;
        fn decode<'de>(d: impl serde::Deserializer<'de, Error = Error>) -> Result<ConfigValue, Error> {
            ConfigValue::deserialize(d)
        }
        assert_eq!(decode(5i64.into_deserializer()).unwrap(), ConfigValue::Int(5));
        assert_eq!(decode(7u8.into_deserializer()).unwrap(), ConfigValue::Int(7));
        assert_eq!(decode("x".into_deserializer()).unwrap(), ConfigValue::Str("x".into()));
        assert!(decode(u64::MAX.into_deserializer()).is_err());
        assert!(decode(BytesDeserializer::new(b"1")).is_err());
        assert!(decode(F64Deserializer::new(1.0)).is_err());
        assert!(decode(BoolDeserializer::new(true)).is_err());
        assert!(decode(UnitDeserializer::new()).is_err());
    }
}
