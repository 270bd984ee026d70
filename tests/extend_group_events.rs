//! Group events for a custom actor (`ExtensionContext::watch_group`): the
//! membership of a group of Rust group consumers, delivered as it changes.

mod common;

use std::time::Duration;

use actix::prelude::*;
use common::{test_settings, TestBroker};
use herald::client::{GroupConsumer, GroupConsumerConfig};
use herald::extension::{CustomError, CustomRequest, CustomResult, GroupChanged, Stop, SubscriptionHandle};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

struct Watcher {
    out: UnboundedSender<GroupChanged>,
    handle: Option<SubscriptionHandle>,
    context: herald::extension::ExtensionContext,
}

impl Actor for Watcher {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.handle = Some(self.context.watch_group("g", ctx.address().recipient()));
    }
}

impl Handler<GroupChanged> for Watcher {
    type Result = ();

    fn handle(&mut self, changed: GroupChanged, _: &mut Context<Self>) {
        let _ = self.out.send(changed);
    }
}

impl Handler<CustomRequest> for Watcher {
    type Result = CustomResult;

    fn handle(&mut self, _: CustomRequest, _: &mut Context<Self>) -> CustomResult {
        Err(CustomError::invalid_request("serves no operation"))
    }
}

impl Handler<Stop> for Watcher {
    type Result = ();

    fn handle(&mut self, _: Stop, _: &mut Context<Self>) {}
}

/// Polls the consumers until an event satisfying `wanted` comes.
async fn until(
    rx: &mut UnboundedReceiver<GroupChanged>,
    seen: &mut Vec<GroupChanged>,
    consumers: &mut [&mut GroupConsumer],
    wanted: impl Fn(&GroupChanged) -> bool,
) -> GroupChanged {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        for consumer in consumers.iter_mut() {
            consumer.poll().await.expect("poll");
        }
        while let Ok(event) = rx.try_recv() {
            seen.push(event.clone());
            if wanted(&event) {
                return event;
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "no such group event");
    }
}

#[tokio::test]
async fn a_custom_actor_sees_a_groups_rebalances() {
    let dir = tempfile::tempdir().unwrap();
    let (tx, mut rx) = unbounded_channel();
    let broker = TestBroker::start_built(test_settings(dir.path()), move |builder| {
        builder.actor("watcher", move |context| Watcher { out: tx.clone(), handle: None, context })
    });
    let client = broker.client().await;
    client.create_topic("t", 4, Default::default()).await.unwrap();
    let config = GroupConsumerConfig { max_wait_ms: 20, ..GroupConsumerConfig::new("g", &["t"]) };

    let mut seen = Vec::new();
    let mut a = GroupConsumer::join(broker.client().await, config.clone()).await.expect("join");
    let one = until(&mut rx, &mut seen, &mut [&mut a], |e| e.members.len() == 1 && e.state == "Stable").await;
    assert_eq!(one.members[0].member_id, a.member_id());
    assert_eq!(one.members[0].assignment.len(), 4);

    let mut b = GroupConsumer::join(broker.client().await, config.clone()).await.expect("join");
    let two = until(&mut rx, &mut seen, &mut [&mut a, &mut b], |e| e.members.len() == 2 && e.state == "Stable").await;
    assert!(two.generation_id > one.generation_id, "a rebalance raises the generation");
    let sizes: Vec<usize> = two.members.iter().map(|m| m.assignment.len()).collect();
    assert_eq!(sizes, [2, 2], "{two:?}");

    b.close().await.expect("leave");
    let back = until(&mut rx, &mut seen, &mut [&mut a], |e| e.members.len() == 1 && e.state == "Stable").await;
    assert!(back.generation_id > two.generation_id);
    assert_eq!(back.members[0].member_id, a.member_id());

    // Two joins back to back: each raises the generation, and each is seen.
    let mut c = GroupConsumer::join(broker.client().await, config.clone()).await.expect("join");
    let mut d = GroupConsumer::join(broker.client().await, config).await.expect("join");
    let three =
        until(&mut rx, &mut seen, &mut [&mut a, &mut c, &mut d], |e| e.members.len() == 3 && e.state == "Stable").await;
    assert!(three.generation_id >= back.generation_id + 2);

    // Every membership was pushed as it happened, in order: no two equal
    // events in a row, and no generation skipped.
    for pair in seen.windows(2) {
        assert_ne!(pair[0], pair[1], "the same membership twice in a row");
        let step = pair[1].generation_id - pair[0].generation_id;
        assert!(
            step == 0 || step == 1,
            "generation {} then {}: {seen:#?}",
            pair[0].generation_id,
            pair[1].generation_id
        );
    }
    assert!(seen.iter().any(|e| e.members.len() == 2 && e.state == "Reconciling"), "the rebalance's steps are seen");
    broker.stop().await;
}
