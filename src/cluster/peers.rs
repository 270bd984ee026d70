//! How a broker connects to the other brokers of its cluster: replica
//! fetches, the controlled shutdown's request to the controller, and an
//! extension's reads, writes and commits on another broker. Such connections
//! speak what the brokers' listeners speak (docs/security.md, "Between
//! brokers"): TLS when `security.tls_cert_file` is set, verifying the other
//! broker's certificate against `cluster.inter_broker_tls_ca_file` (or
//! `security.tls_client_ca_file`) and showing this broker's own certificate
//! when asked for one; then SCRAM-SHA-256 as `cluster.inter_broker_user`
//! when it is set. A SIGHUP reads the TLS files again, as it does the
//! listener's: connections made from then on use them, open ones keep
//! theirs.

use std::sync::{Arc, PoisonError, RwLock};

use actix::prelude::*;
use herald_client::{Client, ClientError, ConnectOptions, Credentials, TlsOptions};

use super::ClusterNode;
use crate::config::{Authentication, ClientAuth, Settings};

/// The options of every connection to another broker; cheap to clone
/// (clones share the options, and a reload).
#[derive(Clone)]
pub struct Peers {
    options: Arc<RwLock<ConnectOptions>>,
    /// The settings the options were made from, to read the files again.
    settings: Arc<Settings>,
}

impl Peers {
    /// The options `settings` give. Checked at start: a cluster whose
    /// brokers could not reach or authenticate to each other refuses to
    /// start.
    ///
    /// # Errors
    ///
    /// What is missing or cannot be read, in words for the operator.
    pub fn from_settings(settings: &Settings) -> Result<Peers, String> {
        let options = Peers::options_of(settings)?;
        Ok(Peers { options: Arc::new(RwLock::new(options)), settings: Arc::new(settings.clone()) })
    }

    /// Reads the TLS files again: connections made from now on use them. A
    /// failure changes nothing.
    ///
    /// # Errors
    ///
    /// A file cannot be read or holds nothing usable.
    pub fn reload(&self) -> Result<(), String> {
        let options = Peers::options_of(&self.settings)?;
        *self.options.write().unwrap_or_else(PoisonError::into_inner) = options;
        Ok(())
    }

    fn options(&self) -> ConnectOptions {
        self.options.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn options_of(settings: &Settings) -> Result<ConnectOptions, String> {
        let (security, cluster) = (&settings.security, &settings.cluster);
        let mut options = ConnectOptions::default();
        if security.tls() {
            let ca = match (cluster.inter_broker_tls_ca_file.as_str(), security.tls_client_ca_file.as_str()) {
                ("", "") => {
                    return Err("the brokers speak TLS (security.tls_cert_file is set), so each must verify the \
                                others' certificates: set cluster.inter_broker_tls_ca_file to the CA that signed \
                                them"
                        .into())
                }
                ("", client_ca) => client_ca,
                (ca, _) => ca,
            };
            let tls = TlsOptions::from_ca_file(ca)
                .and_then(|tls| tls.client_cert_files(&security.tls_cert_file, &security.tls_key_file))
                .map_err(|err| format!("the TLS files for connections to the other brokers: {err}"))?;
            options = options.tls(tls);
        }
        match (cluster.inter_broker_user.as_str(), cluster.inter_broker_password.as_str()) {
            ("", "") => {
                let certified = security.tls() && security.tls_client_auth != ClientAuth::None;
                if security.authentication == Authentication::Required && !certified {
                    return Err("security.authentication = \"required\", so the brokers must authenticate to each \
                                other: set cluster.inter_broker_user and cluster.inter_broker_password, or have \
                                the listeners request client certificates (security.tls_client_auth)"
                        .into());
                }
            }
            ("", _) => return Err("cluster.inter_broker_password is set without cluster.inter_broker_user".into()),
            (_, "") => return Err("cluster.inter_broker_user is set without cluster.inter_broker_password".into()),
            (user, password) => options = options.credentials(Credentials::scram_sha_256(user, password)),
        }
        Ok(options)
    }

    /// Connects to the broker at `address` ("host:port"), as `client_id`.
    pub async fn connect(&self, address: &str, client_id: &str) -> Result<Client, ClientError> {
        Client::connect_with_options(address, client_id, self.options()).await
    }
}

/// Asks a broker's [`ClusterNode`] how it connects to the other brokers.
#[derive(Message)]
#[rtype(result = "Peers")]
pub struct GetPeers;

impl Handler<GetPeers> for ClusterNode {
    type Result = MessageResult<GetPeers>;

    fn handle(&mut self, _: GetPeers, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.peers.clone())
    }
}

/// Where a partition's leader is, as this broker knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaderAt {
    /// This broker leads it (or the partition is not the cluster's).
    Here,
    /// Another broker leads it: its id and address.
    There(i32, String),
    /// No leader is known now (an election under way, its broker not seen).
    Unknown,
}

/// Asks a broker's [`ClusterNode`] where `topic`'s `partition` is led.
#[derive(Message)]
#[rtype(result = "LeaderAt")]
pub struct FindLeader {
    pub topic: String,
    pub partition: u32,
}

impl Handler<FindLeader> for ClusterNode {
    type Result = MessageResult<FindLeader>;

    fn handle(&mut self, msg: FindLeader, _: &mut Context<Self>) -> Self::Result {
        let Some(view) = self.topics.get(&msg.topic) else { return MessageResult(LeaderAt::Here) };
        let leader = view.partitions.get(msg.partition as usize).and_then(|p| p.state.as_ref()).map(|(s, _)| s.leader);
        MessageResult(match leader {
            Some(id) if id == self.settings.broker_id => LeaderAt::Here,
            Some(id) if id >= 0 => match self.brokers.iter().find(|b| b.id == id) {
                Some(b) => LeaderAt::There(id, format!("{}:{}", b.host, b.port)),
                None => LeaderAt::Unknown,
            },
            _ => LeaderAt::Unknown,
        })
    }
}
