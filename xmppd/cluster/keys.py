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

    def sess(self, bare: str) -> str:
        """HASH resource -> ``node|incarnation|priority|available`` of one account's sessions."""
        return f"{self.prefix}:sess:{bare}"

    def nsess(self, name: str) -> str:
        """SET of the bare JIDs with a session on node ``name`` (its cleanup's index)."""
        return f"{self.prefix}:nsess:{name}"

    def bus(self, name: str) -> str:
        """STREAM of the stanzas for node ``name``'s sessions, read by that node alone."""
        return f"{self.prefix}:bus:{name}"

    def kept(self, name: str, incarnation: str) -> str:
        """HASH ``<full JID>\n<name>`` -> value: what node ``name``'s sessions keep for the survivor
        that cleans up after it (kept.py: the recipients of directed presence)."""
        return f"{self.prefix}:kept:{name}:{incarnation}"

    def listed(self, name: str) -> str:
        """HASH room JID -> name: the public temporary rooms node ``name`` holds, which only
        its memory knows (the MUC service's lists on the other nodes read it)."""
        return f"{self.prefix}:rooms:{name}"

    def cleanup_lease(self, name: str) -> str:
        """STRING held by the one survivor that cleans up after a dead node ``name``."""
        return f"{self.prefix}:lease:cleanup:{name}"


    def lease(self, kind: str, name: str) -> str:
        """STRING ``<node>|<token>``: the node that owns one room (``kind`` "room") or queue, for
        ``node_timeout``, renewed every heartbeat (``leases.Leases``)."""
        return f"{self.prefix}:lease:{kind}:{name}"

    def fence(self, kind: str, name: str) -> str:
        """STRING counter: INCR at every acquisition of that lease, the owner's fencing token."""
        return f"{self.prefix}:fence:{kind}:{name}"

    @property
    def inval(self) -> str:
        """Pub/sub channel of cache invalidations: ``<node>\\n<cache>\\n<key>`` (xmppd/cluster/invalidation.py)."""
        return f"{self.prefix}:inval"
