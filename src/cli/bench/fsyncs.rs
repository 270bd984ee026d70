//! The broker's fsync count around a produce run, scraped from its HTTP
//! listener's `/metrics` (`herald_fsync_duration_seconds_count`, and `_sum`
//! for their mean duration): fsyncs per second and per produce request, to
//! see how well group commit groups, and what one fsync cost meanwhile.

use std::time::Duration;

use serde::Serialize;

/// The metric whose count is the number of fsyncs the broker did.
const FSYNC_COUNT: &str = "herald_fsync_duration_seconds_count";
/// The seconds they took, added up.
const FSYNC_SUM: &str = "herald_fsync_duration_seconds_sum";

/// The broker's fsync totals at one moment.
#[derive(Debug, Clone, Copy)]
pub(super) struct Scraped {
    count: u64,
    seconds: f64,
}

/// How long one scrape may take.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);

/// The fsyncs of one run, or why they are unknown.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub(super) enum Fsyncs {
    Counted {
        fsyncs: u64,
        fsyncs_per_second: f64,
        /// Produce requests sent, when the run counts them (`requests`, `raw`).
        #[serde(skip_serializing_if = "Option::is_none")]
        fsyncs_per_request: Option<f64>,
        fsyncs_per_1000_records: f64,
        /// How long one fsync took, on average, during the run.
        mean_fsync_ms: f64,
    },
    Unknown {
        note: String,
    },
}

impl Fsyncs {
    /// The fsyncs between two scrapes, over a run of `seconds`, `records` and
    /// `requests` (when known).
    pub fn between(
        before: Result<Scraped, String>,
        after: Result<Scraped, String>,
        seconds: f64,
        records: u64,
        requests: Option<u64>,
    ) -> Fsyncs {
        match (before, after) {
            (Ok(before), Ok(after)) => {
                let fsyncs = after.count.saturating_sub(before.count);
                Fsyncs::Counted {
                    fsyncs,
                    fsyncs_per_second: fsyncs as f64 / seconds.max(1e-9),
                    fsyncs_per_request: requests.map(|n| fsyncs as f64 / n.max(1) as f64),
                    fsyncs_per_1000_records: fsyncs as f64 * 1000.0 / records.max(1) as f64,
                    mean_fsync_ms: (after.seconds - before.seconds).max(0.0) * 1000.0 / fsyncs.max(1) as f64,
                }
            }
            (Err(note), _) | (_, Err(note)) => Fsyncs::Unknown { note },
        }
    }

    pub fn line(&self) -> String {
        match self {
            Fsyncs::Counted {
                fsyncs,
                fsyncs_per_second,
                fsyncs_per_request,
                fsyncs_per_1000_records,
                mean_fsync_ms,
            } => {
                let per_request = fsyncs_per_request.map_or_else(String::new, |n| format!(", {n:.3} per request"));
                format!(
                    "fsyncs: {fsyncs} ({fsyncs_per_second:.0}/s{per_request}, {fsyncs_per_1000_records:.1} per 1000 records), \
                     {mean_fsync_ms:.3} ms each on average"
                )
            }
            Fsyncs::Unknown { note } => format!("fsyncs: unknown ({note})"),
        }
    }
}

/// The broker's fsync totals now, read from `http://{address}/metrics`.
pub(super) async fn count(address: &str) -> Result<Scraped, String> {
    let unreachable = |err: String| format!("no metrics from http://{address}/metrics (see --http): {err}");
    let (status, body) = herald::http::get::get(address, "/metrics", SCRAPE_TIMEOUT)
        .await
        .map_err(|err| unreachable(err.to_string()))?;
    if status != 200 {
        return Err(unreachable(format!("HTTP status {status}")));
    }
    parse(&body).ok_or_else(|| unreachable(format!("no {FSYNC_COUNT} and {FSYNC_SUM} in the answer")))
}

/// The fsync totals in a Prometheus text exposition.
fn parse(metrics: &str) -> Option<Scraped> {
    let sample = |name: &str| {
        metrics.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse::<f64>().ok())
    };
    Some(Scraped { count: sample(FSYNC_COUNT)? as u64, seconds: sample(FSYNC_SUM)? })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_count_is_read_from_its_own_line_only() {
        let text = "# TYPE herald_fsync_duration_seconds histogram\n\
                    herald_fsync_duration_seconds_bucket{le=\"0.001\"} 3\n\
                    herald_fsync_duration_seconds_sum 0.25\n\
                    herald_fsync_duration_seconds_count 42\n";
        let scraped = parse(text).unwrap();
        assert_eq!((scraped.count, scraped.seconds), (42, 0.25));
        assert!(parse("herald_fsync_duration_seconds_sum 1\n").is_none());
    }

    #[test]
    fn a_failed_scrape_makes_the_figures_unknown() {
        let (before, after) = (Scraped { count: 10, seconds: 1.0 }, Scraped { count: 110, seconds: 1.05 });
        let known = Fsyncs::between(Ok(before), Ok(after), 2.0, 1000, Some(400));
        assert_eq!(
            known.line(),
            "fsyncs: 100 (50/s, 0.250 per request, 100.0 per 1000 records), 0.500 ms each on average"
        );
        let unknown = Fsyncs::between(Ok(before), Err("refused".into()), 2.0, 1000, None);
        assert_eq!(unknown.line(), "fsyncs: unknown (refused)");
    }
}
