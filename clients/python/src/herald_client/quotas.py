"""Quota administration (protocol.md, "Quotas"): ``alter_quotas`` and
``describe_quotas`` as methods of ``Client``.

An entity is ``("user", name)`` (a principal's name, ``alice`` for
``User:alice``) or ``("client_id", id)``; its rates are
``producer_byte_rate``, ``consumer_byte_rate`` and ``request_rate``, per
second, 0 for no limit.
"""

from collections.abc import Iterable, Mapping
from typing import Any, Dict

from .connection import Connection


class QuotaAdmin(Connection):
    """The quota operations; ``Client`` has them."""

    def alter_quotas(self, entity_type: str, entity_name: str,
                     set: Mapping[str, int] = {}, remove: Iterable[str] = ()) -> None:
        """Sets rates of an entity and removes others (back to the defaults).

        Raises:
            HeraldError: INVALID_REQUEST for an unknown entity type or rate,
                CLUSTER_AUTHORIZATION_FAILED, KAFKA_STORAGE_ERROR.
        """
        self._call("alter_quotas", {"entity_type": entity_type, "entity_name": entity_name,
                                    "set": dict(set), "remove": list(remove)})

    def describe_quotas(self) -> Dict[str, Any]:
        """Returns ``{"defaults": rates, "quotas": [{"entity_type", "entity_name", rates...}]}``.

        Raises:
            HeraldError: CLUSTER_AUTHORIZATION_FAILED.
        """
        response = self._call("describe_quotas", {})
        return {"defaults": response["defaults"], "quotas": response["quotas"]}
