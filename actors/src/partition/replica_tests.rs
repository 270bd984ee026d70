//! Replication between partition actors, each on its own temporary
//! directory: the tests carry a leader's `ReplicaFetched` into a follower's
//! `AppendAsFollower` as the cluster layer's fetcher does over the network.

use std::path::Path;
use std::time::Duration;

use actix::prelude::*;
use bytes::Bytes;
use tokio::sync::mpsc;

use super::*;
use crate::batch::Record;

/// How long a test waits for what should happen at once.
const PATIENCE: Duration = Duration::from_secs(10);

fn settings(lag_ms: u64) -> PartitionSettings {
    PartitionSettings {
        flush: FlushPolicy::Always,
        flush_interval_ms: 10,
        retention_check_interval_ms: 60_000,
        scrub: ScrubBudget::new(0),
        replica_lag_time_max_ms: lag_ms,
        replicated: false,
        producer_id_expiration_ms: 86_400_000,
    }
}

fn start_with(dir: &Path, writer: &SyncWriter, config: TopicConfig, lag_ms: u64) -> Addr<Partition> {
    let (dir, writer) = (dir.to_path_buf(), writer.clone());
    Supervisor::start(move |_| {
        Partition::new("t".into(), 0, dir.clone(), config.clone(), settings(lag_ms), writer.clone(), false)
    })
}

pub(super) fn start(dir: &Path, writer: &SyncWriter) -> Addr<Partition> {
    start_with(dir, writer, TopicConfig::default(), DEFAULT_REPLICA_LAG_TIME_MAX_MS)
}

fn batch_of(values: &[&str]) -> BytesMut {
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Record {
            value: Some(Bytes::copy_from_slice(v.as_bytes())),
            timestamp: crate::now_ms() + i as i64,
            ..Record::default()
        })
        .collect();
    batch::encode(&records).unwrap()
}

fn append_msg(values: &[&str], acks: i8, timeout_ms: u64) -> Append {
    Append { batch: batch_of(values), checked: true, acks, timeout_ms }
}

pub(super) async fn append(addr: &Addr<Partition>, values: &[&str], acks: i8) -> Result<Appended, BrokerError> {
    let answer = tokio::time::timeout(PATIENCE, addr.send(append_msg(values, acks, 10_000))).await;
    answer.expect("answered in time").expect("the partition is running")
}

pub(super) async fn describe(addr: &Addr<Partition>) -> PartitionState {
    addr.send(Describe).await.unwrap().unwrap()
}

pub(super) async fn consume(addr: &Addr<Partition>, offset: i64) -> Result<FetchResult, BrokerError> {
    addr.send(Fetch { offset, max_bytes: 1 << 20, min_bytes: 0, max_wait_ms: 0 }).await.unwrap()
}

/// (offset, value) of every record in `bytes`.
pub(super) fn values(bytes: &Bytes) -> Vec<(i64, String)> {
    batch::decode_all(bytes)
        .unwrap()
        .into_iter()
        .map(|r| (r.offset, String::from_utf8(r.value.unwrap().to_vec()).unwrap()))
        .collect()
}

pub(super) fn leader_msg(
    epoch: i32,
    replicas: &[i32],
    isr: &[i32],
    min: u32,
    sink: Option<Recipient<IsrProposal>>,
) -> BecomeLeader {
    BecomeLeader {
        leader_epoch: epoch,
        replicas: replicas.to_vec(),
        isr: isr.to_vec(),
        min_insync_replicas: min,
        my_id: replicas[0],
        isr_sink: sink,
    }
}

pub(super) fn replica_fetch(id: i32, offset: i64, epoch: i32) -> ReplicaFetch {
    ReplicaFetch { replica_id: id, fetch_offset: offset, follower_epoch: epoch, max_bytes: 1 << 20, max_wait_ms: 0 }
}

