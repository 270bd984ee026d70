//! One `Client` connection shared by many callers: each caller writes its
//! own frame when the socket is free, the rest queue behind it in order, and
//! every answer reaches the caller that asked; a broker that goes away while
//! frames are still being written fails every request instead of leaving it
//! waiting.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bytes::Bytes;
use common::{keyed, read_partition, TestBroker, PATIENCE};
use herald::client::{Client, ClientError, Producer, ProducerConfig, Timeouts};
use herald::protocol::WireRecord;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn record(value: Vec<u8>) -> WireRecord {
    WireRecord { key: None, value: Some(Bytes::from(value)), headers: Vec::new(), timestamp: None }
}

/// `size` bytes starting with `tag`, so that a record tells who sent it.
fn tagged(tag: &str, size: usize) -> Vec<u8> {
    let mut value = tag.as_bytes().to_vec();
    value.resize(size.max(tag.len()), b'.');
    value
}

/// Tasks sending at once on one client, each to its own partition, small and
/// large requests mixed (a large one does not fit the socket at once and is
/// queued; small ones written meanwhile must wait behind it): every answer
/// names the offset of that task's own record, and the log holds each
/// task's records in its order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_tasks_on_one_client_each_get_their_own_answers() {
    const TASKS: u32 = 16;
    const EACH: i64 = 40;
    let broker = TestBroker::start();
    let client = broker.client().await;
    client.create_topic("shared", i64::from(TASKS), BTreeMap::new()).await.unwrap();

    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            for n in 0..EACH {
                // Every tenth request of a task is 2 MB.
                let size = if (n + i64::from(task)) % 10 == 0 { 2 << 20 } else { 100 };
                let value = tagged(&format!("{task}/{n}"), size);
                let answer = client.produce("shared", Some(task), vec![record(value)]).await.unwrap();
                assert_eq!((answer[0].partition, answer[0].base_offset), (task, n), "task {task}, request {n}");
                if n % 10 == 0 {
                    // Other kinds of requests in between.
                    let end = client.list_offsets("shared", task, -1).await.unwrap();
                    assert_eq!(end, n + 1);
                }
            }
        }));
    }
    for task in tasks {
        tokio::time::timeout(PATIENCE * 4, task).await.expect("every task ends").expect("every answer is right");
    }
    for task in 0..TASKS {
        let records = read_partition(&client, "shared", task, 0).await;
        assert_eq!(records.len() as i64, EACH);
        for (n, stored) in records.iter().enumerate() {
            let tag = format!("{task}/{n}");
            assert!(stored.value.as_deref().unwrap_or_default().starts_with(tag.as_bytes()), "{tag}");
        }
    }
    broker.stop().await;
}

/// Requests started one after another without waiting (a pipeline), large
/// ones among them, through a link that takes the client's bytes slowly (so
/// the socket's buffer fills and frames are written in parts, the rest by
/// the writer task): they reach the broker whole and in the order they were
/// started, and so land at increasing offsets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_keep_their_order_behind_a_large_one() {
    let broker = TestBroker::start();
    let client = Client::connect(slow_link(broker.addr()).await, "slow").await.unwrap();
    client.create_topic("ordered", 1, BTreeMap::new()).await.unwrap();

    let mut answers = Vec::new();
    for n in 0..64u32 {
        let size = if n % 16 == 0 { 4 << 20 } else { 64 };
        let batch = vec![record(tagged(&format!("#{n}"), size))];
        answers.push(client.start_produce("ordered", Some(0), batch, 1).unwrap());
    }
    for (n, answer) in answers.into_iter().enumerate() {
        let landed = tokio::time::timeout(PATIENCE, answer).await.expect("answered").unwrap();
        assert_eq!(landed[0].base_offset, n as i64);
    }
    broker.stop().await;
}

/// A link to `broker` that passes the client's bytes on 64 KiB at a time,
/// a millisecond apart, and the broker's at once.
async fn slow_link(broker: std::net::SocketAddr) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (client, _) = listener.accept().await.unwrap();
        let upstream = TcpStream::connect(broker).await.unwrap();
        let (mut from_client, mut to_client) = client.into_split();
        let (mut from_broker, mut to_broker) = upstream.into_split();
        tokio::spawn(async move { tokio::io::copy(&mut from_broker, &mut to_client).await });
        let mut chunk = vec![0u8; 64 << 10];
        while let Ok(n @ 1..) = from_client.read(&mut chunk).await {
            if to_broker.write_all(&chunk[..n]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    });
    addr
}

