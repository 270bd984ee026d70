"""Fixtures that run the real Herald broker for the Python client's tests.

The broker binary is ``$HERALD_BIN``, by default ``<repo>/target/debug/herald``.
Every test that asks for ``broker`` gets its own broker process, listening on an
ephemeral port of 127.0.0.1 with a fresh data directory, so tests never share
state. The broker reports its port through ``--port-file``; no fixed ports.

The client under test is the installed ``herald_client`` package
(``pip install ./clients/python``): no source directory is put on
``sys.path``, so the tests see the package exactly as a user gets it.
"""

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence

import pytest

try:
    from herald_client import Client, Record
except ImportError as exc:  # the package is not installed in this environment
    raise ImportError("the tests use the installed client: pip install ./clients/python") from exc

CLIENT_DIR = Path(__file__).resolve().parents[1]
REPO_DIR = CLIENT_DIR.parents[1]

HERALD_BIN = Path(os.environ.get("HERALD_BIN", REPO_DIR / "target" / "debug" / "herald"))
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
POLL_INTERVAL_S = 0.02


class Broker:
    """A broker process on 127.0.0.1 owning one data directory.

    The port file and the broker's output live beside the data directory, not
    in it, so the broker finds only its own files there.
    """

    def __init__(self, workdir: Path, env: Optional[Dict[str, str]] = None, args: Sequence[str] = ()):
        """``env`` adds environment variables, such as settings
        (``HERALD_SERVER__MAX_FRAME_BYTES``), to the broker's environment;
        ``args`` are more arguments of ``serve`` (``--zookeeper``, ...)."""
        self.host = "127.0.0.1"
        self.env = dict(os.environ, **(env or {}))
        self.args = list(args)
        self.port: Optional[int] = None  # set by start(); kept by restart()
        self.data_dir = workdir / "data"
        self.data_dir.mkdir()
        self._port_file = workdir / "port"
        self._output_file = workdir / "broker.log"
        self._process: Optional[subprocess.Popen] = None

    def start(self, port: int = 0) -> None:
        """Starts the broker (on ``port``, 0 for any free one) and waits until
        it has written its port file."""
        if not HERALD_BIN.is_file():
            pytest.fail(f"no broker binary at {HERALD_BIN}: build it (cargo build --bins) "
                        f"or set HERALD_BIN")
        if self._port_file.exists():
            self._port_file.unlink()
        with open(self._output_file, "ab") as output:
            self._process = subprocess.Popen(
                [str(HERALD_BIN), "serve", "--host", self.host, "--port", str(port),
                 "--http-port", "0",
                 "--data-dir", str(self.data_dir), "--port-file", str(self._port_file), *self.args],
                stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT, env=self.env,
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        # The broker writes the file atomically, so once it exists it is complete.
        while not self._port_file.exists():
            code = self._process.poll()
            if code is not None:
                pytest.fail(f"broker exited with {code} before writing its port file:\n"
                            f"{self.output()}")
            if time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"broker wrote no port file within {START_TIMEOUT_S} s:\n"
                            f"{self.output()}")
            time.sleep(POLL_INTERVAL_S)
        self.port = int(self._port_file.read_text().strip())

    def stop(self) -> None:
        """Sends SIGTERM and waits for a clean exit; kills the broker after 10 s."""
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    def kill(self) -> None:
        """Kills the broker with SIGKILL, as a crash would, and waits for it."""
        if self._process is None:
            return
        self._process.send_signal(signal.SIGKILL)
        self._process.wait()
        self._process = None

    def restart(self) -> None:
        """Stops the broker and starts it again on the same data directory and
        port, as an operator's restart would: clients find it where it was."""
        self.stop()
        self.start(self.port or 0)

    def output(self) -> str:
        """Returns everything the broker printed so far (stdout and stderr)."""
        return self._output_file.read_text(errors="replace") if self._output_file.exists() else ""


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """A fresh broker for one test, stopped afterwards."""
    server = Broker(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def client(broker: Broker) -> Iterator[Client]:
    """A client connected (and handshaken) to the test's broker."""
    with Client(broker.host, broker.port, client_id="herald-python-tests", timeout=10.0) as c:
        yield c


@pytest.fixture
def fetch_all() -> Callable[[Client, str, int], List[Record]]:
    """Returns a function that reads a partition from offset 0 to its high watermark."""

    def read(client: Client, topic: str, partition: int) -> List[Record]:
        records: List[Record] = []
        offset = 0
        while True:
            result = client.fetch(topic, partition, offset)
            records.extend(result.records)
            if result.records:
                offset = result.records[-1].offset + 1
            if offset >= result.high_watermark:
                return records
            assert result.records, f"fetch at {offset} returned nothing below the high watermark"

    return read
