//! The broker's fsync count around a produce run, scraped from its HTTP
//! listener's `/metrics` (`herald_fsync_duration_seconds_count`): fsyncs per
//! second and per produce request, to see how well group commit groups.

use std::time::Duration;

use serde::Serialize;

/// The metric whose count is the number of fsyncs the broker did.
const FSYNC_COUNT: &str = "herald_fsync_duration_seconds_count";

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
    },
    Unknown {
        note: String,
    },
}

impl Fsyncs {
    /// The fsyncs between two scrapes, over a run of `seconds`, `records` and
    /// `requests` (when known).
    pub fn between(
        before: Result<u64, String>,
        after: Result<u64, String>,
        seconds: f64,
        records: u64,
        requests: Option<u64>,
    ) -> Fsyncs {
        match (before, after) {
            (Ok(before), Ok(after)) => {
                let fsyncs = after.saturating_sub(before);
                Fsyncs::Counted {
                    fsyncs,
                    fsyncs_per_second: fsyncs as f64 / seconds.max(1e-9),
                    fsyncs_per_request: requests.map(|n| fsyncs as f64 / n.max(1) as f64),
                    fsyncs_per_1000_records: fsyncs as f64 * 1000.0 / records.max(1) as f64,
                }
            }
            (Err(note), _) | (_, Err(note)) => Fsyncs::Unknown { note },
        }
    }

    pub fn line(&self) -> String {
        match self {
            Fsyncs::Counted { fsyncs, fsyncs_per_second, fsyncs_per_request, fsyncs_per_1000_records } => {
                let per_request = fsyncs_per_request.map_or_else(String::new, |n| format!(", {n:.3} per request"));
                format!(
                    "fsyncs: {fsyncs} ({fsyncs_per_second:.0}/s{per_request}, {fsyncs_per_1000_records:.1} per 1000 records)"
                )
            }
            Fsyncs::Unknown { note } => format!("fsyncs: unknown ({note})"),
        }
    }
}

/// The broker's fsync count now, read from `http://{address}/metrics`.
pub(super) async fn count(address: &str) -> Result<u64, String> {
    let unreachable = |err: String| format!("no metrics from http://{address}/metrics (see --http): {err}");
    let (status, body) = herald::http::get::get(address, "/metrics", SCRAPE_TIMEOUT)
        .await
        .map_err(|err| unreachable(err.to_string()))?;
    if status != 200 {
        return Err(unreachable(format!("HTTP status {status}")));
    }
    parse_count(&body).ok_or_else(|| unreachable(format!("no {FSYNC_COUNT} in the answer")))
}

/// The value of the fsync count in a Prometheus text exposition.
fn parse_count(metrics: &str) -> Option<u64> {
    metrics.lines().find_map(|line| {
        let value = line.strip_prefix(FSYNC_COUNT)?.strip_prefix(' ')?;
        value.trim().parse::<f64>().ok().map(|n| n as u64)
    })
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
        assert_eq!(parse_count(text), Some(42));
        assert_eq!(parse_count("herald_fsync_duration_seconds_sum 1\n"), None);
    }

    #[test]
    fn a_failed_scrape_makes_the_figures_unknown() {
        let known = Fsyncs::between(Ok(10), Ok(110), 2.0, 1000, Some(400));
        assert_eq!(known.line(), "fsyncs: 100 (50/s, 0.250 per request, 100.0 per 1000 records)");
        let unknown = Fsyncs::between(Ok(10), Err("refused".into()), 2.0, 1000, None);
        assert_eq!(unknown.line(), "fsyncs: unknown (refused)");
    }
}
