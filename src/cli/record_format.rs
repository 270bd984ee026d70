//! How `herald consume` prints a record: a `--format` template, or one JSON
//! object per line, with the bytes of keys, values and header values encoded
//! as `--encoding` says, so that nothing is lost or mangled.
//!
//! Template placeholders: `{topic}` `{partition}` `{offset}` `{timestamp}`
//! `{key}` `{value}` `{headers}`; the three byte fields take an encoding,
//! `{key:hex}`, `{value:base64}`, `{headers:text}`. `{{` and `}}` print a
//! brace. An unknown placeholder is an error before anything is consumed.
//!
//! Encodings: `text` prints the bytes as they are (in JSON: a string when
//! they are UTF-8, otherwise `{"base64": "..."}`); `hex` and `base64` print
//! every byte field so. A missing key and a tombstone's value print as
//! `null` (JSON `null`). JSON headers are a list of `[name, value]` pairs,
//! in order, repeats kept.

use base64::Engine;
use clap::ValueEnum;
use herald::client::ConsumedRecord;
use serde_json::{json, Value};

use super::{CliResult, UsageError};

/// How the bytes of keys, values and header values are printed.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    Text,
    Hex,
    Base64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Topic,
    Partition,
    Offset,
    Timestamp,
    Key(Encoding),
    Value(Encoding),
    Headers(Encoding),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(Vec<u8>),
    Field(Field),
}

/// A parsed `--format` template.
#[derive(Debug, Clone)]
pub struct Template {
    parts: Vec<Part>,
}

const PLACEHOLDERS: &str = "{topic} {partition} {offset} {timestamp} {key} {value} {headers}, \
    the last three with :text, :hex or :base64";

impl Template {
    /// Parses `template`, whose byte fields default to `encoding`.
    ///
    /// # Errors
    ///
    /// An unknown placeholder or encoding, or an unclosed `{`.
    pub fn parse(template: &str, encoding: Encoding) -> CliResult<Template> {
        let mut parts = Vec::new();
        let mut literal = Vec::new();
        let mut rest = template;
        while let Some(at) = rest.find(['{', '}']) {
            literal.extend_from_slice(&rest.as_bytes()[..at]);
            let tail = &rest[at..];
            if tail.starts_with("{{") || tail.starts_with("}}") {
                literal.push(tail.as_bytes()[0]);
                rest = &tail[2..];
                continue;
            }
            if tail.starts_with('}') {
                return Err(
                    format!("--format: a lone `}}` (write `}}}}` for a brace); placeholders: {PLACEHOLDERS}").into()
                );
            }
            let end = tail.find('}').ok_or_else(|| UsageError(format!("--format: `{tail}` is not closed")))?;
            let field = parse_field(&tail[1..end], encoding)?;
            if !literal.is_empty() {
                parts.push(Part::Literal(std::mem::take(&mut literal)));
            }
            parts.push(Part::Field(field));
            rest = &tail[end + 1..];
        }
        literal.extend_from_slice(rest.as_bytes());
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Ok(Template { parts })
    }

    /// The line for `record`, without its end of line.
    pub fn render(&self, record: &ConsumedRecord) -> Vec<u8> {
        let mut out = Vec::new();
        for part in &self.parts {
            match part {
                Part::Literal(bytes) => out.extend_from_slice(bytes),
                Part::Field(field) => render_field(&mut out, *field, record),
            }
        }
        out
    }
}

fn parse_field(name: &str, default: Encoding) -> CliResult<Field> {
    let (name, encoding) = match name.split_once(':') {
        Some((name, encoding)) => {
            let encoding = Encoding::from_str(encoding, true).map_err(|_| {
                format!("--format: unknown encoding `{encoding}` in `{{{name}:{encoding}}}`: use text, hex or base64")
            })?;
            (name, Some(encoding))
        }
        None => (name, None),
    };
    let bytes_field = |make: fn(Encoding) -> Field| Ok(make(encoding.unwrap_or(default)));
    let plain = |field: Field| match encoding {
        Some(_) => Err(UsageError(format!("--format: `{{{name}}}` takes no encoding")).into()),
        None => Ok(field),
    };
    match name {
        "topic" => plain(Field::Topic),
        "partition" => plain(Field::Partition),
        "offset" => plain(Field::Offset),
        "timestamp" => plain(Field::Timestamp),
        "key" => bytes_field(Field::Key),
        "value" => bytes_field(Field::Value),
        "headers" => bytes_field(Field::Headers),
        other => Err(UsageError(format!("--format: unknown placeholder `{{{other}}}`; known: {PLACEHOLDERS}")).into()),
    }
}

fn encode_into(out: &mut Vec<u8>, bytes: &[u8], encoding: Encoding) {
    match encoding {
        Encoding::Text => out.extend_from_slice(bytes),
        Encoding::Hex => out.extend(bytes.iter().flat_map(|b| format!("{b:02x}").into_bytes())),
        Encoding::Base64 => out.extend_from_slice(base64::engine::general_purpose::STANDARD.encode(bytes).as_bytes()),
    }
}

