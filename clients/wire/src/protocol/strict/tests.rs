//! The strict adapter against values built by hand.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::Deserialize;

use super::*;

#[derive(Debug, Deserialize, PartialEq)]
struct Sample {
    text: String,
    #[serde(default)]
    data: Option<Bytes>,
    #[serde(default)]
    list: Vec<u32>,
    #[serde(default)]
    pairs: Vec<(String, Bytes)>,
    #[serde(default)]
    nested: Option<Box<Sample>>,
    #[serde(default)]
    map: BTreeMap<String, i64>,
    #[serde(default)]
    n: i64,
}

fn encode(value: &rmpv::Value) -> Vec<u8> {
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, value).unwrap();
    out
}

fn map(fields: Vec<(&str, rmpv::Value)>) -> rmpv::Value {
    rmpv::Value::Map(fields.into_iter().map(|(k, v)| (k.into(), v)).collect())
}

fn decode(value: rmpv::Value) -> Result<Sample, String> {
    from_slice::<Sample>(&encode(&value)).map_err(|e| e.to_string())
}

#[test]
fn the_exact_types_decode() {
    let sample = decode(map(vec![
        ("text", "t".into()),
        ("data", rmpv::Value::Binary(b"d".to_vec())),
        ("list", rmpv::Value::Array(vec![1.into(), rmpv::Value::from(2u64)])),
        ("pairs", rmpv::Value::Array(vec![rmpv::Value::Array(vec!["k".into(), rmpv::Value::Binary(vec![1])])])),
        ("nested", map(vec![("text", "inner".into())])),
        ("map", map(vec![("a", (-1).into())])),
        ("n", rmpv::Value::from(u32::MAX)),
        ("unknown", rmpv::Value::Binary(vec![0; 3])),
        ("unknown map", rmpv::Value::Map(vec![(1.into(), rmpv::Value::Array(vec![rmpv::Value::Binary(vec![])]))])),
    ]))
    .unwrap();
    assert_eq!(sample.data, Some(Bytes::from_static(b"d")));
    assert_eq!(sample.pairs, vec![("k".to_string(), Bytes::from_static(&[1]))]);
    assert_eq!(sample.nested.unwrap().text, "inner");
    assert_eq!((sample.map["a"], sample.n, sample.list), (-1, i64::from(u32::MAX), vec![1, 2]));
}

#[test]
fn another_family_is_refused_at_any_depth() {
    let bin = |b: &[u8]| rmpv::Value::Binary(b.to_vec());
    let cases = [
        ("bin for str", map(vec![("text", bin(b"t"))])),
        ("str for bin", map(vec![("text", "t".into()), ("data", "d".into())])),
        ("array for bin", map(vec![("text", "t".into()), ("data", rmpv::Value::Array(vec![1.into()]))])),
        ("bin for array", map(vec![("text", "t".into()), ("list", bin(&[1, 2]))])),
        ("str for int", map(vec![("text", "t".into()), ("n", "1".into())])),
        ("float for int", map(vec![("text", "t".into()), ("n", 1.0.into())])),
        (
            "str in a pair",
            map(vec![
                ("text", "t".into()),
                ("pairs", rmpv::Value::Array(vec![rmpv::Value::Array(vec!["k".into(), "v".into()])])),
            ]),
        ),
        ("bin nested", map(vec![("text", "t".into()), ("nested", map(vec![("text", bin(b"x"))]))])),
        ("array for struct", map(vec![("text", "t".into()), ("nested", rmpv::Value::Array(vec!["x".into()]))])),
        ("bin key", rmpv::Value::Map(vec![(bin(b"text"), "t".into())])),
        ("int key", rmpv::Value::Map(vec![(0.into(), "t".into())])),
        ("bin map key", map(vec![("text", "t".into()), ("map", rmpv::Value::Map(vec![(bin(b"a"), 1.into())]))])),
        ("array top level", rmpv::Value::Array(vec!["t".into()])),
    ];
    for (what, value) in cases {
        assert!(decode(value).is_err(), "{what} was accepted");
    }
}
