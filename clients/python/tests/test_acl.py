"""ACLs through the real broker with the Python client: managed online once
`herald acl add --data-dir` let the (anonymous) principal alter the cluster,
enforced with TOPIC_AUTHORIZATION_FAILED, and refused with SECURITY_DISABLED
while authorization is off."""

import subprocess
from pathlib import Path

import pytest

from conftest import HERALD_BIN, Broker
from herald_client import CLUSTER_RESOURCE, Client, HeraldError
from herald_client.errors import SECURITY_DISABLED, TOPIC_AUTHORIZATION_FAILED

ANONYMOUS = "User:ANONYMOUS"


def test_acls_are_managed_and_enforced(tmp_path: Path) -> None:
    server = Broker(tmp_path, env={"HERALD_SECURITY__AUTHORIZATION": "true"})
    subprocess.run(
        [str(HERALD_BIN), "acl", "add", "--data-dir", str(server.data_dir), "--principal", ANONYMOUS,
         "--operation", "alter", "--operation", "describe", "--cluster"],
        check=True, capture_output=True,
    )
    server.start()
    try:
        with Client(server.host, server.port, client_id="acl-test", timeout=10.0) as client:
            with pytest.raises(HeraldError) as refused:
                client.create_topic("t", 1)
            assert refused.value.code == TOPIC_AUTHORIZATION_FAILED
            entry = {"principal": ANONYMOUS, "operation": "all", "permission": "allow",
                     "resource_type": "topic", "resource_name": "t"}
            assert client.create_acls([entry]) == 1
            client.create_topic("t", 1)
            client.produce("t", [b"a"], partition=0)
            listed = client.list_acls({"resource_type": "topic"})
            assert listed == [dict(entry, host="*", pattern_type="literal")]
            assert len(client.list_acls({"resource_name": CLUSTER_RESOURCE})) == 2
            deleted = client.delete_acls([{"resource_type": "topic"}])
            assert len(deleted) == 1
            with pytest.raises(HeraldError) as refused:
                client.produce("t", [b"b"], partition=0)
            assert refused.value.code == TOPIC_AUTHORIZATION_FAILED
    finally:
        server.stop()


def test_acl_operations_need_authorization_on(client: Client) -> None:
    with pytest.raises(HeraldError) as refused:
        client.list_acls()
    assert refused.value.code == SECURITY_DISABLED
