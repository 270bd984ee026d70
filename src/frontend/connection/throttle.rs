//! Quotas on a connection (see `security::quota`): each request is counted
//! against its entity when it arrives (a produce with its frame's bytes); a
//! fetch's records when answered. While the entity is over a rate, the next
//! request waits before it is handled — the connection takes nothing else
//! meanwhile, so its reader soon stops at its read-ahead bound and the
//! client is slowed, not disconnected — and its response carries
//! `throttle_time_ms`.

use std::time::Duration;

use actix::prelude::*;

use herald_actors::error::{BrokerError, ErrorCode};

use super::budget::Admission;
use super::{Connection, Decoded};
use crate::protocol::{AlterQuotasRequest, DescribeQuotasResponse, Empty, QuotaEntry, Request};
use crate::security::quota::{Entity, Usage};

impl Connection {
    /// Counts a request that arrived and handles it, after the wait its
    /// entity's quotas ask for.
    pub(super) fn admit(&mut self, decoded: Decoded, permit: Admission, ctx: &mut Context<Self>) {
        let wait = match &decoded {
            Ok((correlation_id, request)) if self.client_id.is_some() => {
                let produce_bytes = match request {
                    Request::Produce(_) => permit.connection_bytes.bytes() as u64,
                    _ => 0,
                };
                let wait = self.count_usage(Usage { requests: 1, produce_bytes, fetch_bytes: 0 });
                if !wait.is_zero() && request.answered() {
                    let ms = u32::try_from(wait.as_millis()).unwrap_or(u32::MAX).max(1);
                    self.throttled.insert(*correlation_id, ms);
                }
                wait
            }
            _ => Duration::ZERO,
        };
        if wait.is_zero() {
            return self.handle_request(decoded, permit, ctx);
        }
        // Nothing else of this connection is handled meanwhile: requests keep
        // their order, and the reader stops once its read-ahead is used.
        ctx.wait(actix_rt::time::sleep(wait).into_actor(self).map(move |(), act, ctx| {
            act.handle_request(decoded, permit, ctx);
        }));
    }

    /// Counts `usage` against this connection's quota entity; how long its
    /// next request must wait.
    pub(super) fn count_usage(&mut self, usage: Usage) -> Duration {
        if !self.quotas.active() {
            return Duration::ZERO;
        }
        let client_id = self.client_id.as_deref().unwrap_or_default();
        match self.quotas.resolve(&self.principal, client_id) {
            Some((entity, rates)) => self.quotas.record(&entity, rates, usage),
            None => Duration::ZERO,
        }
    }

    /// The wait a request's response reports, taken once.
    pub(super) fn throttle_of(&mut self, correlation_id: u32) -> Option<u32> {
        if self.throttled.is_empty() {
            return None;
        }
        self.throttled.remove(&correlation_id)
    }
}

impl Connection {
    /// `alter_quotas`: written and synced on a blocking thread before the answer.
    pub(super) fn alter_quotas(
        &mut self,
        correlation_id: u32,
        r: AlterQuotasRequest,
        permit: Admission,
        ctx: &mut Context<Self>,
    ) {
        let entity = match Entity::parse(&r.entity_type, &r.entity_name) {
            Ok(entity) => entity,
            Err(why) => return self.send_error(correlation_id, &BrokerError::new(ErrorCode::INVALID_REQUEST, why)),
        };
        let quotas = self.quotas.clone();
        let altered = tokio::task::spawn_blocking(move || quotas.alter(entity, &r.set, &r.remove));
        self.respond(
            correlation_id,
            permit,
            async move {
                altered.await.unwrap_or_else(|e| {
                    Err(BrokerError::new(
                        ErrorCode::UNKNOWN_SERVER_ERROR,
                        format!("a change to the quotas failed: {e}"),
                    ))
                })?;
                Ok(Some(Empty {}))
            },
            ctx,
        );
    }

    /// `describe_quotas`: the defaults and every override.
    pub(super) fn describe_quotas(&mut self, correlation_id: u32, permit: Admission, ctx: &mut Context<Self>) {
        let response = DescribeQuotasResponse {
            defaults: self.quotas.defaults(),
            quotas: self
                .quotas
                .list()
                .into_iter()
                .map(|(entity, rates)| QuotaEntry {
                    entity_type: entity.kind().into(),
                    entity_name: entity.name().into(),
                    rates,
                })
                .collect(),
        };
        self.respond(correlation_id, permit, async move { Ok(Some(response)) }, ctx);
    }
}
