//! What the bench modes measure besides counts: latency percentiles,
//! throughput, and the CPU time spent by this process and by the broker,
//! read from `/proc` (Linux; elsewhere CPU is not reported).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde::Serialize;

/// Throughput of one benchmark phase.
#[derive(Debug, Serialize)]
pub(in crate::cli) struct Phase {
    pub records: u64,
    pub bytes: u64,
    pub seconds: f64,
    pub records_per_second: f64,
    pub megabytes_per_second: f64,
}

impl Phase {
    pub(in crate::cli) fn new(records: u64, bytes: u64, elapsed: Duration) -> Phase {
        let seconds = elapsed.as_secs_f64().max(1e-9);
        Phase {
            records,
            bytes,
            seconds,
            records_per_second: records as f64 / seconds,
            megabytes_per_second: bytes as f64 / seconds / 1e6,
        }
    }
}

/// Percentiles of a set of latencies, in milliseconds.
#[derive(Debug, Serialize, Default, Clone)]
pub(super) struct Latency {
    pub samples: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    /// The percentiles of `samples` (sorted here).
    pub fn of(mut samples: Vec<Duration>) -> Latency {
        samples.sort_unstable();
        let at = |p: f64| percentile(&samples, p);
        Latency {
            samples: samples.len() as u64,
            p50_ms: at(0.50),
            p90_ms: at(0.90),
            p99_ms: at(0.99),
            p999_ms: at(0.999),
            max_ms: at(1.0),
        }
    }

    pub fn line(&self) -> String {
        format!(
            "p50 {:.3} ms, p90 {:.3} ms, p99 {:.3} ms, p99.9 {:.3} ms, max {:.3} ms ({} samples)",
            self.p50_ms, self.p90_ms, self.p99_ms, self.p999_ms, self.max_ms, self.samples
        )
    }
}

/// The nearest-rank percentile `p` (0..=1) of sorted `samples`, in ms.
fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1e3
}

/// CPU time spent during a phase, in total and per record.
#[derive(Debug, Serialize, Default, Clone)]
pub(super) struct CpuUsage {
    /// This process (the benchmark's clients), user + system.
    pub client_seconds: Option<f64>,
    /// The broker process, when it was found (see [`broker_pid`]).
    pub broker_seconds: Option<f64>,
    pub client_us_per_record: Option<f64>,
    pub broker_us_per_record: Option<f64>,
}

impl CpuUsage {
    pub fn line(&self) -> String {
        let show = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{v:.3}"));
        format!(
            "CPU per record: client {} µs, broker {} µs (client {} s, broker {} s)",
            show(self.client_us_per_record),
            show(self.broker_us_per_record),
            show(self.client_seconds),
            show(self.broker_seconds)
        )
    }
}

/// Reads CPU time at the start of a phase and tells the difference at its end.
pub(super) struct CpuClock {
    broker: Option<u32>,
    client_at_start: Option<f64>,
    broker_at_start: Option<f64>,
    started: Instant,
}

impl CpuClock {
    pub fn start(broker: Option<u32>) -> CpuClock {
        CpuClock {
            broker,
            client_at_start: cpu_seconds("self"),
            broker_at_start: broker.and_then(|pid| cpu_seconds(&pid.to_string())),
            started: Instant::now(),
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// CPU spent since [`CpuClock::start`], and per record of `records`.
    pub fn stop(&self, records: u64) -> CpuUsage {
        let since = |start: Option<f64>, now: Option<f64>| Some(now? - start?);
        let client = since(self.client_at_start, cpu_seconds("self"));
        let broker = since(self.broker_at_start, self.broker.and_then(|pid| cpu_seconds(&pid.to_string())));
        let per_record = |s: Option<f64>| s.filter(|_| records > 0).map(|s| s * 1e6 / records as f64);
        CpuUsage {
            client_seconds: client,
            broker_seconds: broker,
            client_us_per_record: per_record(client),
            broker_us_per_record: per_record(broker),
        }
    }
}

/// User + system CPU seconds of process `pid` ("self" for this one), from
/// `/proc/PID/stat`; `None` where it cannot be read.
fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name, which is in parentheses and may hold
    // spaces: utime and stime are fields 14 and 15 of the line.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let mut fields = rest.split(' ').skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    // SAFETY: sysconf only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (ticks > 0).then(|| (user + system) as f64 / ticks as f64)
}

/// The pid of the process listening on `broker`'s port on this machine, found
/// through `/proc/net/tcp{,6}` and the sockets in `/proc/*/fd`; `None` when
/// the broker is elsewhere or its descriptors cannot be read.
pub(super) fn broker_pid(broker: SocketAddr) -> Option<u32> {
    if !broker.ip().is_loopback() && !local_address(broker) {
        return None;
    }
    let inode = listening_inode(broker.port())?;
    let target = format!("socket:[{inode}]");
    for process in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = process.file_name().to_str().and_then(|name| name.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(process.path().join("fd")) else { continue };
        for fd in fds.flatten() {
            if std::fs::read_link(fd.path()).is_ok_and(|link| link.as_os_str() == target.as_str()) {
                return Some(pid);
            }
        }
    }
    None
}

fn local_address(addr: SocketAddr) -> bool {
    std::net::TcpListener::bind(SocketAddr::new(addr.ip(), 0)).is_ok()
}

/// The inode of the socket listening on `port` (state 0A in /proc/net/tcp).
fn listening_inode(port: u16) -> Option<u64> {
    let wanted = format!(":{port:04X}");
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else { continue };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() > 9 && fields[1].ends_with(&wanted) && fields[3] == "0A" {
                if let Ok(inode) = fields[9].parse() {
                    return Some(inode);
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let samples: Vec<Duration> = (1..=1000).map(Duration::from_millis).collect();
        let l = Latency::of(samples);
        assert_eq!((l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms), (500.0, 900.0, 990.0, 999.0, 1000.0));
        assert_eq!(Latency::of(Vec::new()).max_ms, 0.0);
    }

    #[test]
    fn this_process_has_cpu_time_and_is_found_by_its_listening_port() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let spin = Instant::now();
        while spin.elapsed() < Duration::from_millis(30) {}
        assert!(cpu_seconds("self").unwrap() > 0.0);
        assert_eq!(broker_pid(listener.local_addr().unwrap()), Some(std::process::id()));
    }
}
