#!/usr/bin/env bash
# The group-commit benchmark (issue 8, target 8): 16 producers, each one
# request of 10 records of 100 bytes at a time, acks after fsync, against a
# fresh broker with storage.group_commit = true and then false, on 1 and on
# 16 partitions; `herald bench` prints records/s, CPU per record and the
# broker's fsyncs (per second and per request, from /metrics).
#
# Usage: scripts/bench-group-commit.sh          (from the repository root)
# Environment: HERALD (default target/release/herald), BEFORE (another build
# of the broker, run first with its own defaults, for a before/after
# comparison), ROUNDS (2: the settings alternate within each round),
# RECORDS (40000), NICE (-15; needs root, else ignored).
set -euo pipefail

HERALD=${HERALD:-target/release/herald}
ROUNDS=${ROUNDS:-2}
RECORDS=${RECORDS:-40000}
NICE=${NICE:--15}
ROOT=$(mktemp -d "${TMPDIR:-/tmp}/herald-group-commit.XXXXXX")
BROKER_PID=
trap '[ -n "$BROKER_PID" ] && kill -9 "$BROKER_PID" 2>/dev/null; rm -rf "$ROOT"' EXIT

run() { nice -n "$NICE" "$@" 2>/dev/null || "$@"; }

# One broker (binary $1, group_commit $2 or "-" for its default), then the
# bench on 1 and on 16 partitions.
one() {
	local binary=$1 group_commit=$2 label=$3
	rm -rf "$ROOT/data" "$ROOT/port" "$ROOT/http-port"
	local setting=(env)
	[ "$group_commit" = - ] || setting=(env "HERALD_STORAGE__GROUP_COMMIT=$group_commit")
	# Not through `run`: $! must be the broker's own pid, for its CPU.
	nice -n "$NICE" "${setting[@]}" "$binary" serve --host 127.0.0.1 --port 0 --port-file "$ROOT/port" --http-port 0 \
		--http-port-file "$ROOT/http-port" --data-dir "$ROOT/data" >"$ROOT/broker.log" 2>&1 &
	BROKER_PID=$!
	until [ -s "$ROOT/port" ] && [ -s "$ROOT/http-port" ]; do
		kill -0 "$BROKER_PID" 2>/dev/null || { cat "$ROOT/broker.log" >&2; exit 1; }
		sleep 0.05
	done
	for partitions in 1 16; do
		echo "== $label, group_commit=$group_commit, $partitions partition(s)"
		run "$HERALD" bench -b "127.0.0.1:$(cat "$ROOT/port")" --http "127.0.0.1:$(cat "$ROOT/http-port")" \
			--broker-pid "$BROKER_PID" --mode produce --records "$RECORDS" --record-size 100 --batch-records 10 \
			--producers 16 --in-flight 1 --send-with requests --partitions "$partitions" --no-progress | grep -v '^topic'
	done
	kill -TERM "$BROKER_PID"
	wait "$BROKER_PID" || true
	BROKER_PID=
}

for round in $(seq "$ROUNDS"); do
	echo "# round $round"
	[ -z "${BEFORE:-}" ] || one "$BEFORE" - before
	one "$HERALD" true grouped
	one "$HERALD" false ungrouped
done
