"""XEP-0115: Entity Capabilities, server side.

Two parts:

* ``CapsCache``: what each session advertises in the ``<c/>`` of its broadcast presence. The
  element is parsed only when its (node, ver) differs from the one last seen on that session
  (kept in ``session.data["caps"]``), never per stanza; records are interned so that every
  session with the same client shares one object. ``learn()`` verifies a disco#info answer
  against a ver string (§5.4) once, and keeps the features of verified ver strings (bounded),
  for features such as PEP that need to know what a client supports (``xmppd.features.pep`` asks
  a session's disco#info at ``node#ver`` when its ver is not known, and calls ``learn``).
* The server's own capabilities (§6.3): the verification string of the server's disco#info,
  computed once when the server has started (every feature is set up then, so every disco
  feature is known), advertised as the stream feature
  ``<c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='https://github.com/xmppd' ver='...'/>``.
"""
from __future__ import annotations

import base64
import collections
import copy
import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lxml import etree

from ..core import hooks as H
from ..core.dispatch import IqRequest
from ..core.feature import Feature, hook
from ..core.hooks import Flow, Routed
from ..jid import JID
from ..xml import ns
from ..xml.builder import element, stanza

if TYPE_CHECKING:
    from ..core.session import Session

CAPS = "http://jabber.org/protocol/caps"
C = f"{{{CAPS}}}c"
NODE = "https://github.com/xmppd"
_DI = f"{{{ns.DISCO_INFO}}}"
_X = f"{{{ns.DATA_FORMS}}}x"
_XF = f"{{{ns.DATA_FORMS}}}field"
_XV = f"{{{ns.DATA_FORMS}}}value"
HASHES = {"sha-1": hashlib.sha1, "sha-224": hashlib.sha224, "sha-256": hashlib.sha256,
          "sha-384": hashlib.sha384, "sha-512": hashlib.sha512, "md5": hashlib.md5}
_SESSION_KEY = "caps"


@dataclass(frozen=True, slots=True)
class CapsInfo:
    """One advertised ``<c/>``: ``hash`` is None for legacy (pre-1.4) caps."""

    node: str
    ver: str
    hash: str | None


def verification_string(info: etree._Element, hash_name: str = "sha-1") -> str:
    """XEP-0115 §5.1: the ver string of a disco#info ``<query/>`` (identities, features, forms)."""
    try:
        digest = HASHES[hash_name]
    except KeyError:
        raise ValueError(f"unsupported caps hash {hash_name!r}") from None
    identities = sorted(
        "/".join((i.get("category") or "", i.get("type") or "", i.get(ns.XML_LANG) or "", i.get("name") or ""))
        for i in info.iter(_DI + "identity")
    )
    features = sorted(f.get("var") or "" for f in info.iter(_DI + "feature"))
    s = "".join(f"{i}<" for i in identities) + "".join(f"{f}<" for f in features)
    forms: list[tuple[str, str]] = []
    for form in info.findall(_X):
        fields: dict[str, list[str]] = {}
        for field in form.findall(_XF):
            var = field.get("var")
            if var is not None:
                fields[var] = [v.text or "" for v in field.findall(_XV)]
        form_type = fields.pop("FORM_TYPE", None)
        if not form_type:
            continue  # §5.4: forms without FORM_TYPE are ignored
        text = f"{form_type[0]}<" + "".join(
            f"{var}<" + "".join(f"{v}<" for v in sorted(values)) for var, values in sorted(fields.items())
        )
        forms.append((form_type[0], text))
    s += "".join(text for _ft, text in sorted(forms))
    return base64.b64encode(digest(s.encode("utf-8")).digest()).decode("ascii")


