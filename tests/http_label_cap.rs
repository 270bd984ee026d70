//! `http.metrics_max_label_sets`: topics and groups past the cap are added up
//! under `_other` in `/metrics`.
//!
//! Metrics are process-wide (the cap too), so this file holds one test.

mod common;

use std::collections::BTreeMap;

use common::http::{get, sample, value};
use common::{test_settings, value as record, TestBroker};
use herald::protocol::{group_op, CommitOffsetsRequest, CommitOffsetsResponse, OffsetCommit};

#[tokio::test]
async fn topics_and_groups_past_the_cap_are_folded_into_other() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings(dir.path());
    settings.http.metrics_max_label_sets = 2;
    let broker = TestBroker::start_with(settings);
    let client = broker.client().await;
    for topic in ["a", "b", "c", "d"] {
        client.create_topic(topic, 1, BTreeMap::new()).await.unwrap();
        client.produce(topic, Some(0), vec![record("x"), record("y")]).await.unwrap();
    }
    for group in ["g1", "g2", "g3", "g4"] {
        let commit = CommitOffsetsRequest {
            group_id: group.into(),
            member_id: None,
            generation_id: -1,
            offsets: vec![OffsetCommit { topic: "a".into(), partition: 0, offset: 1, metadata: None }],
        };
        let committed: CommitOffsetsResponse = client.request(group_op::COMMIT_OFFSETS, &commit).await.unwrap();
        assert!(committed.partitions.iter().all(|p| p.error_code == 0), "{committed:?}");
    }
    let (_, m) = get(broker.http_addr(), "/metrics").await;
    assert_eq!(value(&m, r#"herald_produced_records_total{topic="a"}"#), 2.0);
    assert_eq!(value(&m, r#"herald_produced_records_total{topic="b"}"#), 2.0);
    assert_eq!(sample(&m, r#"herald_produced_records_total{topic="c"}"#), None, "{m}");
    assert_eq!(sample(&m, r#"herald_produced_records_total{topic="d"}"#), None, "{m}");
    assert_eq!(value(&m, r#"herald_produced_records_total{topic="_other"}"#), 4.0);
    // Groups by name: g1 and g2 keep theirs; the lag of g3 and g4 is added up.
    assert_eq!(value(&m, r#"herald_group_lag_records{group="g1",topic="a",partition="0"}"#), 1.0);
    assert_eq!(value(&m, r#"herald_group_lag_records{group="g2",topic="a",partition="0"}"#), 1.0);
    assert_eq!(sample(&m, r#"herald_group_lag_records{group="g3",topic="a",partition="0"}"#), None, "{m}");
    assert_eq!(value(&m, r#"herald_group_lag_records{group="_other",topic="a",partition="0"}"#), 2.0);
    broker.stop().await;
}