/// One round of the follower's fetcher: fetch from its log end, append
/// what came. Returns the follower's new log end.
pub(super) async fn fetch_round(leader: &Addr<Partition>, follower: &Addr<Partition>, id: i32, epoch: i32) -> i64 {
    let leo = describe(follower).await.log_end_offset;
    let fetched = leader.send(replica_fetch(id, leo, epoch)).await.unwrap().expect("the leader serves its follower");
    let appending = AppendAsFollower {
        leader_epoch: epoch,
        records: fetched.records,
        epochs: fetched.epochs,
        leader_high_watermark: fetched.high_watermark,
        leader_log_start_offset: fetched.log_start_offset,
    };
    follower.send(appending).await.unwrap().expect("the follower appends")
}

/// The bytes of a partition's log: its `.log` files in offset order, one
/// after the other (where segments roll is each replica's own affair).
pub(super) fn log_bytes(dir: &Path) -> Vec<u8> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
        .collect();
    files.sort();
    files.into_iter().flat_map(|(_, bytes)| bytes).collect()
}

/// Collects the ISR proposals a leader sends.
struct Sink(mpsc::UnboundedSender<IsrProposal>);

impl Actor for Sink {
    type Context = Context<Self>;
}

impl Handler<IsrProposal> for Sink {
    type Result = ();

    fn handle(&mut self, msg: IsrProposal, _: &mut Context<Self>) {
        let _ = self.0.send(msg);
    }
}

fn sink() -> (Recipient<IsrProposal>, mpsc::UnboundedReceiver<IsrProposal>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (Sink(tx).start().recipient(), rx)
}

async fn next_proposal(rx: &mut mpsc::UnboundedReceiver<IsrProposal>) -> IsrProposal {
    tokio::time::timeout(PATIENCE, rx.recv()).await.expect("a proposal in time").expect("the sink runs")
}

pub(super) fn code<T: std::fmt::Debug>(result: Result<T, BrokerError>) -> ErrorCode {
    result.expect_err("refused").code
}

#[actix::test]
async fn acks_all_is_answered_once_every_follower_has_the_batch() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let writer = SyncWriter::start("test").unwrap();
    let [leader, f2, f3] = [0, 1, 2].map(|i| start(dirs[i].path(), &writer));
    leader.send(leader_msg(1, &[1, 2, 3], &[1, 2, 3], 2, None)).await.unwrap().unwrap();
    for f in [&f2, &f3] {
        f.send(BecomeFollower { leader_epoch: 1, leader: 1 }).await.unwrap().unwrap();
    }

    let mut acked = Box::pin(leader.send(append_msg(&["a", "b", "c"], -1, 10_000)));
    let waits = tokio::time::timeout(Duration::from_millis(200), &mut acked).await;
    assert!(waits.is_err(), "answered before any follower fetched");
    let seen = consume(&leader, 0).await.unwrap();
    assert!(seen.records.is_empty() && seen.high_watermark == 0, "a consumer sees past the HW: {seen:?}");
    let latest = tokio::time::timeout(PATIENCE, leader.send(ListOffsets { timestamp: -1 })).await;
    assert_eq!(latest.expect("the latest offset is the HW, at once").unwrap().unwrap(), 0);

    assert_eq!(fetch_round(&leader, &f2, 2, 1).await, 3);
    assert_eq!(fetch_round(&leader, &f2, 2, 1).await, 3, "follower 2 reports its log end");
    let waits = tokio::time::timeout(Duration::from_millis(200), &mut acked).await;
    assert!(waits.is_err(), "answered before follower 3 had the batch");
    assert_eq!(describe(&leader).await.high_watermark, 0);

    fetch_round(&leader, &f3, 3, 1).await;
    fetch_round(&leader, &f3, 3, 1).await;
    let appended = tokio::time::timeout(PATIENCE, acked).await.expect("answered").unwrap().unwrap();
    assert_eq!(appended, Appended { base_offset: 0, record_count: 3 });
    let seen = consume(&leader, 0).await.unwrap();
    assert_eq!(values(&seen.records).len(), 3);
    assert_eq!(seen.high_watermark, 3);

    // acks=1 is answered at once; consumers see it only once replicated.
    append(&leader, &["d"], 1).await.unwrap();
    assert_eq!(consume(&leader, 3).await.unwrap().records.len(), 0);
    for (f, id) in [(&f2, 2), (&f3, 3)] {
        fetch_round(&leader, f, id, 1).await;
        fetch_round(&leader, f, id, 1).await;
    }
    assert_eq!(values(&consume(&leader, 3).await.unwrap().records), [(3, "d".to_string())]);
    // Follower 2 fetched before follower 3 had "d": its next fetch brings the HW.
    assert_eq!(describe(&f2).await.high_watermark, 3);
    fetch_round(&leader, &f2, 2, 1).await;
    let state = describe(&f2).await;
    assert_eq!((state.log_end_offset, state.high_watermark), (4, 4), "a follower's HW follows the leader's");
    assert_eq!(state.role, RoleInfo::Follower { leader: 1 });
    let state = describe(&leader).await;
    assert_eq!((state.role, state.leader_epoch), (RoleInfo::Leader { isr: vec![1, 2, 3], replicas: vec![1, 2, 3] }, 1));

    let leader_files = log_bytes(dirs[0].path());
    assert_eq!(leader_files.len() as u64, describe(&leader).await.size_bytes);
    assert_eq!(log_bytes(dirs[1].path()), leader_files, "follower 2's log differs from the leader's");
    assert_eq!(log_bytes(dirs[2].path()), leader_files, "follower 3's log differs from the leader's");

    // A follower serves no client.
    assert_eq!(code(append(&f2, &["x"], 1).await), ErrorCode::NOT_LEADER_OR_FOLLOWER);
    assert_eq!(code(consume(&f2, 0).await), ErrorCode::NOT_LEADER_OR_FOLLOWER);
    assert_eq!(code(f2.send(ListOffsets { timestamp: -1 }).await.unwrap()), ErrorCode::NOT_LEADER_OR_FOLLOWER);
}

