//! The web console in a real headless browser (Debian's chromium, installed
//! by scripts/install-test-deps.sh) against a real broker: the pages show
//! what the broker holds, record bytes are rendered by kind and never parsed
//! as HTML. Screenshots of each page land in `target/console-screenshots/`.

#[path = "console/chromium.rs"]
mod chromium;
mod common;

use std::collections::BTreeMap;

use bytes::Bytes;
use common::http::{get, wait_ready};
use common::{keyed, TestBroker};
use herald::client::{GroupConsumer, GroupConsumerConfig};
use herald::protocol::{group_op, CommitOffsetsRequest, CommitOffsetsResponse, OffsetCommit, WireRecord};

fn msgpack(value: &rmpv::Value) -> Vec<u8> {
    let mut bytes = Vec::new();
    rmpv::encode::write_value(&mut bytes, value).expect("encode");
    bytes
}

/// Chromium blocks: it runs off the test's runtime.
async fn page(url: String, name: &'static str) -> String {
    tokio::task::spawn_blocking(move || chromium::page(&url, name)).await.expect("the chromium run panicked")
}

#[tokio::test]
async fn the_console_shows_topics_records_and_group_lag() {
    chromium::binary();
    let broker = TestBroker::start();
    let client = broker.client().await;
    client.create_topic("console-orders", 2, BTreeMap::new()).await.unwrap();
    let text = WireRecord {
        headers: vec![("source".into(), Bytes::from_static(b"web"))],
        ..keyed("order-1", "grüße aus Köln")
    };
    use rmpv::Value;
    let map = Value::Map(vec![
        (Value::from("name"), Value::from("ada")),
        (Value::from("n"), Value::from(3)),
        (Value::from("tags"), Value::Array(vec![Value::from("x"), Value::from(true)])),
    ]);
    let map = keyed("order-2", msgpack(&map));
    let binary = keyed("order-3", [0xff, 0x00, 0x10, 0x80]);
    let markup = keyed("order-4", "<b id=\"injected\">not bold</b>");
    let tombstone = WireRecord { key: Some(Bytes::from_static(b"order-1")), ..WireRecord::default() };
    let every_kind = Value::Array(vec![
        Value::Nil,
        Value::from(-5),
        Value::F64(1.5),
        Value::Binary(vec![1, 2]),
        Value::Map(vec![(Value::from(1), Value::from("x"))]),
        Value::Ext(5, vec![0xaa]),
        Value::from(u64::MAX),
    ]);
    let every_kind = keyed("order-5", msgpack(&every_kind));
    // A MessagePack string alone is not shown as MessagePack (most short byte
    // strings decode as one); these bytes are not UTF-8 either.
    let plain_string = keyed("order-6", msgpack(&Value::from("abc")));
    let records = vec![text, map, binary, markup, tombstone, every_kind, plain_string];
    client.produce("console-orders", Some(0), records).await.unwrap();
    let commit = CommitOffsetsRequest {
        group_id: "console-billing".into(),
        member_id: None,
        generation_id: -1,
        offsets: vec![OffsetCommit { topic: "console-orders".into(), partition: 0, offset: 3, metadata: None }],
    };
    let committed: CommitOffsetsResponse = client.request(group_op::COMMIT_OFFSETS, &commit).await.unwrap();
    assert!(committed.partitions.iter().all(|p| p.error_code == 0), "{committed:?}");
    // A member that reads nothing: the lag stays 7 - 3.
    let joined = GroupConsumerConfig::new("console-billing", &["console-orders"]);
    let member = GroupConsumer::join(broker.client().await, joined).await.unwrap();
    let base = format!("http://{}/console/", broker.http_addr());

    let overview = page(format!("{base}#/overview"), "overview").await;
    assert!(overview.contains("data-page=\"overview\""), "{overview}");
    assert!(overview.contains(&broker.data_dir().display().to_string()), "{overview}");
    assert!(overview.contains(&format!("{} (protocol", env!("CARGO_PKG_VERSION"))), "{overview}");

    let topics = page(format!("{base}#/topics"), "topics").await;
    assert!(topics.contains("<tr data-topic=\"console-orders\">"), "{topics}");
    assert!(topics.contains("<td class=\"num\" data-field=\"records\">7</td>"), "{topics}");
    // Loaded again every 2 s: from the second load on, rates are figures.
    assert!(!topics.contains("data-loads=\"1\""), "loaded once only: {topics}");
    assert!(topics.contains("<td class=\"num\" data-field=\"produce-rate\">0.0 rec/s, 0 B/s</td>"), "{topics}");

    let topic = page(format!("{base}#/topics/console-orders"), "topic").await;
    assert!(topic.contains("<td class=\"num\" data-field=\"end\">7</td>"), "{topic}");
    assert!(topic.contains("href=\"#/topics/console-orders/browse?partition=1&amp;offset=0\""), "{topic}");

    let records = page(format!("{base}#/topics/console-orders/browse?partition=0&offset=0"), "browser").await;
    for (offset, kind, text) in [
        (0, "text", "grüße aus Köln"),
        (1, "msgpack", r#"{"name": "ada", "n": 3, "tags": ["x", true]}"#),
        (2, "hex", "ff 00 10 80"),
        (3, "text", "&lt;b id=\"injected\"&gt;not bold&lt;/b&gt;"),
        (5, "msgpack", "[null, -5, 1.5, bin(0102), {1: \"x\"}, ext(5, aa), 18446744073709551615]"),
        (6, "hex", "a3 61 62 63"),
    ] {
        let row = records
            .split("</tr>")
            .find(|row| row.contains(&format!("<tr data-offset=\"{offset}\">")))
            .unwrap_or_else(|| panic!("no record {offset}:\n{records}"));
        let cell = format!(
            "<td data-field=\"value\"><div class=\"kind\" data-kind=\"{kind}\">{kind}</div><pre data-kind=\"{kind}\">{text}</pre></td>"
        );
        assert!(row.contains(&cell), "record {offset} should show {cell}:\n{row}");
    }
    assert!(!records.contains("id=\"injected\">"), "record bytes were parsed as HTML:\n{records}");
    let tombstone_row = records.split("</tr>").find(|row| row.contains("<tr data-offset=\"4\">")).expect("record 4");
    assert!(tombstone_row.contains("data-kind=\"tombstone\">tombstone</div>"), "{tombstone_row}");
    assert!(records.contains("<code>source =</code>"), "the header: {records}");

    let groups = page(format!("{base}#/groups"), "groups").await;
    assert!(groups.contains("<tr data-group=\"console-billing\">"), "{groups}");
    assert!(groups.contains("<td class=\"num\" data-field=\"lag\">4</td>"), "{groups}");
    assert!(groups.contains("<td class=\"num\" data-field=\"members\">1</td>"), "{groups}");

    let group = page(format!("{base}#/groups/console-billing"), "group").await;
    let row = group
        .split("</tr>")
        .find(|row| row.contains("<tr data-partition=\"console-orders/0\">"))
        .unwrap_or_else(|| panic!("no partition 0 in:\n{group}"));
    assert!(row.contains("<td class=\"num\" data-field=\"committed\">3</td>"), "{row}");
    assert!(row.contains("<td class=\"num\" data-field=\"lag\">4</td>"), "{row}");
    let member_id = member.member_id().to_string();
    assert!(row.contains(&format!("<code>{member_id}</code>")), "partition 0 is the member's: {row}");
    let member_row = group
        .split("</tr>")
        .find(|row| row.contains(&format!("<tr data-member=\"{member_id}\">")))
        .unwrap_or_else(|| panic!("no member {member_id} in:\n{group}"));
    assert!(member_row.contains("console-orders</a>: 0, 1</div>"), "its assignment: {member_row}");
    member.close().await.unwrap();
    broker.stop().await;
}

/// Flips a bit of the byte at `position` of `path`.
fn flip(path: &std::path::Path, position: u64) {
    use std::os::unix::fs::FileExt;
    let file = std::fs::OpenOptions::new().read(true).write(true).open(path).unwrap();
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, position).unwrap();
    file.write_all_at(&[byte[0] ^ 0x10], position).unwrap();
}

