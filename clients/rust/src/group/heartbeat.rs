//! The group consumer's heartbeat task: one heartbeat outstanding at a time,
//! reporting what the consumer owns, publishing every answer.

use std::time::{Duration, Instant};

use herald_wire::protocol::*;
use tokio::sync::watch;

use crate::{Client, ClientError};

/// What the heartbeat task last heard from the broker.
#[derive(Debug, Clone)]
pub(super) enum Heard {
    Assignment(AssignmentResponse),
    /// The member was removed or fenced (the broker's code and message).
    Lost(i16, String),
    /// The membership is gone with its coordinator: the connection closed
    /// (for example, the broker restarted), or the broker answered that it
    /// is not (or not yet) the group's coordinator (14, 15, 16).
    Disconnected,
}

/// Keeps one heartbeat outstanding, reporting what the consumer owns, and
/// publishes every answer. While an answer waits to be applied, it only keeps
/// the session alive, every `interval_ms`. Each answer also confirms the
/// membership as of when its heartbeat was sent (the broker cannot have
/// timed the session out before it received it): that moment goes to
/// `confirmed`.
pub(super) async fn heartbeat_loop(
    client: Client,
    group_id: String,
    member_id: String,
    interval_ms: u64,
    mut owned: watch::Receiver<(i64, Vec<TopicPartitions>)>,
    assignments: watch::Sender<Option<Heard>>,
    confirmed: watch::Sender<Instant>,
) {
    let interval = Duration::from_millis(interval_ms);
    loop {
        let (generation_id, reported) = owned.borrow_and_update().clone();
        let pending =
            matches!(assignments.borrow().as_ref(), Some(Heard::Assignment(a)) if a.generation_id != generation_id);
        let request = HeartbeatRequest {
            group_id: group_id.clone(),
            member_id: member_id.clone(),
            generation_id,
            owned: reported,
            topics: None,
            max_wait_ms: if pending { 0 } else { interval_ms },
        };
        let held = Duration::from_millis(request.max_wait_ms);
        let sent = Instant::now();
        match client.request_held::<_, AssignmentResponse>(group_op::HEARTBEAT, &request, held).await {
            Ok(answer) => {
                confirmed.send_replace(sent);
                let changed = answer.generation_id != generation_id;
                assignments.send_replace(Some(Heard::Assignment(answer)));
                if changed || pending {
                    // Wait for the consumer to apply it, heartbeating meanwhile.
                    let _ = tokio::time::timeout(interval, owned.changed()).await;
                }
            }
            Err(ClientError::Broker { code, message, .. }) if matches!(code, 22 | 25 | 82) => {
                assignments.send_replace(Some(Heard::Lost(code, message)));
                return;
            }
            // BROKER_SHUTTING_DOWN: the broker closes the connection next.
            // COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE,
            // NOT_COORDINATOR: the coordinator moved or restarted, and
            // members are not kept across either.
            Err(ClientError::Closed | ClientError::Io(_))
            | Err(ClientError::Broker { code: 1003 | 14 | 15 | 16, .. }) => {
                assignments.send_replace(Some(Heard::Disconnected));
                return;
            }
            Err(err) => {
                tracing::debug!(%err, "heartbeat failed; retrying");
                tokio::time::sleep(interval.min(Duration::from_millis(200))).await;
            }
        }
    }
}
