"""The core sees the server through narrow interfaces (xmppd/core/interfaces.py), never ``Server``.

``xmppd.app.Server`` is the composition root only: no module of the core or of a feature imports
it, a feature reaches what it needs through its ``FeatureContext`` (which has no ``server``), and
``Server`` provides every member the protocols name.
"""
from __future__ import annotations

import ast
import inspect
from pathlib import Path

from xmppd import app
from xmppd.core import interfaces
from xmppd.core.feature import FeatureContext

ROOT = Path(__file__).resolve().parent.parent
CORE_AND_FEATURES = [ROOT / "xmppd" / "core", ROOT / "xmppd" / "features", ROOT / "extensions"]
NOT_SERVER = ("cli.py",)  # xmppctl verbs build what they need themselves


def _imports_of(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            names = {a.name for a in node.names}
            if mod.endswith("app") and ("Server" in names or mod in ("app", "xmppd.app")):
                found.add(f"{'.' * node.level}{mod}: {sorted(names)}")
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name == "xmppd.app"}
    return found


def test_core_and_features_do_not_import_the_server() -> None:
    offenders = {}
    for base in CORE_AND_FEATURES:
        for path in base.rglob("*.py"):
            if path.name in NOT_SERVER:
                continue
            found = _imports_of(path)
            if found:
                offenders[path.relative_to(ROOT).as_posix()] = found
    assert not offenders, f"import the narrow interfaces of xmppd/core/interfaces.py instead: {offenders}"


def test_features_use_no_server_object() -> None:
    assert not hasattr(FeatureContext, "server")
    uses = []
    for base in CORE_AND_FEATURES[1:]:
        for path in base.rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Attribute) and node.attr in ("server", "_server") and isinstance(node.value, ast.Attribute) and node.value.attr == "ctx":
                    uses.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not uses, f"features reach the server through FeatureContext's narrow members: {uses}"


def _assigned_in_init(cls: type) -> set[str]:
    tree = ast.parse(inspect.getsource(cls))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self" and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
    return names


def test_the_server_provides_every_member_of_the_interfaces() -> None:
    provided = set(dir(app.Server)) | _assigned_in_init(app.Server)
    for proto in (interfaces.SessionHost, interfaces.FeatureHost, interfaces.AccountAdmin):
        members = set(getattr(proto, "__annotations__", {}))
        for klass in proto.__mro__:
            if klass.__module__ == interfaces.__name__:
                members |= set(getattr(klass, "__annotations__", {}))
                members |= {n for n, v in vars(klass).items() if not n.startswith("_") and (callable(v) or isinstance(v, property))}
        if proto is interfaces.AccountAdmin:
            from xmppd.accounts import AccountService
            have = set(dir(AccountService)) | _assigned_in_init(AccountService)
        else:
            have = provided
        assert members - have == set(), f"{proto.__name__}: {sorted(members - have)} missing"
