#!/usr/bin/env bash
# A three-broker Herald cluster on this machine, for trying it by hand:
# ZooKeeper (scripts/zookeeper.sh) and three `herald serve --zookeeper`
# brokers, ids 1-3, each with its data, log and pid under DIR.
#
#   scripts/cluster.sh start DIR   start them; prints the bootstrap addresses
#                                  once every broker sees three brokers and a
#                                  controller
#   scripts/cluster.sh stop DIR    stop the brokers (SIGTERM) and ZooKeeper;
#                                  the data stays, and `start` reopens it
#
# The brokers listen on 9092, 9093 and 9094 when all three are free, else on
# three free ports (HERALD_CLUSTER_FREE_PORTS=1 always takes free ones); their
# HTTP listeners on free ports. The binary is HERALD_BIN, else
# target/release/herald, built when missing.
set -euo pipefail

usage() { echo "usage: $0 start|stop DIR" >&2; exit 2; }
[[ $# -eq 2 ]] || usage
command=$1
dir=$2
here=$(cd "$(dirname "$0")" && pwd)
brokers=(1 2 3)

binary() {
    if [[ -n ${HERALD_BIN:-} ]]; then
        echo "$HERALD_BIN"
        return
    fi
    local bin=$here/../target/release/herald
    if [[ ! -x $bin ]]; then
        echo "building the release binary" >&2
        (cd "$here/.." && cargo build --release --bin herald >&2)
    fi
    echo "$bin"
}

# Whether nothing listens on 127.0.0.1:PORT and it can be bound.
free() {
    python3 - "$1" <<'PY'
import socket, sys
s = socket.socket()
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
PY
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Whether broker at ADDRESS sees three brokers and a controller.
settled() {
    "$1" cluster describe --json -b "$2" 2>/dev/null | python3 -c '
import json, sys
d = json.load(sys.stdin)
sys.exit(0 if len(d["brokers"]) == 3 and d["controller_id"] != -1 else 1)' 2>/dev/null
}

start() {
    local bin ports=() addresses=() zk
    bin=$(binary)
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    for id in "${brokers[@]}"; do
        if [[ -f $dir/b$id/pid ]] && kill -0 "$(cat "$dir/b$id/pid")" 2>/dev/null; then
            echo "broker $id already runs in $dir (scripts/cluster.sh stop $dir first)" >&2
            exit 1
        fi
    done
    if [[ -z ${HERALD_CLUSTER_FREE_PORTS:-} ]] && free 9092 && free 9093 && free 9094; then
        ports=(9092 9093 9094)
    else
        ports=("$(free_port)" "$(free_port)" "$(free_port)")
    fi
    zk=$(bash "$here/zookeeper.sh" start "$dir/zk")
    for i in 0 1 2; do
        local id=${brokers[$i]} port=${ports[$i]}
        mkdir -p "$dir/b$id"
        "$bin" serve --zookeeper "$zk" --broker-id "$id" --host 127.0.0.1 --port "$port" \
            --http-port 0 --data-dir "$dir/b$id/data" >> "$dir/b$id/herald.log" 2>&1 &
        echo $! > "$dir/b$id/pid"
        addresses+=("127.0.0.1:$port")
    done
    for _ in $(seq 1 300); do
        local ready=0
        for i in 0 1 2; do
            local id=${brokers[$i]}
            if ! kill -0 "$(cat "$dir/b$id/pid")" 2>/dev/null; then
                echo "broker $id exited; its log ($dir/b$id/herald.log):" >&2
                tail -n 20 "$dir/b$id/herald.log" >&2
                stop
                exit 1
            fi
            settled "$bin" "${addresses[$i]}" && ready=$((ready + 1))
        done
        if [[ $ready -eq 3 ]]; then
            (IFS=,; echo "${addresses[*]}")
            return 0
        fi
        sleep 0.1
    done
    echo "the brokers did not form a cluster within 30 s; logs in $dir/b*/herald.log" >&2
    stop
    exit 1
}

stop() {
    local pids=() id pid
    for id in "${brokers[@]}"; do
        [[ -f $dir/b$id/pid ]] || continue
        pid=$(cat "$dir/b$id/pid")
        kill -TERM "$pid" 2>/dev/null && pids+=("$pid")
        rm -f "$dir/b$id/pid"
    done
    for pid in "${pids[@]}"; do
        for _ in $(seq 1 300); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -0 "$pid" 2>/dev/null && { echo "broker $pid did not stop within 30 s; killing it" >&2; kill -9 "$pid"; }
    done
    if [[ -f $dir/zk/pid ]]; then
        bash "$here/zookeeper.sh" stop "$dir/zk"
    fi
}

case $command in
start) start ;;
stop) stop ;;
*) usage ;;
esac