/// A broker in front of which a connection stops being read, then closes:
/// it forwards the handshake to the real broker, reads `forwarded` more bytes
/// from the client, then neither reads nor answers until `close` fires.
async fn stalling_proxy(
    broker: std::net::SocketAddr,
    forwarded: usize,
    close: tokio::sync::oneshot::Receiver<()>,
) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut client, _) = listener.accept().await.unwrap();
        let mut upstream = TcpStream::connect(broker).await.unwrap();
        // The handshake: one frame each way.
        forward_frame(&mut client, &mut upstream).await;
        forward_frame(&mut upstream, &mut client).await;
        let mut taken = vec![0u8; forwarded];
        client.read_exact(&mut taken).await.unwrap();
        let _ = close.await;
        drop(client);
    });
    addr
}

/// Copies one length-prefixed frame from `from` to `to`.
async fn forward_frame(from: &mut TcpStream, to: &mut TcpStream) {
    let mut len = [0u8; 4];
    from.read_exact(&mut len).await.unwrap();
    let mut frame = vec![0u8; u32::from_be_bytes(len) as usize];
    from.read_exact(&mut frame).await.unwrap();
    to.write_all(&len).await.unwrap();
    to.write_all(&frame).await.unwrap();
}

/// The connection goes away while frames are still queued (the peer stopped
/// reading in the middle of a large one): every request started on it fails
/// (none waits for its timeout), the client says it is closed, and a new
/// request fails at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_queued_when_the_broker_disconnects_mid_write_all_fail() {
    let broker = TestBroker::start();
    let (close, closing) = tokio::sync::oneshot::channel();
    let proxy = stalling_proxy(broker.addr(), 1000, closing).await;
    let timeouts = Timeouts { connect: PATIENCE, request: Duration::from_secs(600) };
    let client = Client::connect_with(proxy, "stalled", timeouts).await.unwrap();

    // Far more than the socket buffers hold: most of it stays queued.
    let mut answers = Vec::new();
    for n in 0..12 {
        let batch = vec![record(tagged(&format!("#{n}"), 4 << 20))];
        answers.push(client.start_produce("anything", Some(0), batch, 1).unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    close.send(()).unwrap();
    for answer in answers {
        let err = tokio::time::timeout(PATIENCE, answer).await.expect("no request waits for its timeout");
        assert!(matches!(err, Err(ClientError::Closed | ClientError::Io(_))), "{err:?}");
    }
    tokio::time::timeout(PATIENCE, async {
        while !client.is_closed() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the client sees its connection closed");
    let err = tokio::time::timeout(PATIENCE, client.list_topics()).await.expect("fails at once").unwrap_err();
    assert!(err.retriable(), "{err}");
    broker.stop().await;
}

/// A producer without linger sends a record itself when nothing waits, and
/// queues it when the in-flight window is full or records wait before it:
/// either way, each sender's records land in the order sent, where their
/// answers say.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_without_linger_keeps_each_senders_order() {
    const SENDERS: usize = 4;
    const EACH: usize = 1_500;
    let broker = TestBroker::start();
    let client = broker.client().await;
    client.create_topic("direct", 3, BTreeMap::new()).await.unwrap();
    let config = ProducerConfig { linger_ms: 0, max_in_flight: 2, ..ProducerConfig::default() };
    let producer = std::sync::Arc::new(Producer::new(client.clone(), config));

    let mut senders = Vec::new();
    for sender in 0..SENDERS {
        let producer = producer.clone();
        senders.push(tokio::spawn(async move {
            let mut answers = Vec::with_capacity(EACH);
            for n in 0..EACH {
                let record = keyed(format!("sender-{sender}"), format!("{sender}/{n}"));
                answers.push(producer.send("direct", None, record).await.unwrap());
                if n % 100 == 0 {
                    // Now and then the window drains and the next goes at once.
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
            let mut landed = Vec::with_capacity(EACH);
            for answer in answers {
                landed.push(answer.await.expect("answered").expect("acknowledged"));
            }
            landed
        }));
    }
    let mut landed = Vec::new();
    for task in senders {
        landed.push(tokio::time::timeout(PATIENCE, task).await.expect("every sender ends").unwrap());
    }
    let mut stored = HashMap::new();
    for partition in 0..3 {
        for record in read_partition(&client, "direct", partition, 0).await {
            stored.insert((partition, record.offset), common::text(&record));
        }
    }
    assert_eq!(stored.len(), SENDERS * EACH);
    let mut total = 0;
    for (sender, landed) in landed.iter().enumerate() {
        let mut last = None;
        for (n, metadata) in landed.iter().enumerate() {
            let at = (metadata.partition, metadata.offset);
            assert_eq!(stored.get(&at), Some(&format!("{sender}/{n}")), "where record {n} of {sender} landed");
            assert!(last.is_none_or(|l| l < at), "in order: {sender}/{n}");
            last = Some(at);
            total += 1;
        }
    }
    assert_eq!(total, SENDERS * EACH);
    broker.stop().await;
}
