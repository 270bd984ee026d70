#!/usr/bin/env bash
# Compares two builds' clients: `herald bench --mode produce` of OLD and NEW
# binaries alternated, ROUNDS times, against one broker (NEW's, flush never,
# a temporary data directory), 100-byte and 1 KB records on one partition.
# Prints records/s and the client's and broker's CPU µs per record per run.
#
#   scripts/bench-ab.sh OLD_BIN NEW_BIN [ROUNDS]   (default 3 rounds)
set -euo pipefail
[[ $# -ge 2 ]] || { echo "usage: $0 OLD_BIN NEW_BIN [ROUNDS]" >&2; exit 2; }
old=$1 new=$2 rounds=${3:-3}
dir=$(mktemp -d)
"$new" serve --port 0 --port-file "$dir/port" --data-dir "$dir/data" --flush never >"$dir/log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 100); do [[ -s $dir/port ]] && break; sleep 0.1; done
addr=127.0.0.1:$(cat "$dir/port")
echo "build size records/s client_us/record broker_us/record"
for _ in $(seq "$rounds"); do
    for who in old new; do
        bin=$old; [[ $who == new ]] && bin=$new
        for size in 100 1000; do
            records=$(( size == 100 ? 2000000 : 500000 ))
            "$bin" bench --mode produce -b "$addr" --records "$records" --record-size "$size" --partitions 1 \
                --acks 1 --no-progress --json 2>/dev/null | python3 -c '
import json, sys
p = json.load(sys.stdin)["produce"]
print(sys.argv[1], sys.argv[2], round(p["records_per_second"]), p["cpu"]["client_us_per_record"],
      round(p["cpu"]["broker_us_per_record"], 3))' "$who" "$size"
        done
    done
done
