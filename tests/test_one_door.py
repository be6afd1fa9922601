"""The router is the one door for every delivery (docs/feature-api.md, xmppd/core/router.py).

Features and extensions name recipients by JID and hand stanzas to the router (``route``,
``send``, ``deliver_to``, ``fan_out``, ``answer``); they never write to a ``Session`` or its
transport, and never call the router's session-addressed ``deliver``/``deliver_bytes``. Reading
the session registry (``ctx.sessions``) is pinned per file below, each with its reason, so that a
new use is a decision, not an accident: a cluster registry (issue 17) must answer each of them.
"""
from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = [ROOT / "xmppd" / "features", ROOT / "extensions"]
# Client-side code (test clients' plugins and their shared base) and xmppctl verbs run without a server.
NOT_SERVER = ("slixmpp_plugin.py", "slixmpp_base.py", "cli.py")

WRITES = {"send", "send_bytes", "send_element", "deliver", "deliver_bytes", "write"}
# Receivers whose ``send`` is a door, not a session write: the feature context and router
# (route a stanza), a repository (red packets' "send a packet").
DOOR_RECEIVERS = {"ctx", "router", "repo"}

# (file, call) -> (count, why it stays on the session's own stream)
STREAM_LOCAL_WRITES: dict[tuple[str, str], tuple[int, str]] = {
    ("xmppd/features/csi.py", "session.send"): (
        1, "XEP-0352: flushing what CSI's own DELIVER hook held back, the last stage of a delivery the router made"),
    ("xmppd/features/smacks/__init__.py", "session.transport.write"): (
        1, "XEP-0198 resumption: resends unacknowledged bytes on the resumed stream, each delivered by the router once"),
    ("xmppd/features/register.py", "session.stream.send_element"): (
        2, "XEP-0077 in-band registration before authentication: the stream has no JID the router could address"),
}

# file -> (uses of ctx.sessions, what is read)
REGISTRY_READS: dict[str, tuple[int, str]] = {
    "xmppd/features/presence.py": (9, "each resource's availability, current presence and directed-presence state (probes, broadcast)"),
    "xmppd/features/carbons.py": (4, "which resources of an account enabled carbons"),
    "xmppd/features/roster/feature.py": (4, "interested resources for pushes; whether an account is online (cache life)"),
    "xmppd/features/blocking/__init__.py": (7, "resources that asked for blocklist pushes; contacts' resources to send unavailable to; whether an invalidated list is pinned"),
    "xmppd/features/muc/room.py": (1, "a user's available resources (MUC/Sub, multi-session nick)"),
    "xmppd/features/smacks/__init__.py": (1, "the account's other live resources (resumption bookkeeping)"),
    "xmppd/features/push/__init__.py": (1, "whether another resource of the account is online (XEP-0357)"),
    "xmppd/features/ping.py": (1, "every live session, for keepalive pings on their own streams"),
    "xmppd/features/admin/feature.py": (1, "XEP-0133 announcement recipients (online users: Router.online_accounts, cluster-wide)"),
    "xmppd/features/pep/__init__.py": (1, "the available resources of an account and their caps (XEP-0163 filtered notifications)"),
    "extensions/customer_service/clustered.py": (2, "whether an agent's presence to a queue came from this node's own session (kept to resend when the queue moves)"),
}


def _files() -> list[Path]:
    out = []
    for base in SOURCES:
        for path in sorted(base.rglob("*.py")):
            if path.name not in NOT_SERVER:
                out.append(path)
    return out


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    if isinstance(node, ast.Call):
        return _dotted(node.func) + "()"
    return "?"


def _scan() -> tuple[Counter[tuple[str, str]], Counter[str]]:
    writes: Counter[tuple[str, str]] = Counter()
    reads: Counter[str] = Counter()
    for path in _files():
        rel = path.relative_to(ROOT).as_posix()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in WRITES:
                receiver = _dotted(node.func.value)
                last = receiver.rsplit(".", 1)[-1]
                if node.func.attr == "send" and last in DOOR_RECEIVERS:
                    continue
                if node.func.attr == "write" and "transport" not in receiver:
                    continue  # files, buffers: not a stream
                writes[(rel, f"{receiver}.{node.func.attr}")] += 1
            elif isinstance(node, ast.Attribute) and node.attr == "sessions" and _dotted(node.value).rsplit(".", 1)[-1] in ("ctx", "router"):
                reads[rel] += 1
    return writes, reads


def test_features_write_to_sessions_only_through_the_router() -> None:
    writes, _ = _scan()
    found = {key: n for key, n in writes.items()}
    allowed = {key: n for key, (n, _why) in STREAM_LOCAL_WRITES.items()}
    unexpected = {k: n for k, n in found.items() if allowed.get(k) != n}
    assert not unexpected, (
        "features must deliver through the router (ctx.send, router.deliver_to, router.fan_out, "
        f"router.answer), not write to sessions: {unexpected}"
    )
    stale = {k for k in allowed if k not in found}
    assert not stale, f"allow-listed writes no longer present, remove them: {stale}"


def test_features_read_the_session_registry_only_where_pinned() -> None:
    _, reads = _scan()
    pinned = {path: n for path, (n, _why) in REGISTRY_READS.items()}
    assert dict(reads) == pinned, (
        "a feature reads ctx.sessions in a new place: deliver through the router instead, or pin "
        f"the read in REGISTRY_READS with its reason. found {dict(reads)}"
    )


def test_the_scan_sees_a_direct_session_write(tmp_path: Path) -> None:
    """The walker itself: the patterns the rule forbids are found."""
    src = "async def f(self, s, full):\n    s.send(x)\n    s.send_bytes(b'')\n    await self.ctx.router.deliver(s, x, 'message')\n    self.ctx.sessions.get(full)\n    await self.ctx.send(x)\n"
    found = []
    for node in ast.walk(ast.parse(src)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in WRITES:
            last = _dotted(node.func.value).rsplit(".", 1)[-1]
            if not (node.func.attr == "send" and last in DOOR_RECEIVERS):
                found.append(node.func.attr)
    assert sorted(found) == ["deliver", "send", "send_bytes"]
