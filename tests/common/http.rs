//! Asking a broker's HTTP listener, and reading Prometheus text.

use std::net::SocketAddr;

use super::PATIENCE;

/// `GET path`: (status, body).
pub async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    herald::http::get::get(&addr.to_string(), path, PATIENCE)
        .await
        .unwrap_or_else(|err| panic!("GET {path} from {addr}: {err}"))
}

/// `GET path`, which must answer `status` with JSON.
pub async fn get_json(addr: SocketAddr, path: &str, status: u16) -> serde_json::Value {
    let (got, body) = get(addr, path).await;
    assert_eq!(got, status, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|err| panic!("GET {path}: not JSON ({err}): {body}"))
}

/// Polls `/readyz` until it answers 200 and returns its body. Before that,
/// every answer must be a 503 naming what is missing.
///
/// # Panics
///
/// Another answer, or not ready within [`PATIENCE`].
pub async fn wait_ready(addr: SocketAddr) -> serde_json::Value {
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let (status, body) = get(addr, "/readyz").await;
        let body: serde_json::Value = serde_json::from_str(&body).expect("/readyz answers JSON");
        if status == 200 {
            return body;
        }
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["status"], "not_ready", "{body}");
        assert!(!body["missing"].as_array().expect("missing").is_empty(), "{body}");
        assert!(std::time::Instant::now() < deadline, "not ready in time: {body}");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// The value of the sample `series` (name and labels exactly as exported,
/// e.g. `herald_produced_records_total{topic="t"}`), if present.
pub fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        Some(value.trim().parse().unwrap_or_else(|err| panic!("{line}: {err}")))
    })
}

/// As [`sample`], which must be present.
pub fn value(metrics: &str, series: &str) -> f64 {
    sample(metrics, series).unwrap_or_else(|| panic!("no sample {series} in:\n{metrics}"))
}
