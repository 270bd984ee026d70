//! The read-only JSON admin API, `/api/v1/`: what the CLI's read commands
//! show, asked of the actors with the messages the wire operations send and
//! answered with the wire's own response types (as JSON), so that the API and
//! the wire cannot disagree.
//!
//! - `GET /api/v1/broker`: version, uptime, readiness, effective settings and
//!   their sources, data directory, disk used and free.
//! - `GET /api/v1/topics`, `GET /api/v1/topics/{topic}`: as `list_topics`
//!   and `describe_topic`.
//! - `GET /api/v1/groups`, `GET /api/v1/groups/{group}`: as `list_groups`
//!   and `describe_group`.
//! - `GET /api/v1/topics/{topic}/partitions/{p}/records?offset=N&limit=M`:
//!   see [`super::records`].
//! - `GET /api/v1/traffic`: bytes and records produced and fetched per topic
//!   since the broker started, the counters of `/metrics` (the console's live
//!   rates are their differences between polls).
//!
//! Errors are `{"error_code": N, "error": "NAME", "message": "..."}` with the
//! wire's codes: 404 for an unknown topic, partition or group, 400 for bad
//! parameters, 503 while the logs are being recovered or the broker is
//! shutting down, 500 otherwise.

use std::sync::atomic::Ordering;
use std::time::Duration;

use actix::MailboxError;
use actix_web::{web, HttpResponse};
use herald_actors::error::{BrokerError, ErrorCode};
use herald_actors::group::{self, coordinator, LookupGroup};
use herald_actors::topic::{self, Topic};
use herald_actors::{broker, stats};
use serde::Serialize;

use super::health::Readiness;
use super::{Actors, HttpState};
use crate::frontend::connection::{
    describe_group_response, describe_response as describe_topic_response, list_groups_response, list_topics_response,
};
use crate::protocol::*;
use crate::security::acl::{Operation, Resource};

/// How long a request waits for an actor's answer.
const ASK_TIMEOUT: Duration = Duration::from_secs(10);

pub fn routes(config: &mut web::ServiceConfig) {
    config.service(
        web::scope("/api/v1")
            .route("/broker", web::get().to(broker_info))
            .route("/topics", web::get().to(topics))
            .route("/topics/{topic}", web::get().to(topic))
            .route("/topics/{topic}/partitions/{partition}/records", web::get().to(super::records::records))
            .route("/groups", web::get().to(groups))
            .route("/groups/{group}", web::get().to(group))
            .route("/traffic", web::get().to(traffic))
            .default_service(web::to(not_found)),
    );
}

/// An error body, with the HTTP status its code maps to.
pub fn error(err: &BrokerError) -> HttpResponse {
    let response = match err.code {
        ErrorCode::UNKNOWN_TOPIC_OR_PARTITION | ErrorCode::GROUP_ID_NOT_FOUND => HttpResponse::NotFound(),
        ErrorCode::INVALID_REQUEST | ErrorCode::OFFSET_OUT_OF_RANGE => HttpResponse::BadRequest(),
        ErrorCode::TOPIC_AUTHORIZATION_FAILED
        | ErrorCode::GROUP_AUTHORIZATION_FAILED
        | ErrorCode::CLUSTER_AUTHORIZATION_FAILED => HttpResponse::Forbidden(),
        ErrorCode::LEADER_NOT_AVAILABLE
        | ErrorCode::COORDINATOR_NOT_AVAILABLE
        | ErrorCode::BROKER_SHUTTING_DOWN
        | ErrorCode::REQUEST_TIMED_OUT => HttpResponse::ServiceUnavailable(),
        _ => HttpResponse::InternalServerError(),
    };
    body(response, err)
}

fn body(mut response: actix_web::HttpResponseBuilder, err: &BrokerError) -> HttpResponse {
    response.json(serde_json::json!({
        "error_code": err.code.code(),
        "error": err.code.name(),
        "message": err.message,
    }))
}

/// 404, with the error body of a bad request.
async fn not_found() -> HttpResponse {
    let err = BrokerError::new(ErrorCode::INVALID_REQUEST, "no such endpoint; see docs/operations.md, \"Admin API\"");
    body(HttpResponse::NotFound(), &err)
}

/// The actors, or the error (503) that says they are not there yet.
pub fn actors(state: &HttpState) -> Result<&Actors, BrokerError> {
    state
        .actors()
        .ok_or_else(|| BrokerError::new(ErrorCode::LEADER_NOT_AVAILABLE, "the broker is still recovering its logs"))
}

fn json<T: Serialize>(result: Result<T, BrokerError>) -> HttpResponse {
    match result {
        Ok(body) => HttpResponse::Ok().json(body),
        Err(err) => error(&err),
    }
}

fn mailbox(err: MailboxError) -> BrokerError {
    match err {
        MailboxError::Timeout => BrokerError::new(ErrorCode::REQUEST_TIMED_OUT, "the broker did not answer in time"),
        MailboxError::Closed => BrokerError::new(ErrorCode::BROKER_SHUTTING_DOWN, "the broker is shutting down"),
    }
}