#[actix::test]
async fn a_follower_long_poll_is_answered_by_an_append() {
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let writer = SyncWriter::start("test").unwrap();
    let (leader, follower) = (start(dirs[0].path(), &writer), start(dirs[1].path(), &writer));
    leader.send(leader_msg(1, &[1, 2], &[1, 2], 1, None)).await.unwrap().unwrap();
    follower.send(BecomeFollower { leader_epoch: 1, leader: 1 }).await.unwrap().unwrap();
    let mut polling = Box::pin(leader.send(ReplicaFetch { max_wait_ms: 20_000, ..replica_fetch(2, 0, 1) }));
    assert!(tokio::time::timeout(Duration::from_millis(200), &mut polling).await.is_err(), "no data yet");
    append(&leader, &["a"], 1).await.unwrap();
    let fetched = tokio::time::timeout(PATIENCE, polling).await.expect("woken by the append").unwrap().unwrap();
    assert_eq!(values(&fetched.records), [(0, "a".to_string())]);
    assert_eq!(fetched.epochs, [(1, 0)]);
    // A fetch with nothing new waits out its max_wait_ms.
    let started = std::time::Instant::now();
    let empty = leader.send(ReplicaFetch { max_wait_ms: 100, ..replica_fetch(2, 1, 1) }).await.unwrap().unwrap();
    assert!(empty.records.is_empty() && started.elapsed() >= Duration::from_millis(100));
}

