//! The measuring side of tests/hostile_clients.rs: the broker's RSS from
//! `/proc`, the healthy client's round trips, and one scenario's run. The
//! hostile clients themselves are in [`attacks`].

mod attacks;

use std::fmt;
use std::time::{Duration, Instant};

use bytes::Bytes;
use herald::client::Client;
use herald::protocol::WireRecord;

use crate::common::{fetch_at, BinaryBroker};
use crate::fault::quantile;

pub use attacks::Attack;

/// Round trips the healthy client measures alone before each scenario.
const BASELINE_SAMPLES: usize = 1000;
/// Round trips it must complete under attack for its p99 to mean anything.
const MIN_ATTACKED_SAMPLES: usize = 200;

/// What a scenario measured.
pub struct Figures {
    pub attack: String,
    /// What the hostile client got done, in its own words.
    pub done: String,
    /// RSS just before the attack, in bytes.
    pub idle_rss: u64,
    /// Peak RSS during the attack (`VmHWM`), in bytes.
    pub peak_rss: u64,
    /// RSS once the attack has ended.
    pub after_rss: u64,
    pub baseline_samples: usize,
    pub baseline_p99: f64,
    pub attacked_samples: usize,
    pub attacked_p99: f64,
}

impl Figures {
    /// The healthy client's p99 under attack may be at most twice its
    /// baseline, and not less than [`P99_FLOOR_MS`] above it.
    pub fn p99_bound(&self) -> f64 {
        (2.0 * self.baseline_p99).max(self.baseline_p99 + P99_FLOOR_MS)
    }
}

/// The least a p99 bound allows over the baseline, in ms.
///
/// In a debug build, 10 ms: a round trip is 1–5 ms alone on a shared 2-core
/// machine, one scheduling delay of the broker's or the test's threads is a
/// p99 on its own, and under `concurrent-produce` the hostile client's own
/// copies (about 250 MB/s written through loopback by this process) take a
/// share of the same two cores. In a release build, 1 ms: a sub-millisecond
/// baseline (0.14–0.5 ms here) doubles with one scheduler slice lost to the
/// hostile client's writing threads, which run in this process beside the
/// healthy client. Either floor still fails the broker holding the healthy
/// client up for real (a budget or an arbiter held by the hostile client:
/// 100 ms to seconds, measured before the fixes).
pub const P99_FLOOR_MS: f64 = if cfg!(debug_assertions) { 10.0 } else { 1.0 };

impl fmt::Display for Figures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}; RSS before {} MB, peak {} MB, after {} MB; healthy p99 {:.2} ms alone ({} round trips), {:.2} ms under attack ({} round trips)",
            self.attack,
            self.done,
            self.idle_rss >> 20,
            self.peak_rss >> 20,
            self.after_rss >> 20,
            self.baseline_p99,
            self.baseline_samples,
            self.attacked_p99,
            self.attacked_samples,
        )
    }
}

/// A field of `/proc/PID/status`, in bytes.
fn status_bytes(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/PID/status");
    let line = status.lines().find(|l| l.starts_with(field)).unwrap_or_else(|| panic!("no {field} in {status}"));
    let kb: u64 = line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).expect("a size in kB");
    kb << 10
}

/// Resets the process's peak RSS (`VmHWM`) to its current RSS.
fn reset_peak_rss(pid: u32) {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").expect("write /proc/PID/clear_refs");
}

/// The healthy client: one produce then a fetch of what it produced.
struct Healthy {
    client: Client,
    value: Bytes,
}

impl Healthy {
    const TOPIC: &'static str = "healthy";

    async fn round_trip(&self) -> Duration {
        let started = Instant::now();
        let record = WireRecord { value: Some(self.value.clone()), ..WireRecord::default() };
        let produced = self.client.produce(Self::TOPIC, Some(0), vec![record]).await.expect("healthy produce");
        let offset = produced[0].base_offset;
        assert_eq!(produced[0].error_code, 0, "healthy produce refused: {:?}", produced[0].error_message);
        let fetched = self.client.fetch(&fetch_at(Self::TOPIC, 0, offset)).await.expect("healthy fetch");
        assert_eq!(fetched.records.first().map(|r| r.offset), Some(offset), "the healthy record is read back");
        started.elapsed()
    }

    /// Round trips until `count` are done, in ms each.
    async fn measure(&self, count: usize) -> Vec<f64> {
        let mut samples = Vec::with_capacity(count);
        for _ in 0..count {
            samples.push(self.round_trip().await.as_secs_f64() * 1000.0);
        }
        samples
    }
}

/// Runs one scenario: baseline, attack with the healthy client measuring,
/// then the broker's health. Panics if the broker is not healthy after it.
pub async fn run(broker: &BinaryBroker, attack: &Attack, attack_for: Duration) -> Figures {
    let pid = broker.pid();
    let admin = broker.client().await;
    if admin.describe_topic(Healthy::TOPIC).await.is_err() {
        admin.create_topic(Healthy::TOPIC, 1, Default::default()).await.expect("create the healthy topic");
    }
    attack.prepare(&admin).await;
    let healthy = Healthy { client: broker.client().await, value: Bytes::from(vec![b'h'; 100]) };
    let baseline = healthy.measure(BASELINE_SAMPLES).await;

    reset_peak_rss(pid);
    let idle_rss = status_bytes(pid, "VmRSS:");
    let until = Instant::now() + attack_for;
    // The hostile client runs on threads of its own, as another process
    // would: what the healthy client measures is the broker, not a wait for
    // a worker thread the hostile tasks keep busy.
    let (addr, hostile_attack) = (broker.addr(), attack.clone());
    let hostile = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build();
        runtime.expect("a runtime for the hostile client").block_on(attacks::run(addr, hostile_attack, until))
    });
    let mut attacked = Vec::new();
    while !hostile.is_finished() {
        attacked.push(healthy.round_trip().await.as_secs_f64() * 1000.0);
    }
    let done = hostile.join().expect("the hostile client ran");
    // Work the attack left queued finishes within the deadlines.
    tokio::time::sleep(Duration::from_millis(2 * crate::DEADLINE_MS)).await;
    let peak_rss = status_bytes(pid, "VmHWM:");
    let after_rss = status_bytes(pid, "VmRSS:");

    assert!(
        attacked.len() >= MIN_ATTACKED_SAMPLES,
        "{attack}: the healthy client made {} round trips under attack (at least {MIN_ATTACKED_SAMPLES} needed)",
        attacked.len()
    );
    // Healthy afterwards: a new connection is served, and so is the old one.
    let fresh = broker.client().await;
    fresh.list_topics().await.unwrap_or_else(|err| panic!("{attack}: a new client after the attack: {err}"));
    healthy.round_trip().await;

    Figures {
        attack: attack.to_string(),
        done,
        idle_rss,
        peak_rss,
        after_rss,
        baseline_samples: baseline.len(),
        baseline_p99: quantile(&baseline, 0.99),
        attacked_samples: attacked.len(),
        attacked_p99: quantile(&attacked, 0.99),
    }
}
