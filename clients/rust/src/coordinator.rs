//! A group's coordinator (docs/protocol.md, "Groups in a cluster"): the
//! broker every request about the group goes to.
//!
//! [`Cluster::coordinator`] asks `find_coordinator` (of any broker) and
//! connects to the broker it names; the answer is cached per group until a
//! caller says it is stale ([`Cluster::forget_coordinator`], after an answer
//! [`coordinator_moved`] recognises) or its connection closes. While the
//! answer is "not yet" (`COORDINATOR_NOT_AVAILABLE`) or no broker can be
//! reached, it asks again after a [`Backoff`] (100 ms, doubling up to 1 s)
//! until the caller's deadline. A broker that answers `LEADER_NOT_AVAILABLE`
//! (between ZooKeeper sessions) or `BROKER_SHUTTING_DOWN` is not asked again
//! at once: the other brokers are, before the backoff.
//!
//! A broker alone (`describe_cluster` says `single`), or one whose handshake
//! does not list `find_coordinator` (from before clusters), coordinates
//! every group: the coordinator is then the connection any request may use
//! ([`Cluster::any`]), and `find_coordinator` is not sent.

use std::time::{Duration, Instant};

use herald_wire::error::ErrorCode;
use herald_wire::protocol::{op, FindCoordinatorResponse};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::leaders::{answered_one_of, same_connection};
use crate::{Client, ClientError, Cluster, RETRY_BACKOFF_MAX, RETRY_BACKOFF_MIN};

/// The answers that say a group's coordinator is elsewhere, or changing.
pub(crate) const COORDINATOR_CODES: [ErrorCode; 3] =
    [ErrorCode::COORDINATOR_LOAD_IN_PROGRESS, ErrorCode::COORDINATOR_NOT_AVAILABLE, ErrorCode::NOT_COORDINATOR];

/// Whether `err`, the outcome of a request about a group sent to its
/// coordinator, says to look the coordinator up again and resend there:
/// `COORDINATOR_LOAD_IN_PROGRESS` (14), `COORDINATOR_NOT_AVAILABLE` (15),
/// `NOT_COORDINATOR` (16), a connection that closed or could not be
/// opened, or a request that timed out.
pub fn coordinator_moved(err: &ClientError) -> bool {
    matches!(err, ClientError::Io(_) | ClientError::Closed | ClientError::TimedOut { .. })
        || answered_one_of(err, &COORDINATOR_CODES)
}

/// The answers to `find_coordinator` that say to ask another broker: this
/// one is between ZooKeeper sessions, or leaving.
const ASK_ANOTHER: [ErrorCode; 2] = [ErrorCode::LEADER_NOT_AVAILABLE, ErrorCode::BROKER_SHUTTING_DOWN];

/// Whether `find_coordinator` (or reaching a broker to ask it) failed in a
/// way that asking again after a wait may cure: as [`coordinator_moved`],
/// and `LEADER_NOT_AVAILABLE` (the broker is between ZooKeeper sessions)
/// and `BROKER_SHUTTING_DOWN` (another broker will answer).
pub(crate) fn lookup_retriable(err: &ClientError) -> bool {
    coordinator_moved(err) || answered_one_of(err, &[ErrorCode::LEADER_NOT_AVAILABLE, ErrorCode::BROKER_SHUTTING_DOWN])
}

/// The waits between two attempts: [`RETRY_BACKOFF_MIN`], doubling up to
/// [`RETRY_BACKOFF_MAX`], none ending past a deadline.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    next: Duration,
    deadline: Instant,
}

impl Backoff {
    /// Waits that end by `deadline`.
    pub(crate) fn until(deadline: Instant) -> Backoff {
        Backoff { next: RETRY_BACKOFF_MIN, deadline }
    }

    /// The wait before the next attempt (cut short at the deadline), or
    /// `None` once the deadline has passed: give up.
    pub(crate) fn next_wait(&mut self) -> Option<Duration> {
        let left = self.deadline.checked_duration_since(Instant::now()).filter(|left| !left.is_zero())?;
        let wait = self.next.min(left);
        self.next = (self.next * 2).min(RETRY_BACKOFF_MAX);
        Some(wait)
    }