#[actix::test]
async fn the_isr_shrinks_and_grows_by_proposals() {
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let writer = SyncWriter::start("test").unwrap();
    let leader = start_with(dirs[0].path(), &writer, TopicConfig::default(), 200);
    let follower = start(dirs[1].path(), &writer);
    let (recipient, mut proposals) = sink();
    leader.send(leader_msg(5, &[1, 2], &[1, 2], 2, Some(recipient))).await.unwrap().unwrap();
    follower.send(BecomeFollower { leader_epoch: 5, leader: 1 }).await.unwrap().unwrap();
    fetch_round(&leader, &follower, 2, 5).await;

    // The follower stops fetching: an acks=-1 append waits, then the
    // follower is proposed out; once that is confirmed the HW moves
    // without it, and the append learns the ISR is too small.
    let acked = leader.send(append_msg(&["a"], -1, 20_000));
    let proposal = next_proposal(&mut proposals).await;
    assert_eq!(proposal, IsrProposal { topic: "t".into(), partition: 0, leader_epoch: 5, isr: vec![1] });
    leader.send(IsrUpdated { leader_epoch: 4, isr: vec![1] }).await.unwrap();
    assert_eq!(describe(&leader).await.role, RoleInfo::Leader { isr: vec![1, 2], replicas: vec![1, 2] });
    leader.send(IsrUpdated { leader_epoch: 5, isr: vec![1] }).await.unwrap();
    let answer = tokio::time::timeout(PATIENCE, acked).await.expect("answered").unwrap();
    assert_eq!(code(answer), ErrorCode::NOT_ENOUGH_REPLICAS_AFTER_APPEND);
    assert_eq!(describe(&leader).await.high_watermark, 1);

    assert_eq!(code(append(&leader, &["b"], -1).await), ErrorCode::NOT_ENOUGH_REPLICAS);
    assert_eq!(describe(&leader).await.log_end_offset, 1, "refused before appending");
    append(&leader, &["b"], 1).await.unwrap();
    assert_eq!(describe(&leader).await.high_watermark, 2);

    // The follower catches up: proposed back in.
    fetch_round(&leader, &follower, 2, 5).await;
    fetch_round(&leader, &follower, 2, 5).await;
    let proposal = next_proposal(&mut proposals).await;
    assert_eq!(proposal.isr, [1, 2]);
    leader.send(IsrUpdated { leader_epoch: 5, isr: vec![1, 2] }).await.unwrap();
    let acked = leader.send(append_msg(&["c"], -1, 20_000));
    fetch_round(&leader, &follower, 2, 5).await;
    fetch_round(&leader, &follower, 2, 5).await;
    let answer = tokio::time::timeout(PATIENCE, acked).await.expect("answered").unwrap();
    assert_eq!(answer.unwrap().base_offset, 2);

    // An append nobody replicates times out.
    let answer = leader.send(append_msg(&["d"], -1, 100)).await.unwrap();
    assert_eq!(code(answer), ErrorCode::REQUEST_TIMED_OUT);
}

#[actix::test]
async fn leader_epochs_fence_stale_requests() {
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let writer = SyncWriter::start("test").unwrap();
    let (leader, follower) = (start(dirs[0].path(), &writer), start(dirs[1].path(), &writer));
    leader.send(leader_msg(3, &[1, 2], &[1, 2], 1, None)).await.unwrap().unwrap();
    follower.send(BecomeFollower { leader_epoch: 3, leader: 1 }).await.unwrap().unwrap();

    let fetch = |epoch| leader.send(replica_fetch(2, 0, epoch));
    assert_eq!(code(fetch(2).await.unwrap()), ErrorCode::FENCED_LEADER_EPOCH);
    assert_eq!(code(fetch(4).await.unwrap()), ErrorCode::UNKNOWN_LEADER_EPOCH);
    assert_eq!(code(follower.send(replica_fetch(1, 0, 3)).await.unwrap()), ErrorCode::NOT_LEADER_OR_FOLLOWER);
    let older = leader.send(leader_msg(2, &[1, 2], &[1, 2], 1, None)).await.unwrap();
    assert_eq!(code(older), ErrorCode::FENCED_LEADER_EPOCH);
    leader.send(leader_msg(3, &[1, 2], &[1, 2], 1, None)).await.unwrap().expect("the same epoch again is a no-op");
    let same_epoch_other_role = leader.send(BecomeFollower { leader_epoch: 3, leader: 2 }).await.unwrap();
    assert_eq!(code(same_epoch_other_role), ErrorCode::FENCED_LEADER_EPOCH);
    assert_eq!(
        code(follower.send(BecomeFollower { leader_epoch: 2, leader: 1 }).await.unwrap()),
        ErrorCode::FENCED_LEADER_EPOCH
    );

    // A waiting acks=-1 append learns that the partition stopped leading.
    let acked = leader.send(append_msg(&["a"], -1, 20_000));
    tokio::time::sleep(Duration::from_millis(100)).await;
    leader.send(BecomeFollower { leader_epoch: 4, leader: 2 }).await.unwrap().unwrap();
    let answer = tokio::time::timeout(PATIENCE, acked).await.expect("answered").unwrap();
    assert_eq!(code(answer), ErrorCode::NOT_LEADER_OR_FOLLOWER);
    let state = describe(&leader).await;
    assert_eq!((state.role, state.leader_epoch), (RoleInfo::Follower { leader: 2 }, 4));
}

