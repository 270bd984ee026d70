//! Which ACL permissions each request needs (docs/security.md has the
//! table), checked before the request is dispatched; lists (topics, groups,
//! a group's committed offsets) are narrowed to what the principal may
//! describe instead of being refused. Nothing is checked when
//! `security.authorization` is off.

use herald_actors::error::BrokerError;

use super::Connection;
use crate::protocol::{Request, TopicPartitions};
use crate::security::acl::{Operation as Op, Resource, ResourceType};
use crate::security::authorizer::Access;

impl Connection {
    /// This connection's standing, for checks inside a request's future.
    pub(super) fn access(&self) -> Access {
        Access { authorizer: self.authorizer.clone(), principal: self.principal.clone(), host: Some(self.peer.ip()) }
    }

    /// Checks `request` against the ACLs before it is dispatched.
    pub(super) fn authorize(&self, request: &Request) -> Result<(), BrokerError> {
        if !self.authorizer.enabled() {
            return Ok(());
        }
        let access = self.access();
        let topic = |op, name: &str| access.check(op, &Resource::topic(name));
        let group = |op, name: &str| access.check(op, &Resource::group(name));
        let cluster = |op| access.check(op, &Resource::cluster());
        match request {
            Request::Handshake(_)
            | Request::Authenticate(_)
            | Request::ListTopics
            | Request::ListGroups
            | Request::DescribeCluster
            | Request::Metadata(_) => Ok(()),
            // Creating topics may be allowed cluster-wide or per topic name.
            Request::CreateTopic(r) if !access.may(Op::Create, &Resource::cluster()) => topic(Op::Create, &r.topic),
            Request::CreateTopic(_) => Ok(()),
            Request::DeleteTopic(r) => topic(Op::Delete, &r.topic),
            Request::DescribeTopic(r) => topic(Op::Describe, &r.topic),
            Request::AddPartitions(r) => topic(Op::Alter, &r.topic),
            Request::AlterTopicConfig(r) => topic(Op::Alter, &r.topic),
            Request::DeleteRecords(r) => topic(Op::Delete, &r.topic),
            Request::Produce(r) => topic(Op::Write, &r.topic),
            Request::Fetch(r) => topic(Op::Read, &r.topic),
            Request::ListOffsets(r) => topic(Op::Describe, &r.topic),
            Request::JoinGroup(r) => {
                group(Op::Read, &r.group_id)?;
                r.topics.iter().try_for_each(|t| topic(Op::Describe, t))
            }
            Request::Heartbeat(r) => {
                group(Op::Read, &r.group_id)?;
                r.topics.iter().flatten().try_for_each(|t| topic(Op::Describe, t))
            }
            Request::LeaveGroup(r) => group(Op::Read, &r.group_id),
            Request::CommitOffsets(r) => {
                group(Op::Read, &r.group_id)?;
                r.offsets.iter().try_for_each(|o| topic(Op::Read, &o.topic))
            }
            Request::FetchOffsets(r) => {
                group(Op::Describe, &r.group_id)?;
                r.partitions.iter().flatten().try_for_each(|tp: &TopicPartitions| topic(Op::Describe, &tp.topic))
            }
            Request::DescribeGroup(r) => group(Op::Describe, &r.group_id),
            Request::ResetOffsets(r) => {
                group(Op::Read, &r.group_id)?;
                topic(Op::Read, &r.topic)
            }
            Request::DeleteGroup(r) => group(Op::Delete, &r.group_id),
            Request::FindCoordinator(r) => group(Op::Describe, &r.group_id),
            Request::CreateAcls(_)
            | Request::DeleteAcls(_)
            | Request::AlterQuotas(_)
            | Request::CreateUser(_)
            | Request::DeleteUser(_) => cluster(Op::Alter),
            Request::ListAcls(_) | Request::DescribeQuotas | Request::ListUsers => cluster(Op::Describe),
            Request::ReplicaFetch(_) | Request::EpochEnd(_) | Request::ControlledShutdown(_) => {
                cluster(Op::ClusterAction)
            }
            Request::Custom(call) => access.check(Op::Call, &Resource::custom_operation(call.op.clone())),
            // Kafka's rule (KIP-679): `idempotent_write` on the cluster, or
            // `write` on any topic.
            Request::InitProducerId(_) => {
                let (authorizer, principal, host) = (&access.authorizer, &access.principal, access.host);
                match authorizer.allows_on_any(principal, host, Op::Write, ResourceType::Topic) {
                    true => Ok(()),
                    false => cluster(Op::IdempotentWrite),
                }
            }
        }
    }
}
