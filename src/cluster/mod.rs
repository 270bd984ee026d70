//! A broker's place in a cluster coordinated by ZooKeeper (docs/cluster.md).
//! So far: the broker registers itself under `/brokers/ids/<id>` as an
//! ephemeral node, and a second broker with the same id refuses to start.

pub mod registry;