#[actix::test]
async fn a_former_leader_truncates_its_divergent_tail() {
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let writer = SyncWriter::start("test").unwrap();
    let (a, b) = (start(dirs[0].path(), &writer), start(dirs[1].path(), &writer));
    // A leads epoch 1 and appends offsets 0..=10; B has 0..=5.
    a.send(leader_msg(1, &[1, 2], &[1, 2], 1, None)).await.unwrap().unwrap();
    b.send(BecomeFollower { leader_epoch: 1, leader: 1 }).await.unwrap().unwrap();
    append(&a, &["a0", "a1", "a2"], 1).await.unwrap();
    append(&a, &["a3", "a4", "a5"], 1).await.unwrap();
    assert_eq!(fetch_round(&a, &b, 2, 1).await, 6);
    append(&a, &["a6", "a7", "a8", "a9", "a10"], 1).await.unwrap();

    // A "dies"; B leads epoch 2 and appends 6..=8, other data.
    b.send(leader_msg(2, &[2, 1], &[2], 1, None)).await.unwrap().unwrap();
    append(&b, &["b6", "b7", "b8"], 1).await.unwrap();

    // A comes back as a follower: it asks B where its latest epoch ended,
    // truncates there, and fetches.
    a.send(BecomeFollower { leader_epoch: 2, leader: 2 }).await.unwrap().unwrap();
    assert_eq!(b.send(LeaderEpochEndOffset { epoch: 1 }).await.unwrap().unwrap(), (1, 6));
    assert_eq!(b.send(LeaderEpochEndOffset { epoch: 2 }).await.unwrap().unwrap(), (2, 9));
    let a_end = describe(&a).await.log_end_offset;
    assert_eq!(a_end, 11);
    assert_eq!(a.send(TruncateTo { offset: 6.min(a_end) }).await.unwrap().unwrap(), 6);
    assert_eq!(fetch_round(&b, &a, 1, 2).await, 9);
    assert_eq!(log_bytes(dirs[0].path()), log_bytes(dirs[1].path()), "A's log differs from B's");
    let read = b.send(ReplicaFetch { ..replica_fetch(1, 0, 2) }).await.unwrap().unwrap();
    let got: Vec<String> = values(&read.records).into_iter().map(|(_, v)| v).collect();
    assert_eq!(got, ["a0", "a1", "a2", "a3", "a4", "a5", "b6", "b7", "b8"]);
    assert_eq!(read.epochs, [(1, 0), (2, 6)]);
    assert_eq!(std::fs::read_to_string(dirs[0].path().join("leader-epoch-checkpoint")).unwrap(), "1 0\n2 6\n");
    // The HW reaches A with its next fetch.
    fetch_round(&b, &a, 1, 2).await;
    assert_eq!(describe(&a).await.high_watermark, 9);
}

