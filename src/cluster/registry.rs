//! `/brokers/ids/<id>`: an ephemeral znode per live broker, holding where it
//! is reached (JSON, docs/cluster.md). It lives as long as the broker's
//! ZooKeeper session: a broker that stops, or is silent for the session
//! timeout, disappears from it. The id is the znode's name, so a second
//! broker with an id already registered fails to create it and refuses to
//! start, naming the holder.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use zookeeper_client as zk;

use crate::config::ClusterSettings;

/// Where the brokers register.
pub const BROKER_IDS: &str = "/brokers/ids";

/// What `/brokers/ids/<id>` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRegistration {
    pub host: String,
    pub port: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rack: Option<String>,
    /// When the broker registered, in ms since the epoch.
    pub timestamp: u64,
    /// The layout's version.
    pub version: u32,
}

/// Why a broker could not register.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("cannot reach ZooKeeper at {zookeeper}: {source}")]
    Unreachable { zookeeper: String, source: zk::Error },
    #[error("broker id {id} is already registered in ZooKeeper (by {holder}): each broker needs an id of its own")]
    Taken { id: i32, holder: String },
    #[error("ZooKeeper refused {path}: {source}")]
    Refused { path: String, source: zk::Error },
}

/// Opens a session with the cluster's ZooKeeper.
///
/// # Errors
///
/// ZooKeeper cannot be reached within the session timeout.
pub async fn connect(settings: &ClusterSettings) -> Result<zk::Client, RegistryError> {
    let timeout = Duration::from_millis(settings.zookeeper_session_timeout_ms);
    zk::Client::connector()
        .with_session_timeout(timeout)
        .with_connection_timeout(timeout)
        .connect(&settings.zookeeper)
        .await
        .map_err(|source| RegistryError::Unreachable { zookeeper: settings.zookeeper.clone(), source })
}

/// Registers broker `settings.broker_id`, reached at `host:port`, in the
/// session of `client`; the registration lives as long as the session.
///
/// # Errors
///
/// Another live broker has the id, or ZooKeeper refused the write.
pub async fn register(
    client: &zk::Client,
    settings: &ClusterSettings,
    host: &str,
    port: u16,
) -> Result<(), RegistryError> {
    ensure_path(client, BROKER_IDS).await?;
    let registration = BrokerRegistration {
        host: host.to_string(),
        port,
        rack: (!settings.rack.is_empty()).then(|| settings.rack.clone()),
        timestamp: now_ms(),
        version: 1,
    };
    let data = serde_json::to_vec(&registration).unwrap_or_default();
    let path = broker_path(settings.broker_id);
    let ephemeral = zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all());
    // A broker restarted right after it died finds its old registration,
    // which goes when the old session times out: wait that long for it.
    let deadline = tokio::time::Instant::now() + client.session_timeout() * 3 / 2;
    loop {
        match client.create(&path, &data, &ephemeral).await {
            Ok(_) => return Ok(()),
            Err(zk::Error::NodeExists) => {}
            Err(source) => return Err(RegistryError::Refused { path, source }),
        }
        let (holder, watcher) = match client.get_and_watch_data(&path).await {
            Ok((data, _, watcher)) => (holder_of(&data), watcher),
            Err(zk::Error::NoNode) => continue,
            Err(source) => return Err(RegistryError::Refused { path, source }),
        };
        tracing::info!(id = settings.broker_id, %holder, "broker id registered by another session; waiting for it to expire");
        match tokio::time::timeout_at(deadline, watcher.changed()).await {
            Ok(event) if event.event_type == zk::EventType::NodeDeleted => continue,
            Ok(event) if event.event_type == zk::EventType::Session => {
                return Err(RegistryError::Refused { path, source: zk::Error::SessionExpired })
            }
            Ok(_) => continue,
            Err(_) => return Err(RegistryError::Taken { id: settings.broker_id, holder }),
        }
    }
}

/// Where a registration says its broker is.
fn holder_of(data: &[u8]) -> String {
    match serde_json::from_slice::<BrokerRegistration>(data) {
        Ok(r) => format!("{}:{}", r.host, r.port),
        Err(_) => String::from_utf8_lossy(data).into_owned(),
    }
}

/// The znode of broker `id`.
pub fn broker_path(id: i32) -> String {
    format!("{BROKER_IDS}/{id}")
}

/// Milliseconds since the epoch, as the znodes record times.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Creates `path` and its parents as persistent nodes where missing.
///
/// # Errors
///
/// ZooKeeper refused a create for another reason than the node existing.
pub async fn ensure_path(client: &zk::Client, path: &str) -> Result<(), RegistryError> {
    let persistent = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    let mut at = String::new();
    for part in path.split('/').filter(|p| !p.is_empty()) {
        at.push('/');
        at.push_str(part);
        match client.create(&at, &[], &persistent).await {
            Ok(_) | Err(zk::Error::NodeExists) => {}
            Err(source) => return Err(RegistryError::Refused { path: at, source }),
        }
    }
    Ok(())
}

/// The registrations of the brokers named in `children` (the children of
/// [`BROKER_IDS`]), by id; a broker that left between the list and the read
/// is left out.
///
/// # Errors
///
/// ZooKeeper refused a read for another reason than the node being gone.
pub async fn read_brokers(
    client: &zk::Client,
    children: &[String],
) -> Result<Vec<(i32, BrokerRegistration)>, zk::Error> {
    let mut brokers = Vec::new();
    for child in children {
        let Ok(id) = child.parse::<i32>() else { continue };
        match client.get_data(&format!("{BROKER_IDS}/{child}")).await {
            Ok((data, _)) => {
                if let Ok(registration) = serde_json::from_slice(&data) {
                    brokers.push((id, registration));
                }
            }
            Err(zk::Error::NoNode) => {}
            Err(err) => return Err(err),
        }
    }
    brokers.sort_by_key(|(id, _)| *id);
    Ok(brokers)
}

/// The live brokers, by id.
///
/// # Errors
///
/// ZooKeeper refused the read.
pub async fn live_brokers(client: &zk::Client) -> Result<Vec<(i32, BrokerRegistration)>, RegistryError> {
    let refused = |source| RegistryError::Refused { path: BROKER_IDS.into(), source };
    let (children, _) = client.get_children(BROKER_IDS).await.map_err(refused)?;
    read_brokers(client, &children).await.map_err(refused)
}