/// As the wire's `list_topics`.
pub async fn list_topics(actors: &Actors) -> Result<ListTopicsResponse, BrokerError> {
    let mut topics = actors.broker.send(broker::ListTopics).timeout(ASK_TIMEOUT).await.map_err(mailbox)?;
    let access = actors.access();
    topics.retain(|t| access.may(Operation::Describe, &Resource::topic(t.name.as_str())));
    Ok(list_topics_response(topics))
}

/// The topic's actor, as the wire's lookups find it.
pub async fn lookup_topic(actors: &Actors, name: &str) -> Result<actix::Addr<Topic>, BrokerError> {
    let lookup = broker::LookupTopic { name: name.to_string() };
    actors.broker.send(lookup).timeout(ASK_TIMEOUT).await.map_err(mailbox)?
}

/// As the wire's `describe_topic`.
pub async fn describe_topic(actors: &Actors, name: &str) -> Result<DescribeTopicResponse, BrokerError> {
    actors.access().check(Operation::Describe, &Resource::topic(name))?;
    let topic = lookup_topic(actors, name).await?;
    let described = topic.send(topic::DescribeTopic).timeout(ASK_TIMEOUT).await.map_err(mailbox)??;
    Ok(describe_topic_response(described))
}

/// As the wire's `list_groups`.
pub async fn list_groups(actors: &Actors) -> Result<ListGroupsResponse, BrokerError> {
    let mut groups = actors.groups.send(group::ListGroups).timeout(ASK_TIMEOUT).await.map_err(mailbox)?;
    let access = actors.access();
    groups.retain(|g| access.may(Operation::Describe, &Resource::group(g.group_id.as_str())));
    Ok(list_groups_response(groups))
}

/// As the wire's `describe_group`.
pub async fn describe_group(actors: &Actors, group_id: &str) -> Result<DescribeGroupResponse, BrokerError> {
    actors.access().check(Operation::Describe, &Resource::group(group_id))?;
    let lookup = LookupGroup { group_id: group_id.to_string(), create: false };
    let coordinator = actors.groups.send(lookup).timeout(ASK_TIMEOUT).await.map_err(mailbox)??;
    let described = coordinator.send(coordinator::DescribeGroup).timeout(ASK_TIMEOUT).await.map_err(mailbox)??;
    Ok(describe_group_response(described))
}

async fn broker_info(state: web::Data<HttpState>) -> HttpResponse {
    // The settings and the data directory are the cluster's to describe.
    if let Some(Err(err)) = state.actors().map(|a| a.access().check(Operation::Describe, &Resource::cluster())) {
        return error(&err);
    }
    let settings = &state.settings;
    let (disk_used, disk_free) = super::exposition::disk(settings.storage.data_dir.clone()).await;
    let sources: serde_json::Map<String, serde_json::Value> = state
        .sources
        .iter()
        .map(|(key, (value, origin))| (key.clone(), serde_json::json!({ "value": value, "source": origin })))
        .collect();
    let frontend = super::metrics::frontend();
    HttpResponse::Ok().json(serde_json::json!({
        "broker_version": env!("CARGO_PKG_VERSION"),
        "protocol_version": PROTOCOL_VERSION,
        "uptime_seconds": state.started.elapsed().as_secs(),
        "readiness": Readiness::of(&state),
        "address": state.client_address(),
        "connections_open": frontend.connections_open.load(Ordering::Relaxed),
        "connections_accepted": frontend.connections_accepted.load(Ordering::Relaxed),
        "data_dir": settings.storage.data_dir,
        "disk_used_bytes": disk_used,
        "disk_free_bytes": disk_free,
        "config": settings,
        "config_sources": sources,
    }))
}

async fn topics(state: web::Data<HttpState>) -> HttpResponse {
    json(match actors(&state) {
        Ok(actors) => list_topics(actors).await,
        Err(err) => Err(err),
    })
}

async fn topic(state: web::Data<HttpState>, name: web::Path<String>) -> HttpResponse {
    json(match actors(&state) {
        Ok(actors) => describe_topic(actors, &name).await,
        Err(err) => Err(err),
    })
}

async fn groups(state: web::Data<HttpState>) -> HttpResponse {
    json(match actors(&state) {
        Ok(actors) => list_groups(actors).await,
        Err(err) => Err(err),
    })
}

async fn group(state: web::Data<HttpState>, name: web::Path<String>) -> HttpResponse {
    json(match actors(&state) {
        Ok(actors) => describe_group(actors, &name).await,
        Err(err) => Err(err),
    })
}

/// Per topic (past `http.metrics_max_label_sets` topics, the rest added up
/// under `_other`, as in `/metrics`), counters since the broker started.
async fn traffic() -> HttpResponse {
    let topics: Vec<serde_json::Value> = stats::topic_snapshot()
        .into_iter()
        .map(|(topic, [produced_bytes, produced_records, fetched_bytes, fetched_records])| {
            serde_json::json!({
                "topic": topic,
                "produced_bytes": produced_bytes,
                "produced_records": produced_records,
                "fetched_bytes": fetched_bytes,
                "fetched_records": fetched_records,
            })
        })
        .collect();
    HttpResponse::Ok().json(serde_json::json!({ "topics": topics }))
}