#[actix::test]
async fn a_truncation_across_segments_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let writer = SyncWriter::start("test").unwrap();
    // Every batch in a segment of its own.
    let config = TopicConfig { segment_max_bytes: 200, ..TopicConfig::default() };
    let addr = start_with(dir.path(), &writer, config.clone(), DEFAULT_REPLICA_LAG_TIME_MAX_MS);
    for i in 0..6 {
        append(&addr, &[&format!("v{i}a"), &format!("v{i}b")], 1).await.unwrap();
    }
    assert_eq!(describe(&addr).await.segments, 6);
    assert_eq!(addr.send(TruncateTo { offset: 13 }).await.unwrap().unwrap(), 12, "past the end: no change");
    assert_eq!(code(addr.send(TruncateTo { offset: -1 }).await.unwrap()), ErrorCode::OFFSET_OUT_OF_RANGE);

    // At a segment boundary: the segment before it becomes the active one.
    assert_eq!(addr.send(TruncateTo { offset: 6 }).await.unwrap().unwrap(), 6);
    let state = describe(&addr).await;
    assert_eq!((state.segments, state.log_end_offset, state.high_watermark), (3, 6, 6));
    assert_eq!(append(&addr, &["new"], 1).await.unwrap().base_offset, 6);
    // Inside a batch: the batch goes whole.
    assert_eq!(addr.send(TruncateTo { offset: 3 }).await.unwrap().unwrap(), 2);
    addr.send(Shutdown).await.unwrap().unwrap();

    let reopened = start_with(dir.path(), &writer, config, DEFAULT_REPLICA_LAG_TIME_MAX_MS);
    let state = describe(&reopened).await;
    assert_eq!((state.segments, state.log_end_offset), (2, 2));
    let read = consume(&reopened, 0).await.unwrap();
    assert_eq!(values(&read.records), [(0, "v0a".to_string()), (1, "v0b".to_string())]);
    assert_eq!(append(&reopened, &["after"], 1).await.unwrap().base_offset, 2);
    assert_eq!(values(&consume(&reopened, 2).await.unwrap().records), [(2, "after".to_string())]);

    // A leader's log is the reference: it does not truncate.
    reopened.send(leader_msg(1, &[1], &[1], 1, None)).await.unwrap().unwrap();
    assert_eq!(code(reopened.send(TruncateTo { offset: 0 }).await.unwrap()), ErrorCode::INVALID_REQUEST);
}

#[actix::test]
async fn a_replica_shows_only_what_its_followers_have_after_a_start_alone() {
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let writer = SyncWriter::start("test").unwrap();
    let (leader, follower) = (start(dirs[0].path(), &writer), start(dirs[1].path(), &writer));
    // Records written while alone (or before a restart): whether any other
    // replica has them is unknown.
    append(&leader, &["a", "b", "c"], 1).await.unwrap();
    append(&follower, &["x"], 1).await.unwrap();
    leader.send(leader_msg(1, &[1, 2], &[1, 2], 1, None)).await.unwrap().unwrap();
    follower.send(BecomeFollower { leader_epoch: 1, leader: 1 }).await.unwrap().unwrap();
    assert_eq!(describe(&leader).await.high_watermark, 0);
    assert_eq!(describe(&follower).await.high_watermark, 0);
    assert!(consume(&leader, 0).await.unwrap().records.is_empty());

    // The follower knows no epoch: it truncates to its HW (KIP-101's fallback).
    assert_eq!(leader.send(LeaderEpochEndOffset { epoch: 1 }).await.unwrap().unwrap(), (1, 3));
    assert_eq!(follower.send(TruncateTo { offset: 0 }).await.unwrap().unwrap(), 0);
    fetch_round(&leader, &follower, 2, 1).await;
    fetch_round(&leader, &follower, 2, 1).await;
    assert_eq!(values(&consume(&leader, 0).await.unwrap().records).len(), 3);
    assert_eq!(describe(&follower).await.high_watermark, 3);
    // A follower takes no delete_records either.
    let refused = follower.send(DeleteRecords { offset: 1 }).await.unwrap();
    assert_eq!(code(refused), ErrorCode::NOT_LEADER_OR_FOLLOWER);
}

