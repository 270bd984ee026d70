"""ACL administration (protocol.md, "Access control"): ``create_acls``,
``delete_acls`` and ``list_acls`` as methods of ``Client``.

An entry is a dict with ``principal`` (``"User:alice"`` or ``"User:*"``),
``host`` (``"*"`` or an IP address; default ``"*"``), ``operation``,
``permission`` (``"allow"`` or ``"deny"``), ``resource_type``
(``"topic"``, ``"group"``, ``"cluster"``, ``"operation"``),
``resource_name`` and ``pattern_type`` (``"literal"`` or ``"prefixed"``;
default ``"literal"``). A filter has any of those keys; each one given must
match.
"""

from collections.abc import Iterable, Mapping
from typing import Any, Dict, List, Optional

from .quotas import QuotaAdmin

CLUSTER_RESOURCE = "herald-cluster"
"""The name of the one ``cluster`` resource."""


class AclAdmin(QuotaAdmin):
    """The ACL operations; ``Client`` has them."""

    def create_acls(self, acls: Iterable[Mapping[str, str]]) -> int:
        """Adds ACL entries; returns how many were new. One bad entry adds none.

        Raises:
            HeraldError: INVALID_REQUEST naming a bad entry,
                CLUSTER_AUTHORIZATION_FAILED, SECURITY_DISABLED when the broker
                does not enforce ACLs.
        """
        created: int = self._call("create_acls", {"acls": [dict(a) for a in acls]})["created"]
        return created

    def delete_acls(self, filters: Iterable[Mapping[str, str]]) -> List[Dict[str, str]]:
        """Deletes every entry any filter selects; returns those deleted.

        Raises:
            HeraldError: as ``create_acls``.
        """
        deleted: List[Dict[str, str]] = self._call("delete_acls", {"filters": [dict(f) for f in filters]})["deleted"]
        return deleted

    def list_acls(self, filter: Optional[Mapping[str, str]] = None) -> List[Dict[str, str]]:
        """The entries ``filter`` selects (every entry without one), sorted.

        Raises:
            HeraldError: CLUSTER_AUTHORIZATION_FAILED, SECURITY_DISABLED.
        """
        fields: Dict[str, Any] = dict(filter or {})
        acls: List[Dict[str, str]] = self._call("list_acls", fields)["acls"]
        return acls
