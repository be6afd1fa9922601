"""Finding features through the ``xmppd.features`` entry-point group and ordering them."""
from __future__ import annotations

import logging
from importlib.metadata import entry_points

from .feature import Feature

log = logging.getLogger(__name__)
GROUP = "xmppd.features"


class FeatureLoadError(Exception):
    pass


def discover() -> dict[str, type[Feature]]:
    """Every installed feature class by its ``name`` (core, extensions, third parties)."""
    found: dict[str, type[Feature]] = {}
    for ep in entry_points(group=GROUP):
        try:
            cls = ep.load()
        except Exception as exc:
            raise FeatureLoadError(f"feature entry point {ep.name} ({ep.value}) failed to import: {exc}") from exc
        if not (isinstance(cls, type) and issubclass(cls, Feature)):
            raise FeatureLoadError(f"entry point {ep.name} ({ep.value}) is not a Feature subclass")
        if getattr(cls, "name", None) != ep.name:
            raise FeatureLoadError(f"entry point {ep.name} loads a feature named {getattr(cls, 'name', None)!r}")
        if ep.name in found and found[ep.name] is not cls:
            raise FeatureLoadError(f"two features are called {ep.name}")
        found[ep.name] = cls
    return found


def order(features: dict[str, type[Feature]], disabled: list[str] | tuple[str, ...] = ()) -> list[type[Feature]]:
    """Dependencies first (like aioxmpp's service ordering); a missing dependency is an error."""
    for name in disabled:
        if name not in features:
            raise FeatureLoadError(f"features.disabled names {name!r}, which is not installed")
    enabled = {n: c for n, c in features.items() if n not in disabled}
    result: list[type[Feature]] = []
    state: dict[str, int] = {}

    def visit(name: str, chain: tuple[str, ...]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            raise FeatureLoadError(f"dependency cycle: {' -> '.join(chain + (name,))}")
        cls = enabled.get(name)
        if cls is None:
            why = "disabled" if name in features else "not installed"
            raise FeatureLoadError(f"feature {chain[-1]} depends on {name}, which is {why}")
        state[name] = 1
        for dep in cls.depends:
            visit(dep, chain + (name,))
        state[name] = 2
        result.append(cls)

    for name in sorted(enabled):
        visit(name, ())
    return result
