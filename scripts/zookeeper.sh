#!/usr/bin/env bash
# A real Apache ZooKeeper server for the cluster's tests and for trying a
# cluster by hand: Debian's `zookeeper` package (installed when missing, with
# sudo only when not root) on the Java already on the machine, standalone, on
# a free port, with its data in a directory of its own.
#
#   scripts/zookeeper.sh start DIR   start one; prints its address (127.0.0.1:PORT)
#                                    and leaves DIR/port, DIR/pid, DIR/zookeeper.log
#   scripts/zookeeper.sh stop DIR    stop the one started in DIR (its data stays)
#   scripts/zookeeper.sh restart DIR stop it and start it again on its data and port
#
# Ready when `start` returns: it waits until the server answers `srvr`. A
# start in a DIR that has run one before (DIR/port) takes that port again, so
# that clients and brokers given the address reconnect to the same server.
set -euo pipefail

JAR=/usr/share/java/zookeeper.jar
usage() { echo "usage: $0 start|stop|restart DIR" >&2; exit 2; }
[[ $# -eq 2 ]] || usage
command=$1
dir=$2

install() {
    [[ -f $JAR ]] && return
    local sudo_cmd=()
    [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
    echo "installing zookeeper (Debian package)" >&2
    "${sudo_cmd[@]}" apt-get install -y zookeeper >/dev/null 2>&1 \
        || { "${sudo_cmd[@]}" apt-get update >/dev/null && "${sudo_cmd[@]}" apt-get install -y zookeeper >/dev/null; }
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Whether the server in DIR answers `srvr` (ZooKeeper's four-letter word).
answers() {
    local port=$1
    python3 - "$port" <<'PY'
import socket, sys
try:
    with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1) as s:
        s.sendall(b"srvr")
        sys.exit(0 if s.recv(64).startswith(b"Zookeeper version") else 1)
except OSError:
    sys.exit(1)
PY
}

start() {
    install
    mkdir -p "$dir/data"
    dir=$(cd "$dir" && pwd)
    if [[ -f $dir/port ]]; then port=$(cat "$dir/port"); else port=$(free_port); fi
    cat > "$dir/zoo.cfg" <<CFG
tickTime=500
initLimit=10
syncLimit=5
dataDir=$dir/data
clientPort=$port
clientPortAddress=127.0.0.1
maxClientCnxns=0
admin.enableServer=false
4lw.commands.whitelist=srvr,ruok,stat
CFG
    echo "$port" > "$dir/port"
    # Started again on its old port, it may find the port taken for a moment
    # (another process's connection got it as its local port): it exits at
    # once, and is started again, up to 10 times.
    local launches=0
    launch() {
        launches=$((launches + 1))
        java -Xmx256m -cp "/etc/zookeeper/conf:$JAR" org.apache.zookeeper.server.quorum.QuorumPeerMain "$dir/zoo.cfg" \
            >> "$dir/zookeeper.log" 2>&1 &
        echo $! > "$dir/pid"
    }
    launch
    for _ in $(seq 1 200); do
        if answers "$port"; then
            echo "127.0.0.1:$port"
            return 0
        fi
        if ! kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
            # (Its own log says nothing of why: SLF4J has no binding here.)
            if [[ $launches -lt 10 ]]; then
                echo "zookeeper exited at start (127.0.0.1:$port taken for now?); starting it again" >&2
                sleep 0.5
                launch
                continue
            fi
            echo "zookeeper exited at start; its log:" >&2
            cat "$dir/zookeeper.log" >&2
            return 1
        fi
        sleep 0.1
    done
    echo "zookeeper did not answer on 127.0.0.1:$port within 20 s" >&2
    kill "$(cat "$dir/pid")" 2>/dev/null || true
    return 1
}

stop() {
    [[ -f $dir/pid ]] || { echo "no zookeeper started in $dir" >&2; return 1; }
    pid=$(cat "$dir/pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || { rm -f "$dir/pid"; return 0; }
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$dir/pid"
}

case $command in
start) start ;;
stop) stop ;;
restart) stop && start ;;
*) usage ;;
esac
