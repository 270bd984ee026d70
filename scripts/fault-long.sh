#!/usr/bin/env bash
# The long tier of the fault-injection suite: every scenario of the CI tier
# with larger counts, release build. Each scenario prints its seed and one
# line of figures; replay a failing run with HERALD_FAULT_SEED=<seed>.
# Counts can be raised further through the same variables.
set -euo pipefail
cd "$(dirname "$0")/.."

export HERALD_FAULT_KILLS="${HERALD_FAULT_KILLS:-100}"
export HERALD_FAULT_MIN_ACKS="${HERALD_FAULT_MIN_ACKS:-500000}"
export HERALD_FAULT_FLIPS="${HERALD_FAULT_FLIPS:-20000}"
export HERALD_FAULT_POINTS="${HERALD_FAULT_POINTS:-10000}"
export HERALD_FAULT_CHURN_STEPS="${HERALD_FAULT_CHURN_STEPS:-60}"

cargo build --release --bins
# The broker process: repeated SIGKILL, SIGTERM under load.
cargo test --release --test fault_process -- --nocapture
# kill -9 under a committing group; group churn with kills, pauses and joins.
cargo test --release --test fault_group -- --nocapture
cargo test --release --test fault_churn -- --nocapture
# The log on real files: every cut point, seeded byte flips.
cargo test --release -p herald-actors --lib fault_sweep -- --nocapture
# The group log: seeded flips, every cut of the last batches, garbage appended.
cargo test --release -p herald-actors --lib group::store::sweep_tests -- --nocapture
# The log on FaultFs: power loss, write and fsync failures, disk full.
cargo test --release -p herald-actors --lib power_loss -- --nocapture
cargo test --release -p herald-actors --lib storage_fault -- --nocapture
# Hostile clients beside a healthy client: 20 s attacks, five times the
# connections.
HERALD_HOSTILE_ATTACK_MS="${HERALD_HOSTILE_ATTACK_MS:-20000}" \
  HERALD_HOSTILE_CONNECTIONS="${HERALD_HOSTILE_CONNECTIONS:-5}" \
  cargo test --release --test hostile_clients -- --nocapture
# The cluster against a real ZooKeeper (scripts/zookeeper.sh installs it):
# 10 rounds of leaders killed under acks -1 load, a leader paused past its
# session, the controller killed, ZooKeeper restarted; a producer through a
# killed leader; a rolling restart under load; compacted replicas; a consumer
# group whose coordinator's broker is killed 5 times; groups on
# __consumer_offsets.
HERALD_CLUSTER_FAULTS=long cargo test --release --test cluster_faults --test cluster_group_failover -- --nocapture
cargo test --release --test cluster_clients --test cluster_shutdown --test cluster_compaction --test cluster_groups \
  -- --nocapture
