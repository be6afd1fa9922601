"""The shape every slixmpp client plugin of the extensions shares (``extensions/*/slixmpp_plugin.py``):
a call builds one iq (a registered stanza plugin filled with attributes, or a ready element),
sends it and reads the answer; the server's messages carrying the extension's elements are
raised as events, whose handlers go away with the plugin.

A plugin subclasses :class:`IqPlugin` and calls :meth:`IqPlugin.ask` and
:meth:`IqPlugin.forward`; an error answer raises ``slixmpp.exceptions.IqError`` as any iq.
:func:`element` makes the stanza class of a flat element (attributes and text children);
:func:`register` makes stanza classes plugins of a parent (in ``plugin_init``).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping
from typing import Any

from slixmpp import Iq
from slixmpp.plugins import BasePlugin
from slixmpp.xmlstream import ElementBase, register_stanza_plugin
from slixmpp.xmlstream.handler import Callback

__all__ = ["IqPlugin", "element", "register"]


def element(namespace: str, name: str, plugin_attrib: str, interfaces: str, sub_interfaces: str = "") -> type[ElementBase]:
    """A stanza class for the element ``name`` of ``namespace``, reached as ``stanza[plugin_attrib]``,
    with its attributes ``interfaces`` and, among them, the text children ``sub_interfaces``
    (both space-separated)."""
    cls_name = "".join(part.title() for part in name.split("-"))
    return type(cls_name, (ElementBase,), {
        "name": name, "namespace": namespace, "plugin_attrib": plugin_attrib,
        "interfaces": set(interfaces.split()), "sub_interfaces": set(sub_interfaces.split()),
    })


def register(parent: type[ElementBase], *plugins: type[ElementBase], iterable: bool = False) -> None:
    """Make each of ``plugins`` a stanza plugin of ``parent`` (``iterable``: a repeated child,
    found in ``parent.iterables``)."""
    for plugin in plugins:
        register_stanza_plugin(parent, plugin, iterable=iterable)


class IqPlugin(BasePlugin):
    """A client plugin whose calls are "build this iq, send it, read that answer"."""

    dependencies: set[str] = set()  # type: ignore[misc]
    timeout: float = 10

    @property
    def server(self) -> str:
        """The server domain (where server-wide requests go)."""
        return str(self.xmpp.boundjid.domain)

    async def ask(
        self, to: Any, typ: str, payload: str | ET.Element, attrs: Mapping[str, Any] | None = None, *,
        answer: str | None = None, lang: str | None = None, timeout: float | None = None,
    ) -> Any:
        """Send an iq ``typ`` to ``to`` carrying ``payload`` -- the ``plugin_attrib`` of a
        registered stanza plugin, given ``attrs`` (None values left out, others as text), or a
        ready element -- and return the result iq, or its ``answer`` plugin when named."""
        iq: Iq = self.xmpp.make_iq(ito=to, itype=typ)
        if isinstance(payload, str):
            iq.enable(payload)
            el = iq[payload]
            for key, value in (attrs or {}).items():
                if value is not None:
                    el[key] = value if isinstance(value, str) else str(value)
        else:
            iq.xml.append(payload)
        if lang:
            iq["lang"] = lang
        result = await iq.send(timeout=self.timeout if timeout is None else timeout)
        return result if answer is None else result[answer]

    def forward(self, event: str, matcher: Any) -> None:
        """Raise ``event`` (with the message) for every stanza ``matcher`` matches, until the
        plugin ends."""
        self.xmpp.register_handler(Callback(f"{self.name} {event}", matcher, lambda stanza: self.xmpp.event(event, stanza)))
        self._forwarded = [*getattr(self, "_forwarded", ()), event]

    def plugin_end(self) -> None:
        for event in getattr(self, "_forwarded", ()):
            self.xmpp.remove_handler(f"{self.name} {event}")
        self._forwarded = []