fn render_field(out: &mut Vec<u8>, field: Field, r: &ConsumedRecord) {
    let optional = |out: &mut Vec<u8>, bytes: &Option<bytes::Bytes>, encoding| match bytes {
        Some(bytes) => encode_into(out, bytes, encoding),
        None => out.extend_from_slice(b"null"),
    };
    match field {
        Field::Topic => out.extend_from_slice(r.topic.as_bytes()),
        Field::Partition => out.extend_from_slice(r.partition.to_string().as_bytes()),
        Field::Offset => out.extend_from_slice(r.record.offset.to_string().as_bytes()),
        Field::Timestamp => out.extend_from_slice(r.record.timestamp.to_string().as_bytes()),
        Field::Key(encoding) => optional(out, &r.record.key, encoding),
        Field::Value(encoding) => optional(out, &r.record.value, encoding),
        Field::Headers(encoding) => {
            for (i, (name, value)) in r.record.headers.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(name.as_bytes());
                out.push(b'=');
                encode_into(out, value, encoding);
            }
        }
    }
}

/// Bytes as a JSON value under `encoding` (see the module documentation).
fn json_bytes(bytes: &[u8], encoding: Encoding) -> Value {
    let b64 = || base64::engine::general_purpose::STANDARD.encode(bytes);
    match encoding {
        Encoding::Text => match std::str::from_utf8(bytes) {
            Ok(text) => Value::String(text.to_string()),
            Err(_) => json!({ "base64": b64() }),
        },
        Encoding::Hex => Value::String(bytes.iter().map(|b| format!("{b:02x}")).collect()),
        Encoding::Base64 => Value::String(b64()),
    }
}

/// One JSON object for `record`.
pub fn json_line(r: &ConsumedRecord, encoding: Encoding) -> String {
    let optional = |bytes: &Option<bytes::Bytes>| bytes.as_ref().map_or(Value::Null, |b| json_bytes(b, encoding));
    let headers: Vec<Value> =
        r.record.headers.iter().map(|(name, value)| json!([name, json_bytes(value, encoding)])).collect();
    let mut object = json!({
        "topic": r.topic,
        "partition": r.partition,
        "offset": r.record.offset,
        "timestamp": r.record.timestamp,
        "key": optional(&r.record.key),
        "value": optional(&r.record.value),
        "headers": headers,
    });
    if encoding != Encoding::Text {
        object["encoding"] = json!(format!("{encoding:?}").to_lowercase());
    }
    object.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use herald::client::Record;

    fn record(key: Option<&[u8]>, value: Option<&[u8]>, headers: &[(&str, &[u8])]) -> ConsumedRecord {
        ConsumedRecord {
            topic: "t".into(),
            partition: 2,
            record: Record {
                offset: 7,
                timestamp: 1000,
                key: key.map(Bytes::copy_from_slice),
                value: value.map(Bytes::copy_from_slice),
                headers: headers.iter().map(|(k, v)| (k.to_string(), Bytes::copy_from_slice(v))).collect(),
            },
        }
    }

    #[test]
    fn templates_render_every_field_in_its_encoding() {
        let r = record(Some(b"k"), Some(b"\xff\x00"), &[("a", b"1"), ("a", b"2")]);
        let t = Template::parse(
            "{topic}/{partition}@{offset} {key} {value:hex} {value:base64} {headers} {{x}}",
            Encoding::Text,
        )
        .unwrap();
        assert_eq!(t.render(&r), b"t/2@7 k ff00 /wA= a=1,a=2 {x}".to_vec());
        let t = Template::parse("{value}", Encoding::Text).unwrap();
        assert_eq!(t.render(&r), b"\xff\x00".to_vec(), "text prints the bytes as they are");
        let tombstone = record(None, None, &[]);
        assert_eq!(Template::parse("{key}:{value}", Encoding::Hex).unwrap().render(&tombstone), b"null:null".to_vec());
    }

    #[test]
    fn unknown_placeholders_and_encodings_are_errors() {
        for bad in ["{nope}", "{value:rot13}", "{offset:hex}", "{value", "a}b"] {
            assert!(Template::parse(bad, Encoding::Text).is_err(), "{bad}");
        }
    }

    #[test]
    fn json_keeps_repeated_headers_binary_and_tombstones() {
        let r = record(Some(b"\xfe"), None, &[("a", b"1"), ("a", b"2")]);
        let v: Value = serde_json::from_str(&json_line(&r, Encoding::Text)).unwrap();
        assert_eq!(v["headers"], json!([["a", "1"], ["a", "2"]]));
        assert_eq!(v["key"], json!({ "base64": "/g==" }));
        assert_eq!(v["value"], Value::Null);
        let v: Value = serde_json::from_str(&json_line(&r, Encoding::Hex)).unwrap();
        assert_eq!((v["key"].clone(), v["encoding"].clone()), (json!("fe"), json!("hex")));
    }
}
