"""Every Redis key and channel the cluster uses, in one place (docs/cluster.md, "What lives where")."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Keys:
    """Names under ``<cluster.prefix>:``; several clusters can share one Redis."""

    prefix: str

    @property
    def nodes(self) -> str:
        """SET of the names of the nodes that registered (an index; an entry may have expired)."""
        return f"{self.prefix}:nodes"

    def node(self, name: str) -> str:
        """HASH describing a live node; expires ``cluster.node_timeout`` after its last heartbeat."""
        return f"{self.prefix}:node:{name}"

    def left(self, name: str) -> str:
        """STRING set by a node that stops gracefully, for ``node_timeout``: it left, it did not die."""
        return f"{self.prefix}:left:{name}"
