"""TLS with the Python client against the real broker: records in and out
over TLS, the client certificate's subject as the principal, and a
plaintext client refused. Certificates are made at test time with the
``openssl`` command."""

import shutil
import ssl
import subprocess
from pathlib import Path
from typing import Dict, Iterator, List

import pytest

from conftest import Broker
from herald_client import Client, GroupConsumer, HeraldError

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def _issue(pki: Path, name: str, subject: str, extensions: str) -> None:
    """Signs a certificate ``name.pem`` (key ``name-key.pem``) with the CA in ``pki``."""
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", str(pki / f"{name}-key.pem"), "-out", str(pki / f"{name}.csr"), "-subj", subject)
    (pki / f"{name}.ext").write_text(extensions)
    _openssl("x509", "-req", "-in", str(pki / f"{name}.csr"), "-CA", str(pki / "ca.pem"),
             "-CAkey", str(pki / "ca-key.pem"), "-CAcreateserial", "-days", "2",
             "-out", str(pki / f"{name}.pem"), "-extfile", str(pki / f"{name}.ext"))


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    """A CA, a broker certificate for localhost and 127.0.0.1, and a client
    certificate for ``CN=alice,O=Example``."""
    pki = tmp_path / "pki"
    pki.mkdir()
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", str(pki / "ca-key.pem"), "-out", str(pki / "ca.pem"), "-days", "2",
             "-subj", "/CN=Herald test CA",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign")
    _issue(pki, "broker", "/CN=localhost",
           "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    _issue(pki, "alice", "/O=Example/CN=alice", "extendedKeyUsage=clientAuth\n")
    return pki


@pytest.fixture
def tls_broker(tmp_path: Path, pki: Path) -> Iterator[Broker]:
    env: Dict[str, str] = {
        "HERALD_SECURITY__TLS_CERT_FILE": str(pki / "broker.pem"),
        "HERALD_SECURITY__TLS_KEY_FILE": str(pki / "broker-key.pem"),
        "HERALD_SECURITY__TLS_CLIENT_CA_FILE": str(pki / "ca.pem"),
        "HERALD_SECURITY__TLS_CLIENT_AUTH": "requested",
    }
    workdir = tmp_path / "broker"
    workdir.mkdir()
    server = Broker(workdir, env)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_records_go_in_and_out_over_tls(tls_broker: Broker, pki: Path) -> None:
    assert tls_broker.port is not None
    with Client(tls_broker.host, tls_broker.port, timeout=10.0, tls=True, cafile=str(pki / "ca.pem")) as client:
        assert client.features is not None and client.features["principal"] == "User:ANONYMOUS"
        client.create_topic("secure", 1)
        big = b"x" * (512 * 1024)
        client.produce("secure", [b"hello", big], partition=0)
        records = client.fetch("secure", 0, 0).records
        assert [r.value for r in records] == [b"hello", big]


def test_a_client_certificate_is_the_principal(tls_broker: Broker, pki: Path) -> None:
    assert tls_broker.port is not None
    context = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    context.load_cert_chain(str(pki / "alice.pem"), str(pki / "alice-key.pem"))
    with Client("localhost", tls_broker.port, timeout=10.0, tls=context) as client:
        assert client.features is not None and client.features["principal"] == "User:CN=alice,O=Example"
    with Client(tls_broker.host, tls_broker.port, timeout=10.0, cafile=str(pki / "ca.pem"),
                certfile=str(pki / "alice.pem"), keyfile=str(pki / "alice-key.pem")) as client:
        assert client.features is not None and client.features["principal"] == "User:CN=alice,O=Example"


def test_a_plaintext_client_is_refused(tls_broker: Broker, pki: Path) -> None:
    assert tls_broker.port is not None
    with pytest.raises((OSError, HeraldError)):
        Client(tls_broker.host, tls_broker.port, timeout=5.0)
    with pytest.raises(ssl.SSLError):
        Client(tls_broker.host, tls_broker.port, timeout=5.0, tls=True)  # the system CAs do not know ours
    with Client(tls_broker.host, tls_broker.port, timeout=10.0, cafile=str(pki / "ca.pem")) as client:
        assert client.list_topics() == []


def test_a_group_consumer_reads_over_tls(tls_broker: Broker, pki: Path) -> None:
    assert tls_broker.port is not None
    ca = str(pki / "ca.pem")
    with Client(tls_broker.host, tls_broker.port, timeout=10.0, cafile=ca) as client:
        client.create_topic("grouped", 1)
        client.produce("grouped", [b"a", b"b"], partition=0)
    consumer = GroupConsumer(tls_broker.host, tls_broker.port, "g", "grouped", timeout=10.0, cafile=ca)
    try:
        seen: List[bytes] = []
        for _ in range(50):
            seen += [record.value or b"" for _, _, record in consumer.poll(200)]
            if len(seen) == 2:
                break
        assert seen == [b"a", b"b"]
    finally:
        consumer.close()


def test_a_group_member_over_tls_rejoins_over_tls_after_the_broker_restarts(tls_broker: Broker, pki: Path) -> None:
    assert tls_broker.port is not None
    ca = str(pki / "ca.pem")
    with Client(tls_broker.host, tls_broker.port, timeout=10.0, cafile=ca) as client:
        client.create_topic("rejoined", 1)
        client.produce("rejoined", [b"before"], partition=0)
    consumer = GroupConsumer(tls_broker.host, tls_broker.port, "g", "rejoined", timeout=10.0, cafile=ca,
                             session_timeout_ms=6000)
    try:
        seen: List[bytes] = []
        for _ in range(50):
            seen += [record.value or b"" for _, _, record in consumer.poll(200)]
            if seen:
                break
        assert seen == [b"before"]
        consumer.commit()
        tls_broker.restart()
        with Client(tls_broker.host, tls_broker.port, timeout=10.0, cafile=ca) as client:
            client.produce("rejoined", [b"after"], partition=0)
        # The heartbeat thread reconnects and joins again: over TLS, as the
        # member first connected.
        for _ in range(100):
            try:
                seen += [record.value or b"" for _, _, record in consumer.poll(200)]
            except (HeraldError, OSError):
                continue
            if len(seen) == 2:
                break
        assert seen == [b"before", b"after"]
    finally:
        consumer.close()
