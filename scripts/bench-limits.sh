#!/usr/bin/env bash
# Measures this machine's limits and Herald's figures in one run, and prints
# each figure as a ratio to its limit (the [perf] targets; see
# docs/benchmarks.md). Installs fio and iperf3 when missing (Debian packages).
#
#   ./scripts/bench-limits.sh            # the whole run (about 3 minutes)
#   ./scripts/bench-limits.sh --quick    # smaller counts, for a smoke test
#   ./scripts/bench-limits.sh --json F   # also write every figure to F
#
# BASELINE_BIN=/path/to/other/herald runs the 100-byte produce with that
# binary too, for the "today's main beside yours" comparison.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v fio >/dev/null || missing+=(fio)
command -v iperf3 >/dev/null || missing+=(iperf3)
if ((${#missing[@]})); then
    sudo_cmd=()
    [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
    "${sudo_cmd[@]}" apt-get install -y "${missing[@]}" >/dev/null 2>&1 \
        || { "${sudo_cmd[@]}" apt-get update >/dev/null && "${sudo_cmd[@]}" apt-get install -y "${missing[@]}" >/dev/null; }
fi

cargo build --release --bin herald >&2
exec python3 scripts/bench_limits.py --herald target/release/herald "$@"
