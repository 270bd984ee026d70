#!/usr/bin/env bash
# The scale benchmark (issue 8, target 9): one broker (release build) with
# TOPICS x PARTITIONS partitions and CONNECTIONS connections at once.
#
#   1. start a broker on a fresh data directory and time it to ready;
#   2. `herald bench --mode scale`: create the topics, produce one record to
#      every partition, read every partition back and check it, then open
#      CONNECTIONS connections at once, each producing a record and fetching it;
#   3. idle RSS (VmRSS) after that;
#   4. kill -TERM, restart, time to the port answering and to /readyz 200,
#      idle RSS of the restarted broker, and the bench again (which checks every
#      earlier record is still there);
#   5. the same after kill -9.
#
# Usage: scripts/bench-scale.sh            (from the repository root)
# Environment: HERALD (binary, default target/release/herald), TOPICS (1000),
# PARTITIONS (10), CONNECTIONS (1000), DATA_PARENT (where the data directory
# goes, default $TMPDIR or /tmp), NICE (default -15: other work shares the
# cores; needs root, else ignored).
set -euo pipefail

HERALD=${HERALD:-target/release/herald}
TOPICS=${TOPICS:-1000}
PARTITIONS=${PARTITIONS:-10}
CONNECTIONS=${CONNECTIONS:-1000}
NICE=${NICE:--15}
ROOT=$(mktemp -d "${DATA_PARENT:-${TMPDIR:-/tmp}}/herald-scale.XXXXXX")
BROKER_PID=
trap '[ -n "$BROKER_PID" ] && kill -9 "$BROKER_PID" 2>/dev/null; rm -rf "$ROOT"' EXIT

# Connections take a descriptor each, in the broker and in the bench.
ulimit -n "$(ulimit -Hn)"
[ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -ge $((CONNECTIONS + 1100)) ] ||
	{ echo "the descriptor limit $(ulimit -n) is below CONNECTIONS + 1100" >&2; exit 1; }

run() { nice -n "$NICE" "$@" 2>/dev/null || "$@"; }
now() { date +%s.%N; }
since() { echo "$(now) - $1" | bc -l | xargs printf '%.3f'; }
rss_mib() { awk '/^VmRSS/ { printf "%.1f", $2 / 1024 }' "/proc/$BROKER_PID/status"; }
cpu_seconds() { # utime + stime of the broker, in seconds
	awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$BROKER_PID/stat"
}

PORT=0
HTTP_PORT=0
# Starts the broker; sets ANSWERING and READY: seconds to the port answering
# and to /readyz 200.
start() {
	rm -f "$ROOT/port" "$ROOT/http-port"
	local began
	began=$(now)
	nice -n "$NICE" "$HERALD" serve --host 127.0.0.1 --port "$PORT" --port-file "$ROOT/port" \
		--http-port "$HTTP_PORT" --http-port-file "$ROOT/http-port" --data-dir "$ROOT/data" \
		>>"$ROOT/broker.log" 2>&1 &
	BROKER_PID=$!
	until [ -s "$ROOT/port" ] && [ -s "$ROOT/http-port" ]; do
		kill -0 "$BROKER_PID" 2>/dev/null || { cat "$ROOT/broker.log" >&2; exit 1; }
		sleep 0.005
	done
	PORT=$(cat "$ROOT/port")
	HTTP_PORT=$(cat "$ROOT/http-port")
	until (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; do sleep 0.005; done
	ANSWERING=$(since "$began")
	until [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$HTTP_PORT/readyz")" = 200 ]; do
		kill -0 "$BROKER_PID" 2>/dev/null || { cat "$ROOT/broker.log" >&2; exit 1; }
		sleep 0.01
	done
	READY=$(since "$began")
}

bench() {
	run "$HERALD" bench -b "127.0.0.1:$PORT" --mode scale --topics "$TOPICS" --partitions "$PARTITIONS" \
		--connections "$CONNECTIONS" --in-flight 64 --timeout-ms 120000 | sed 's/^/  /'
}

idle_rss() {
	sleep 5
	echo "  idle RSS: $(rss_mib) MiB (broker CPU so far $(cpu_seconds) s)"
}

echo "herald $("$HERALD" --version 2>/dev/null || true); $TOPICS topics x $PARTITIONS partitions, $CONNECTIONS connections; data in $ROOT"
start
echo "fresh start: port answers after $ANSWERING s, ready after $READY s"
bench
idle_rss

for signal in TERM KILL; do
	began=$(now)
	kill -s "$signal" "$BROKER_PID"
	while kill -0 "$BROKER_PID" 2>/dev/null; do sleep 0.005; done
	wait "$BROKER_PID" 2>/dev/null || true
	stopped=$(since "$began")
	start
	echo "after kill -$signal (stopped in $stopped s): port answers after $ANSWERING s, ready after $READY s ($(cpu_seconds) s broker CPU)"
	echo "  idle RSS after the restart, before any request: $(rss_mib) MiB"
	bench
	idle_rss
done
kill -TERM "$BROKER_PID"
wait "$BROKER_PID" 2>/dev/null || true
BROKER_PID=