class CapsCache:
    """Per-session caps records, parsed on change only, plus verified features per ver."""

    def __init__(self, max_verified: int = 4096) -> None:
        self._interned: dict[tuple[str, str, str | None], CapsInfo] = {}
        self._verified: collections.OrderedDict[tuple[str, str], frozenset[str]] = collections.OrderedDict()
        self._max_verified = max_verified
        self.parsed = 0  # how many <c/> elements were turned into records (for tests and metrics)

    def observe(self, session: "Session", presence: etree._Element) -> CapsInfo | None:
        """The caps a session advertises with ``presence`` (None: none), remembered on the session."""
        c = presence.find(C)
        if c is None:
            session.data.pop(_SESSION_KEY, None)
            return None
        last: CapsInfo | None = session.data.get(_SESSION_KEY)
        node, ver = c.get("node"), c.get("ver")
        if last is not None and last.node == node and last.ver == ver:
            return last
        info = self._parse(c)
        if info is None:
            session.data.pop(_SESSION_KEY, None)
        else:
            session.data[_SESSION_KEY] = info
        return info

    @staticmethod
    def of(session: "Session") -> CapsInfo | None:
        return session.data.get(_SESSION_KEY)

    def _parse(self, c: etree._Element) -> CapsInfo | None:
        node, ver = c.get("node"), c.get("ver")
        if not node or not ver or len(node) > 1024 or len(ver) > 256:
            return None
        hash_name = c.get("hash")
        hash_name = hash_name.lower() if hash_name else None
        key = (node, ver, hash_name)
        info = self._interned.get(key)
        if info is None:
            self.parsed += 1
            if len(self._interned) >= 65536:
                self._interned.clear()
            info = self._interned[key] = CapsInfo(node, ver, hash_name)
        return info

    def learn(self, info: CapsInfo, disco_info: etree._Element) -> bool:
        """Remember the features of ``info.ver`` if ``disco_info`` hashes to it (§5.4)."""
        if info.hash not in HASHES or verification_string(disco_info, info.hash) != info.ver:
            return False
        features = frozenset(f.get("var") or "" for f in disco_info.iter(_DI + "feature"))
        self._verified[(info.hash, info.ver)] = features
        self._verified.move_to_end((info.hash, info.ver))
        while len(self._verified) > self._max_verified:
            self._verified.popitem(last=False)
        return True

    def features(self, info: CapsInfo) -> frozenset[str] | None:
        """The verified features of ``info`` (None: not learnt yet)."""
        if info.hash is None:
            return None
        return self._verified.get((info.hash, info.ver))

    def supports(self, session: "Session", feature: str) -> bool | None:
        info = self.of(session)
        known = self.features(info) if info is not None else None
        return None if known is None else feature in known


class Caps(Feature):
    name = "caps"
    implements = ("XEP-0115",)
    depends = ("disco",)

    async def setup(self) -> None:
        self.cache = CapsCache()
        self.ver: str | None = None
        self.ctx.add_stream_feature(self._stream_feature)
        self.ctx.spawn(self._compute_when_started(), name="caps-ver")

    async def _compute_when_started(self) -> None:
        await self.ctx.lifecycle.started.wait()
        info = await self.server_info()
        ver = verification_string(info)
        # §6.2: a disco#info query to node#ver must answer what the ver was computed from.
        self.ctx.on_teardown(self.ctx.feature("disco").add_node(f"{NODE}#{ver}", self._node_handler(info)))
        self.ver = ver
        self.ctx.refresh_stream_features()  # the <c/> feature appears with the ver
        self.log.debug("server caps ver %s", self.ver)

    @staticmethod
    def _node_handler(info: etree._Element) -> Callable[[JID, str], Awaitable[Any]]:
        from .disco import Identity, NodeInfo

        identities = [Identity(i.get("category") or "", i.get("type") or "", i.get("name")) for i in info.iter(_DI + "identity")]
        features = [f.get("var") or "" for f in info.iter(_DI + "feature")]
        forms = info.findall(_X)

        async def handler(_requester: JID, _node: str) -> Any:
            # Copies: appending an lxml element to an answer moves it.
            return NodeInfo(identities, features, forms=[copy.deepcopy(f) for f in forms])

        return handler

    async def server_info(self) -> etree._Element:
        """The server's disco#info exactly as a client gets it."""
        domain = JID(None, self.ctx.domain)
        iq = stanza("iq", type="get", to=self.ctx.domain, frm=self.ctx.domain)
        query = element(_DI + "query", default_ns=ns.DISCO_INFO)
        iq.append(query)
        disco = self.ctx.feature("disco")
        return await disco.host_info(IqRequest(iq, query, "get", domain, domain, None))  # type: ignore[no-any-return]

    def _stream_feature(self, authenticated: bool) -> list[etree._Element]:
        if not authenticated or self.ver is None:
            return []
        return [element(C, {"hash": "sha-1", "node": NODE, "ver": self.ver}, default_ns=CAPS)]

    @hook(H.PRESENCE_BROADCAST, priority=200)
    async def on_presence(self, r: Routed) -> Flow:
        session = r.origin
        if session is not None:
            if session.available:
                self.cache.observe(session, r.stanza)
            else:
                session.data.pop(_SESSION_KEY, None)
        return Flow.CONTINUE
