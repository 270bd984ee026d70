//! The cluster's requests on a connection: `describe_cluster`.

use actix::prelude::*;
use herald_actors::error::{BrokerError, ErrorCode};

use super::budget::Admission;
use super::Connection;

impl Connection {
    /// `describe_cluster`: the live brokers and the controller.
    pub(super) fn describe_cluster(&mut self, correlation_id: u32, permit: Admission, ctx: &mut Context<Self>) {
        let membership = self.membership.clone();
        self.respond(
            correlation_id,
            permit,
            async move {
                membership.describe().await.map(Some).ok_or_else(|| {
                    BrokerError::new(ErrorCode::BROKER_SHUTTING_DOWN, "the broker is leaving the cluster")
                })
            },
            ctx,
        );
    }
}
