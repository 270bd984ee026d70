#!/usr/bin/env bash
# Installs the system packages the tests need, when missing (Debian):
# chromium, which tests/console.rs drives headless against a running broker,
# and zookeeper, which the cluster tests start (scripts/zookeeper.sh).
# Idempotent: does nothing when everything is there. Uses sudo only when not
# root.
set -euo pipefail

missing=()
[[ -x /usr/bin/chromium ]] || missing+=(chromium)
[[ -f /usr/share/java/zookeeper.jar ]] || missing+=(zookeeper)
if ((${#missing[@]})); then
    sudo_cmd=()
    [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
    echo "installing ${missing[*]} (for the tests)" >&2
    "${sudo_cmd[@]}" apt-get install -y "${missing[@]}" >/dev/null 2>&1 \
        || { "${sudo_cmd[@]}" apt-get update >/dev/null && "${sudo_cmd[@]}" apt-get install -y "${missing[@]}" >/dev/null; }
fi