    /// Sleeps the next wait; false (at once) once the deadline has passed.
    pub(crate) async fn wait(&mut self) -> bool {
        match self.next_wait() {
            Some(wait) => {
                tokio::time::sleep(wait).await;
                true
            }
            None => false,
        }
    }
}

impl Cluster {
    /// A connection to `group_id`'s coordinator: the cached one while it is
    /// open, else the broker `find_coordinator` names now (see the module
    /// documentation), asking again after a backoff while the answer is
    /// "not yet" or no broker answers, until `deadline`.
    ///
    /// # Errors
    ///
    /// The last error once `deadline` has passed; at once, an error waiting
    /// cannot cure (`INVALID_GROUP_ID`, `GROUP_AUTHORIZATION_FAILED`, a
    /// failed authentication).
    pub async fn coordinator(&self, group_id: &str, deadline: Instant) -> Result<Client, ClientError> {
        let mut backoff = Backoff::until(deadline);
        loop {
            match self.lookup_coordinator(group_id).await {
                Ok(client) => return Ok(client),
                Err(err) if lookup_retriable(&err) => {
                    tracing::debug!(group = group_id, %err, "no coordinator yet; asking again");
                    if !backoff.wait().await {
                        return Err(err);
                    }
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// Marks `group_id`'s coordinator stale: the next
    /// [`Cluster::coordinator`] asks `find_coordinator` again.
    pub fn forget_coordinator(&self, group_id: &str) {
        self.state().coordinators.remove(group_id);
    }

    /// One attempt at [`Cluster::coordinator`].
    async fn lookup_coordinator(&self, group_id: &str) -> Result<Client, ClientError> {
        if let Some(open) = self.state().coordinators.get(group_id).filter(|c| !c.is_closed()) {
            return Ok(open.clone());
        }
        let client = self.any().await?;
        if self.coordinates_all(&client).await? {
            return Ok(client);
        }
        let found = match client.find_coordinator(group_id).await {
            Err(err) if answered_one_of(&err, &ASK_ANOTHER) => self.ask_others(group_id, &client, err).await?,
            found => found?,
        };
        let address = format!("{}:{}", found.host, found.port);
        let coordinator = self.connect_broker(found.broker_id, &address).await?;
        self.state().coordinators.insert(group_id.to_string(), coordinator.clone());
        Ok(coordinator)
    }

    /// `find_coordinator` of the brokers other than `asked`'s (which
    /// answered `err`, one of [`ASK_ANOTHER`]): those connected first, then
    /// the others the last `metadata` listed; the first answer that is not
    /// one of those, else `err`.
    async fn ask_others(
        &self,
        group_id: &str,
        asked: &Client,
        err: ClientError,
    ) -> Result<FindCoordinatorResponse, ClientError> {
        let (mut open, brokers) = {
            let state = self.state();
            let open: Vec<Client> =
                state.connections.values().filter(|c| !c.is_closed() && !same_connection(c, asked)).cloned().collect();
            let brokers: Vec<(i32, String)> = state
                .brokers
                .iter()
                .filter(|(id, _)| !state.connections.contains_key(id) && state.home_id != Some(**id))
                .map(|(id, address)| (*id, address.clone()))
                .collect();
            (open, brokers)
        };
        for (id, address) in brokers {
            if let Ok(client) = self.connect_broker(id, &address).await {
                open.push(client);
            }
        }
        for other in open {
            match other.find_coordinator(group_id).await {
                Err(again) if lookup_retriable(&again) => tracing::debug!(%again, "asking another broker"),
                found => return found,
            }
        }
        Err(err)
    }

    /// Whether `client`'s broker coordinates every group: it is alone, or
    /// does not serve `find_coordinator`.
    async fn coordinates_all(&self, client: &Client) -> Result<bool, ClientError> {
        if !client.features().offers(op::FIND_COORDINATOR) {
            return Ok(true);
        }
        if let Some(single) = self.state().single {
            return Ok(single);
        }
        let described = client.describe_cluster().await?;
        let mut state = self.state();
        state.single = Some(described.mode == "single");
        if same_connection(&state.home, client) {
            state.home_id = Some(described.broker_id);
        }
        Ok(described.mode == "single")
    }

    /// Sends a request about `group_id` to its coordinator, and while the
    /// answer is one [`coordinator_moved`] recognises, looks the coordinator
    /// up again and resends, after a backoff, until `deadline`. With
    /// `resend_unanswered` false, a request that may have been carried out
    /// (its connection closed or it timed out after it was sent) is not
    /// sent again: its error is returned.
    pub(crate) async fn group_request<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        group_id: &str,
        operation: &str,
        body: &Req,
        deadline: Instant,
        resend_unanswered: bool,
    ) -> Result<Resp, ClientError> {
        let mut backoff = Backoff::until(deadline);
        loop {
            let coordinator = self.coordinator(group_id, deadline).await?;
            match coordinator.request(operation, body).await {
                Err(err) if coordinator_moved(&err) => {
                    self.forget_coordinator(group_id);
                    let answered = answered_one_of(&err, &COORDINATOR_CODES);
                    if !(answered || resend_unanswered) || !backoff.wait().await {
                        return Err(err);
                    }
                    tracing::debug!(group = group_id, operation, %err, "coordinator moved; asking again");
                }
                answered => return answered,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(code: ErrorCode) -> ClientError {
        ClientError::broker(code.code(), None)
    }

    #[test]
    fn coordinator_codes_closed_connections_and_timeouts_mean_look_again() {
        for code in COORDINATOR_CODES {
            assert!(coordinator_moved(&answer(code)), "{code:?}");
        }
        assert!(coordinator_moved(&ClientError::Closed));
        assert!(coordinator_moved(&ClientError::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused))));
        let timed_out = ClientError::TimedOut { peer: "a:1".into(), what: "answer".into(), after: Duration::ZERO };
        assert!(coordinator_moved(&timed_out));
    }

    #[test]
    fn membership_and_request_errors_are_not_a_move() {
        for code in [
            ErrorCode::UNKNOWN_MEMBER_ID,
            ErrorCode::ILLEGAL_GENERATION,
            ErrorCode::FENCED_INSTANCE_ID,
            ErrorCode::INVALID_GROUP_ID,
            ErrorCode::GROUP_AUTHORIZATION_FAILED,
            ErrorCode::NOT_LEADER_OR_FOLLOWER,
            ErrorCode::LEADER_NOT_AVAILABLE,
        ] {
            assert!(!coordinator_moved(&answer(code)), "{code:?}");
        }
        assert!(!coordinator_moved(&ClientError::Protocol("bad frame".into())));
    }

    #[test]
    fn a_lookup_is_also_asked_again_while_the_broker_is_between_sessions_or_leaving() {
        assert!(lookup_retriable(&answer(ErrorCode::LEADER_NOT_AVAILABLE)));
        assert!(lookup_retriable(&answer(ErrorCode::BROKER_SHUTTING_DOWN)));
        assert!(lookup_retriable(&answer(ErrorCode::COORDINATOR_NOT_AVAILABLE)));
        assert!(lookup_retriable(&ClientError::Closed));
        assert!(!lookup_retriable(&answer(ErrorCode::INVALID_GROUP_ID)));
        assert!(!lookup_retriable(&answer(ErrorCode::GROUP_AUTHORIZATION_FAILED)));
    }

    #[test]
    fn the_backoff_doubles_from_100_ms_up_to_1_s() {
        let mut backoff = Backoff::until(Instant::now() + Duration::from_secs(3600));
        let waits: Vec<u64> =
            (0..7).map(|_| backoff.next_wait().expect("before the deadline").as_millis() as u64).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1000, 1000, 1000]);
    }

    #[test]
    fn the_backoff_ends_at_the_deadline() {
        let mut backoff = Backoff::until(Instant::now() + Duration::from_millis(150));
        assert_eq!(backoff.next_wait(), Some(Duration::from_millis(100)));
        let cut = backoff.next_wait().expect("the deadline has not passed yet");
        assert!(cut <= Duration::from_millis(150), "{cut:?} ends past the deadline");
        let mut passed = Backoff::until(Instant::now());
        assert_eq!(passed.next_wait(), None);
    }
}