#[actix::test]
async fn a_follower_takes_only_whole_checked_batches_never_behind_its_log_end() {
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let writer = SyncWriter::start("test").unwrap();
    let (leader, follower) = (start(dirs[0].path(), &writer), start(dirs[1].path(), &writer));
    leader.send(leader_msg(1, &[1, 2], &[1, 2], 1, None)).await.unwrap().unwrap();
    follower.send(BecomeFollower { leader_epoch: 1, leader: 1 }).await.unwrap().unwrap();
    append(&leader, &["a", "b"], 1).await.unwrap();
    append(&leader, &["c"], 1).await.unwrap();
    let all = leader.send(replica_fetch(2, 0, 1)).await.unwrap().unwrap().records;
    let second = leader.send(replica_fetch(2, 2, 1)).await.unwrap().unwrap().records;
    let first = all.slice(..all.len() - second.len());
    let taking = |records: Bytes| AppendAsFollower {
        leader_epoch: 1,
        records,
        epochs: vec![(1, 0)],
        leader_high_watermark: 0,
        leader_log_start_offset: 0,
    };

    // (A batch past the log end is a gap the leader's cleaner left:
    // replica_gap_tests.rs.) Batches fetched under another epoch than the one followed: a former
    // leader's late answer is never appended.
    let stale = AppendAsFollower {
        leader_epoch: 0,
        records: first.clone(),
        epochs: vec![(1, 0)],
        leader_high_watermark: 0,
        leader_log_start_offset: 0,
    };
    assert_eq!(code(follower.send(stale).await.unwrap()), ErrorCode::FENCED_LEADER_EPOCH);
    let mut damaged = BytesMut::from(&all[..]);
    let last = damaged.len() - 1;
    damaged[last] ^= 0xff;
    let refused = follower.send(taking(damaged.freeze())).await.unwrap();
    assert_eq!(code(refused), ErrorCode::CORRUPT_MESSAGE);
    let cut = follower.send(taking(all.slice(..all.len() - 1))).await.unwrap();
    assert_eq!(code(cut), ErrorCode::CORRUPT_MESSAGE);
    assert_eq!(describe(&follower).await.log_end_offset, 0, "nothing of a refused answer is appended");

    assert_eq!(follower.send(taking(first.clone())).await.unwrap().unwrap(), 2);
    let overwrite = follower.send(taking(first)).await.unwrap();
    assert_eq!(code(overwrite), ErrorCode::OFFSET_OUT_OF_RANGE);
    assert_eq!(follower.send(taking(second)).await.unwrap().unwrap(), 3);
    assert_eq!(log_bytes(dirs[1].path()), log_bytes(dirs[0].path()));
    // Only a follower takes them.
    assert_eq!(code(leader.send(taking(Bytes::new())).await.unwrap()), ErrorCode::NOT_LEADER_OR_FOLLOWER);
}

#[actix::test]
async fn a_consumer_long_poll_on_a_leader_wakes_on_the_hw_not_the_log_end() {
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let writer = SyncWriter::start("test").unwrap();
    let (leader, follower) = (start(dirs[0].path(), &writer), start(dirs[1].path(), &writer));
    leader.send(leader_msg(1, &[1, 2], &[1, 2], 1, None)).await.unwrap().unwrap();
    follower.send(BecomeFollower { leader_epoch: 1, leader: 1 }).await.unwrap().unwrap();
    let mut polling = Box::pin(leader.send(Fetch { offset: 0, max_bytes: 1 << 20, min_bytes: 1, max_wait_ms: 20_000 }));
    append(&leader, &["a"], 1).await.unwrap();
    let waits = tokio::time::timeout(Duration::from_millis(200), &mut polling).await;
    assert!(waits.is_err(), "woken by a record no follower has");
    fetch_round(&leader, &follower, 2, 1).await;
    fetch_round(&leader, &follower, 2, 1).await;
    let woken = tokio::time::timeout(PATIENCE, polling).await.expect("woken by the HW").unwrap().unwrap();
    assert_eq!(values(&woken.records), [(0, "a".to_string())]);
}

#[actix::test]
async fn an_unconfirmed_proposal_is_sent_again() {
    let dir = tempfile::tempdir().unwrap();
    let writer = SyncWriter::start("test").unwrap();
    let leader = start_with(dir.path(), &writer, TopicConfig::default(), 100);
    let (recipient, mut proposals) = sink();
    leader.send(leader_msg(1, &[1, 2], &[1, 2], 1, Some(recipient))).await.unwrap().unwrap();
    let first = next_proposal(&mut proposals).await;
    let again = next_proposal(&mut proposals).await;
    assert_eq!((first.isr.clone(), again), (vec![1], first));
    leader.send(IsrUpdated { leader_epoch: 1, isr: vec![1] }).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    while let Ok(stale) = proposals.try_recv() {
        assert_eq!(stale.isr, [1], "only resends of the confirmed proposal may still be queued");
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(proposals.try_recv().is_err(), "proposed again once confirmed");
}
