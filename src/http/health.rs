//! `/livez` and `/readyz`.
//!
//! - `/livez`: 200 `{"status":"live"}` while the process serves HTTP at all.
//! - `/readyz`: 200 `{"status":"ready","missing":[]}` once every log is
//!   recovered and the client listener accepts; else 503 with `"status":
//!   "not_ready"` and `missing` naming what is not done yet (`log_recovery`,
//!   `client_listener`, `shutting_down`).

use actix_web::{web, HttpResponse};
use serde::Serialize;

use super::HttpState;

/// The body of `/readyz`, also part of `/api/v1/broker`.
#[derive(Debug, Serialize)]
pub struct Readiness {
    pub ready: bool,
    pub status: &'static str,
    pub missing: Vec<&'static str>,
}

impl Readiness {
    pub fn of(state: &HttpState) -> Readiness {
        let missing = state.missing();
        let ready = missing.is_empty();
        Readiness { ready, status: if ready { "ready" } else { "not_ready" }, missing }
    }
}

pub async fn livez() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "live" }))
}

pub async fn readyz(state: web::Data<HttpState>) -> HttpResponse {
    let readiness = Readiness::of(&state);
    if readiness.ready {
        HttpResponse::Ok().json(readiness)
    } else {
        HttpResponse::ServiceUnavailable().json(readiness)
    }
}
