//! [`AlterTopicConfig`]: the broker's part of `alter_topic_config`, which
//! hands the topic the broker's defaults and limits. Split from the broker's
//! other messages; the same actor.

use std::collections::BTreeMap;

use actix::prelude::*;

use super::Broker;
use crate::error::BrokerError;
use crate::topic::AlterConfig;
use crate::topic_config::ConfigValue;

/// Change a topic's settings (see [`AlterConfig`]); answers every setting
/// after the change.
#[derive(Message)]
#[rtype(result = "Result<BTreeMap<String, ConfigValue>, BrokerError>")]
pub struct AlterTopicConfig {
    pub name: String,
    pub set: BTreeMap<String, ConfigValue>,
    pub delete: Vec<String>,
    pub validate_only: bool,
}

impl Handler<AlterTopicConfig> for Broker {
    type Result = ResponseFuture<Result<BTreeMap<String, ConfigValue>, BrokerError>>;

    fn handle(&mut self, msg: AlterTopicConfig, _: &mut Context<Self>) -> Self::Result {
        let topic = self
            .refuse_if_shutting_down()
            .and_then(|()| self.topics.get(&msg.name).cloned().ok_or_else(|| self.not_served(&msg.name)));
        let alter = AlterConfig {
            set: msg.set,
            delete: msg.delete,
            validate_only: msg.validate_only,
            defaults: self.defaults.clone(),
            max_message_ceiling: self.max_message_ceiling,
        };
        Box::pin(async move { topic?.send(alter).await.unwrap_or_else(|e| Err(e.into())) })
    }
}
