"""``UserAdmin``: the SCRAM users operations of ``Client`` (protocol.md,
``create_user``, ``delete_user``, ``list_users``).

The client salts and hashes the password (a fresh random salt, PBKDF2); the
password never leaves it, and the broker keeps only keys derived from the hash.
"""

import os
from typing import Any, Dict, List, Protocol

from .auth import DEFAULT_ITERATIONS, SALT_BYTES, SCRAM_SHA_256, salted_password


class _Caller(Protocol):
    def _call(self, op: str, fields: Dict[str, Any], wait_s: float = ...,
              expect_response: bool = ...) -> Dict[str, Any]: ...


class UserAdmin:
    """The users operations, mixed into ``Client``."""

    def create_user(self: _Caller, user: str, password: str, iterations: int = DEFAULT_ITERATIONS) -> None:
        """Creates SCRAM-SHA-256 user ``user`` with ``password``, or changes its password.

        Raises:
            HeraldError: INVALID_REQUEST for a name or iterations (4096 to
                16384) out of bounds; CLUSTER_AUTHORIZATION_FAILED.
        """
        salt = os.urandom(SALT_BYTES)
        self._call("create_user", {"user": user, "mechanism": SCRAM_SHA_256, "iterations": iterations,
                                   "salt": salt, "salted_password": salted_password(password, salt, iterations)})

    def delete_user(self: _Caller, user: str) -> None:
        """Deletes ``user``'s credential: its new connections are refused.

        Raises:
            HeraldError: RESOURCE_NOT_FOUND when it has none.
        """
        self._call("delete_user", {"user": user})

    def list_users(self: _Caller) -> List[Dict[str, Any]]:
        """Returns ``[{"user", "mechanism", "iterations"}, ...]`` sorted by name (never keys)."""
        users: List[Dict[str, Any]] = self._call("list_users", {})["users"]
        return users
