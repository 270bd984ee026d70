"""Custom operations from Python: ``Client.call`` against the ``kv`` example
broker (examples/kv, built by ``cargo build --example kv``; ``$HERALD_KV_BIN``
overrides where it is)."""

import contextlib
import os
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest

from conftest import REPO_DIR, START_TIMEOUT_S, STOP_TIMEOUT_S, POLL_INTERVAL_S
from herald_client import Client, HeraldError
from herald_client.errors import UNKNOWN_OPERATION

KV_BIN = Path(os.environ.get("HERALD_KV_BIN", REPO_DIR / "target" / "debug" / "examples" / "kv"))


@contextlib.contextmanager
def kv_broker(tmp_path: Path) -> Iterator[Client]:
    """Runs the kv example on ``tmp_path/data``; stops it with SIGTERM."""
    if not KV_BIN.is_file():
        pytest.fail(f"no kv example at {KV_BIN}: build it (cargo build --example kv) or set HERALD_KV_BIN")
    port_file = tmp_path / "port"
    port_file.unlink(missing_ok=True)
    log = open(tmp_path / "kv.log", "ab")
    process = subprocess.Popen(
        [str(KV_BIN), "--port", "0", "--http-port", "0", "--data-dir", str(tmp_path / "data"),
         "--port-file", str(port_file)],
        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not port_file.exists() or not port_file.read_text().endswith("\n"):
            assert process.poll() is None, (tmp_path / "kv.log").read_text()
            assert time.monotonic() < deadline, "the kv broker wrote no port file"
            time.sleep(POLL_INTERVAL_S)
        with Client("127.0.0.1", int(port_file.read_text()), client_id="kv-python", timeout=10.0) as c:
            yield c
    finally:
        process.terminate()
        assert process.wait(STOP_TIMEOUT_S) == 0, "the kv broker stops cleanly on SIGTERM"
        log.close()


@pytest.fixture
def kv_client(tmp_path: Path) -> Iterator[Client]:
    with kv_broker(tmp_path) as c:
        yield c


def test_call_puts_and_gets_through_the_kv_extension(kv_client):
    ops = {o["op"] for o in kv_client.features["operations"]}
    assert {"x.kv.put", "x.kv.get", "x.kv.scan"} <= ops
    assert kv_client.call("x.kv.put", {"key": "a", "value": "1"}) == {"offset": 0}
    assert kv_client.call("x.kv.get", {"key": "a"}) == {"value": "1"}
    assert kv_client.call("x.kv.get", {"key": "zz"}) == {"value": None}
    with pytest.raises(HeraldError) as empty:
        kv_client.call("x.kv.put", {"key": "", "value": "x"})
    assert empty.value.code == 2001
    with pytest.raises(HeraldError) as unknown:
        kv_client.call("x.kv.nope", {})
    assert unknown.value.code == UNKNOWN_OPERATION


def test_scan_answers_from_the_view_and_the_view_survives_a_restart(tmp_path):
    with kv_broker(tmp_path) as c:
        for key, value in [("user/b", "2"), ("user/a", "1"), ("user/a", "3"), ("other", "4")]:
            c.call("x.kv.put", {"key": key, "value": value})
        assert c.call("x.kv.scan", {"prefix": "user/", "limit": 1}) == {
            "entries": [{"key": "user/a", "value": "3"}], "more": True}
        assert c.call("x.kv.scan", {"prefix": "user/"}) == {
            "entries": [{"key": "user/a", "value": "3"}, {"key": "user/b", "value": "2"}], "more": False}
    with kv_broker(tmp_path) as c:
        assert c.call("x.kv.get", {"key": "user/a"}) == {"value": "3"}
        assert c.call("x.kv.scan", {"prefix": ""}) == {
            "entries": [{"key": "other", "value": "4"}, {"key": "user/a", "value": "3"},
                        {"key": "user/b", "value": "2"}], "more": False}
