"""RFC 6120 §6/§7 logins with slixmpp, counting storage reads: the account read with the SCRAM
credentials is the one resource binding uses, unless the account was disabled or deleted in
between (then binding reads it again and refuses); no blocklist is read for accounts without one."""
from __future__ import annotations

from typing import Any

import pytest

from xmppd.core.session import Session

from ..helpers import add_user, slix, slix_close


def _count(obj: Any, name: str, calls: list[str]) -> None:
    real = getattr(obj, name)

    async def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(name)
        return await real(*args, **kwargs)

    setattr(obj, name, counted)


async def test_a_login_reads_the_account_once_and_no_empty_blocklist(server):
    jid = await add_user(server, "alice")
    calls: list[str] = []
    _count(server.accounts, "get", calls)
    _count(server.accounts, "get_credentials", calls)
    _count(server.features["blocking"].repo, "get", calls)
    c = await slix(server, jid)
    try:
        assert c.boundjid.bare == jid
        assert calls == ["get_credentials"]
    finally:
        await slix_close(c)


@pytest.mark.parametrize("change", ["disable", "delete"])
async def test_an_account_disabled_or_deleted_before_binding_cannot_bind(server, monkeypatch, change):
    jid = await add_user(server, "alice")
    real_bind = Session._bind
    reads: list[str] = []
    _count(server.accounts, "get", reads)

    async def change_then_bind(self: Session, event: Any) -> None:
        # Authenticated with the account as it was; it changes before the bind is handled.
        if change == "disable":
            await server.account_service.set_disabled("alice", True, "abuse")
        else:
            await server.account_service.delete("alice")
        reads.clear()
        await real_bind(self, event)

    monkeypatch.setattr(Session, "_bind", change_then_bind)
    with pytest.raises(ConnectionError):
        await slix(server, jid, timeout=5)
    assert reads == ["get"]  # read again, and refused
    assert len(server.sessions) == 0
