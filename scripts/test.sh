#!/usr/bin/env bash
# Runs every test: the Rust workspace (unit and integration tests, the web
# console's in headless chromium) and the Python client's tests against a real
# broker. Installs chromium when missing, the one system package
# (scripts/install-test-deps.sh); what the Python tests need (msgpack, pytest,
# mypy) and the client itself go into .venv.
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages the tests drive (chromium for tests/console.rs).
scripts/install-test-deps.sh
cargo build --bins --examples
cargo test --workspace --all-targets
# Documentation examples of the library crates (not part of --all-targets).
cargo test --doc -p herald-wire -p herald-client

if [ ! -x .venv/bin/python ]; then
  rm -rf .venv
  python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r clients/python/requirements-dev.txt
# The client as a user gets it: built and installed (not editable), so a
# package that leaves out a file fails its tests. Reinstalled on every run.
.venv/bin/python -m pip install --quiet --disable-pip-version-check ./clients/python
(cd clients/python && ../../.venv/bin/python -m mypy --strict)
HERALD_BIN="$PWD/target/debug/herald" .venv/bin/python -m pytest -q clients/python/tests
