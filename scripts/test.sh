#!/usr/bin/env bash
# Runs every test: the Rust workspace (unit and integration tests) and the Python
# client's tests against a real broker. Installs what the Python tests need.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --bins
cargo test --workspace --all-targets

if [ -d clients/python/tests ] && ls clients/python/tests/test_*.py >/dev/null 2>&1; then
  python3 -m venv .venv >/dev/null
  .venv/bin/pip install --quiet --disable-pip-version-check -r clients/python/requirements-dev.txt
  HERALD_BIN="$PWD/target/debug/herald" .venv/bin/python -m pytest -q clients/python/tests
fi
