//! The controller election. Every broker runs for controller by creating
//! the ephemeral `/controller`; exactly one create succeeds. The winner bumps
//! the persistent `/controller_epoch` (a conditional write, so two winners
//! in a row never share an epoch) and holds the office as long as its
//! session; the others watch `/controller` and run again when it goes.
//! Every later decision the controller writes carries its epoch, so a
//! deposed controller's late writes are recognised and refused.

use serde::{Deserialize, Serialize};
use zookeeper_client as zk;

use super::registry::now_ms;

/// The ephemeral znode naming the controller.
pub const CONTROLLER: &str = "/controller";
/// The persistent znode holding the controller's epoch, a decimal number.
pub const CONTROLLER_EPOCH: &str = "/controller_epoch";

/// What `/controller` holds (Kafka's layout).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControllerRecord {
    pub version: u32,
    pub brokerid: i32,
    /// When the broker won, in ms since the epoch, as a string (as Kafka).
    pub timestamp: String,
}

/// Who controls the cluster, as one broker last saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControllerSeen {
    pub id: i32,
    pub epoch: i32,
    /// The version of `/controller_epoch` the controller's election wrote:
    /// every write it makes checks it (known only to the controller
    /// itself; -1 for another broker).
    pub epoch_version: i32,
}

/// A change in who controls the cluster, reported by [`campaign`].
pub trait OnController {
    fn seen(&self, controller: ControllerSeen);
}

/// Runs broker `me` for controller for as long as `client`'s session lasts,
/// reporting every controller it sees (itself included) to `report`.
///
/// # Errors
///
/// The session ended, or ZooKeeper refused a request.
pub async fn campaign(client: &zk::Client, me: i32, report: &impl OnController) -> Result<(), zk::Error> {
    let mut won = false;
    loop {
        if let Some((epoch, epoch_version)) = try_to_win(client, me).await? {
            tracing::info!(broker_id = me, epoch, "elected controller");
            report.seen(ControllerSeen { id: me, epoch, epoch_version });
            won = true;
        }
        // Whoever holds the office, wait for it to change hands.
        let (data, stat, watcher) = match client.get_and_watch_data(CONTROLLER).await {
            Ok(found) => found,
            Err(zk::Error::NoNode) => continue,
            Err(err) => return Err(err),
        };
        match serde_json::from_slice::<ControllerRecord>(&data) {
            Ok(holder) if holder.brokerid != me => {
                // Written in the same transaction as `/controller`: this is
                // the holder's epoch, or a later controller's (and then the
                // watch fires at once).
                let epoch = read_epoch(client).await?;
                report.seen(ControllerSeen { id: holder.brokerid, epoch, epoch_version: -1 });
            }
            // This broker's own `/controller` from a campaign that failed
            // before it learned it won (the connection was lost during the
            // write): its epoch's version is unknown, so give the office up
            // and run again.
            Ok(_) if !won => {
                match client.delete(CONTROLLER, Some(stat.version)).await {
                    Ok(()) | Err(zk::Error::NoNode | zk::Error::BadVersion) => {}
                    Err(err) => return Err(err),
                }
                continue;
            }
            Ok(_) => {}
            Err(err) => tracing::warn!(%err, "the controller's znode does not parse; waiting for it to change"),
        }
        let event = watcher.changed().await;
        if event.event_type == zk::EventType::Session {
            return Err(zk::Error::SessionExpired);
        }
    }
}

/// One attempt to become controller: creates `/controller` and bumps
/// `/controller_epoch` in one transaction, conditional on the epoch's
/// version, so that no two controllers ever hold the same epoch. The new
/// epoch and the version of `/controller_epoch` that holds it when this
/// broker won; `None` when another holds the office.
async fn try_to_win(client: &zk::Client, me: i32) -> Result<Option<(i32, i32)>, zk::Error> {
    let ephemeral = zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all());
    let persistent = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    loop {
        let (epoch, version) = match client.get_data(CONTROLLER_EPOCH).await {
            Ok((data, stat)) => (parse_epoch(&data), Some(stat.version)),
            Err(zk::Error::NoNode) => (0, None),
            Err(err) => return Err(err),
        };
        let next = epoch + 1;
        let record = ControllerRecord { version: 1, brokerid: me, timestamp: now_ms().to_string() };
        let data = serde_json::to_vec(&record).unwrap_or_default();
        let mut writes = client.new_multi_writer();
        writes.add_create(CONTROLLER, &data, &ephemeral)?;
        match version {
            Some(version) => writes.add_set_data(CONTROLLER_EPOCH, next.to_string().as_bytes(), Some(version))?,
            None => writes.add_create(CONTROLLER_EPOCH, next.to_string().as_bytes(), &persistent)?,
        }
        match writes.commit().await {
            Ok(results) => {
                let version = match results.get(1) {
                    Some(zk::MultiWriteResult::SetData { stat }) => stat.version,
                    _ => 0,
                };
                return Ok(Some((next, version)));
            }
            Err(zk::MultiWriteError::OperationFailed { index: 0, source: zk::Error::NodeExists }) => return Ok(None),
            // The epoch moved (or was created) under us: read it again.
            Err(zk::MultiWriteError::OperationFailed {
                index: 1,
                source: zk::Error::BadVersion | zk::Error::NodeExists,
            }) => continue,
            Err(err) => return Err(err.into()),
        }
    }
}

/// The current controller epoch; 0 before the first election.
///
/// # Errors
///
/// ZooKeeper refused the read.
pub async fn read_epoch(client: &zk::Client) -> Result<i32, zk::Error> {
    match client.get_data(CONTROLLER_EPOCH).await {
        Ok((data, _)) => Ok(parse_epoch(&data)),
        Err(zk::Error::NoNode) => Ok(0),
        Err(err) => Err(err),
    }
}

fn parse_epoch(data: &[u8]) -> i32 {
    std::str::from_utf8(data).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_parse_as_kafka_writes_them() {
        assert_eq!(parse_epoch(b"7"), 7);
        assert_eq!(parse_epoch(b" 12\n"), 12);
        assert_eq!(parse_epoch(b""), 0);
        assert_eq!(parse_epoch(b"x"), 0);
        let record: ControllerRecord =
            serde_json::from_str(r#"{"version":1,"brokerid":3,"timestamp":"1700000000000"}"#).unwrap();
        assert_eq!(record.brokerid, 3);
    }
}
