//! [`AlterConfig`]: a topic's settings changed by `alter_topic_config`.
//! Split from the topic's other messages; the same actor.

use std::collections::BTreeMap;

use actix::prelude::*;

use super::{Topic, TopicMeta};
use crate::error::{BrokerError, ErrorCode};
use crate::partition;
use crate::topic_config::{ConfigValue, TopicConfig};

/// Change the topic's settings: `delete`'s keys back to `defaults`, `set`'s
/// to their values (see [`TopicConfig::altered`]). Answers every setting
/// after the change. With `validate_only`, or when nothing changes, nothing
/// is written.
///
/// Like [`AddPartitions`](super::AddPartitions), the change holds the topic's
/// mailbox (`AtomicResponse`) until the metadata is stored and every
/// partition told: two changes cannot interleave, and a produce sent after
/// the answer meets the new settings (the partitions get them before any
/// later batch). The partitions follow them without a restart: see
/// [`partition::SetConfig`].
#[derive(Message)]
#[rtype(result = "Result<BTreeMap<String, ConfigValue>, BrokerError>")]
pub struct AlterConfig {
    pub set: BTreeMap<String, ConfigValue>,
    pub delete: Vec<String>,
    pub validate_only: bool,
    /// The broker's defaults, which a deleted key goes back to.
    pub defaults: TopicConfig,
    /// The largest `max_message_bytes` the broker allows.
    pub max_message_ceiling: u64,
}

impl Handler<AlterConfig> for Topic {
    type Result = AtomicResponse<Self, Result<BTreeMap<String, ConfigValue>, BrokerError>>;

    fn handle(&mut self, msg: AlterConfig, _: &mut Context<Self>) -> Self::Result {
        let checked = self
            .refuse_if_closed()
            .and_then(|()| self.config.altered(&msg.defaults, &msg.set, &msg.delete, msg.max_message_ceiling));
        let config = match checked {
            Ok(config) => config,
            Err(err) => return AtomicResponse::new(Box::pin(fut::ready(Err(err)))),
        };
        if msg.validate_only || config == self.config {
            return AtomicResponse::new(Box::pin(fut::ready(Ok(config.to_map()))));
        }
        let meta = TopicMeta { config: config.clone(), ..self.meta() };
        let dir = self.dir.clone();
        let stored = actix_rt::task::spawn_blocking(move || meta.store(&dir));
        AtomicResponse::new(Box::pin(stored.into_actor(self).map(move |stored, act, _| match stored {
            Ok(Ok(())) => {
                let changes: Vec<String> = config
                    .to_map()
                    .into_iter()
                    .zip(act.config.to_map())
                    .filter(|((_, new), (_, old))| new != old)
                    .map(|((key, new), (_, old))| format!("{key}: {old} -> {new}"))
                    .collect();
                tracing::info!(topic = %act.name, changes = %changes.join(", "), "altered topic config");
                act.config = config;
                act.route.set_max_message_bytes(act.config.max_message_bytes);
                for addr in &act.partitions {
                    addr.do_send(partition::SetConfig(act.config.clone()));
                }
                Ok(act.config.to_map())
            }
            Ok(Err(err)) => {
                tracing::error!(%err, topic = %act.name, "cannot store the topic's new config; nothing changed");
                Err(BrokerError::new(
                    ErrorCode::KAFKA_STORAGE_ERROR,
                    format!("cannot store the new config of topic `{}`: {err}", act.name),
                ))
            }
            Err(err) => Err(BrokerError::new(ErrorCode::UNKNOWN_SERVER_ERROR, err.to_string())),
        })))
    }
}
