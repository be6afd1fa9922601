"""The registry of bound client sessions: bare JID -> resource -> session.

Kept behind a small interface so that a cluster-wide registry (Redis, as ejabberd's and
MongooseIM's session backends) can replace it later without touching features.
"""
from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import TYPE_CHECKING

from ..jid import JID

if TYPE_CHECKING:
    from .session import Session


class ResourceLimitExceeded(Exception):
    pass


class SessionRegistry:
    def __init__(self, max_per_account: int = 10) -> None:
        self.max_per_account = max_per_account
        self._by_bare: dict[JID, dict[str, "Session"]] = {}
        self._count = 0

    def bind(self, session: "Session", bare: JID, resource: str | None, elsewhere: int = 0) -> tuple[JID, "Session | None"]:
        """Bind ``session``; returns its full JID and the session it replaces (same full JID).
        ``elsewhere``: the account's sessions on the other nodes of the cluster, counted in the
        per-account limit."""
        resources = self._by_bare.get(bare)
        if resource is None:
            resource = secrets.token_hex(6)
            while resources and resource in resources:
                resource = secrets.token_hex(6)
        replaced = resources.get(resource) if resources else None
        if replaced is None and (len(resources) if resources else 0) + elsewhere >= self.max_per_account:
            raise ResourceLimitExceeded(f"at most {self.max_per_account} sessions per account")
        full = bare.with_resource(resource)
        if resources is None:
            resources = self._by_bare[bare] = {}
        if replaced is None:
            self._count += 1
        resources[resource] = session
        return full, replaced

    def unbind(self, session: "Session") -> bool:
        jid = session.jid
        if jid is None:
            return False
        resources = self._by_bare.get(jid.bare)
        if not resources or resources.get(jid.resource or "") is not session:
            return False
        del resources[jid.resource or ""]
        self._count -= 1
        if not resources:
            del self._by_bare[jid.bare]
        return True

    def get(self, full: JID) -> "Session | None":
        resources = self._by_bare.get(full.bare if full.resource is not None else full)
        if resources is None or full.resource is None:
            return None
        return resources.get(full.resource)

    def of(self, bare: JID) -> list["Session"]:
        resources = self._by_bare.get(bare)
        return list(resources.values()) if resources else []

    def has_account_sessions(self, bare: JID) -> bool:
        return bare in self._by_bare

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator["Session"]:
        for resources in list(self._by_bare.values()):
            yield from list(resources.values())

    def accounts(self) -> list[JID]:
        return list(self._by_bare)