#[tokio::test]
async fn damaged_topics_and_ranges_are_shown() {
    chromium::binary();
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_in(dir.path());
    let client = broker.client().await;
    for name in ["scratched", "unreadable"] {
        client.create_topic(name, 1, BTreeMap::new()).await.unwrap();
        for n in 0..3 {
            client.produce(name, Some(0), vec![keyed("k", format!("{name} {n}"))]).await.unwrap();
        }
    }
    broker.stop().await;
    // A byte of the first batch's records, checked by its CRC; and a topic
    // whose metadata cannot be read (quarantined at start).
    flip(&dir.path().join("topics/scratched/0/00000000000000000000.log"), 60);
    std::fs::write(dir.path().join("topics/unreadable/topic.json"), b"{\"name\": \"unread").unwrap();

    let broker = TestBroker::start_in(dir.path());
    wait_ready(broker.http_addr()).await;
    // A read finds the damaged batch (a clean start trusts the index).
    let (status, body) = get(broker.http_addr(), "/api/v1/topics/scratched/partitions/0/records").await;
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("CORRUPT_MESSAGE"), "{body}");
    let base = format!("http://{}/console/", broker.http_addr());

    let topics = page(format!("{base}#/topics"), "topics-damaged").await;
    let row = |name: &str| {
        topics
            .split("</tr>")
            .find(|row| row.contains(&format!("<tr data-topic=\"{name}\">")))
            .unwrap_or_else(|| panic!("no topic {name} in:\n{topics}"))
            .to_string()
    };
    assert!(row("scratched").contains("<span class=\"badge bad\">1 damaged range</span>"), "{}", row("scratched"));
    let unreadable = row("unreadable");
    assert!(unreadable.contains("<span class=\"badge bad\">damaged</span>"), "{unreadable}");
    assert!(unreadable.contains("topic.json"), "the reason: {unreadable}");

    let topic = page(format!("{base}#/topics/scratched"), "topic-damaged").await;
    assert!(topic.contains("<li class=\"error\">offsets 0 to 0 (segment 0; next readable 1): "), "{topic}");

    // The browser keeps its form on an error, and reads past the range.
    let records = page(format!("{base}#/topics/scratched/browse?partition=0&offset=0"), "browser-damaged").await;
    assert!(records.contains("<p class=\"error\" data-field=\"records-error\">"), "{records}");
    assert!(records.contains("CORRUPT_MESSAGE"), "{records}");
    assert!(records.contains("<form class=\"browse\">"), "{records}");
    let past = page(format!("{base}#/topics/scratched/browse?partition=0&offset=1"), "browser-past-damage").await;
    assert!(past.contains("<pre data-kind=\"text\">scratched 1</pre>"), "{past}");
    broker.stop().await;
}

#[tokio::test]
async fn the_root_leads_to_the_console_and_unknown_files_are_404() {
    let broker = TestBroker::start();
    let http = broker.http_addr();
    let (status, _) = get(http, "/").await;
    assert_eq!(status, 302);
    let (status, index) = get(http, "/console/").await;
    assert_eq!(status, 200);
    assert!(index.contains("<script type=\"module\" src=\"/console/app.js\"></script>"), "{index}");
    let (status, _) = get(http, "/console/nope.js").await;
    assert_eq!(status, 404);
    broker.stop().await;
}
