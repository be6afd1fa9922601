"""Server-owned elements: what only the server writes into stanzas, so clients cannot forge it.

Every feature declares the elements it alone authors as data (``Feature.server_owned``), and the
core declares its own (:data:`CORE`); the router removes a client's copies from every stanza it
receives from a client, before any feature sees the stanza (``Router.from_client``): one door,
one step. An element can be owned outright (a carbon copy, an archive result), only when it
claims to come from us (XEP-0359 ``<stanza-id by='our domain'/>``, XEP-0203 ``<delay
from='our domain'/>``: clients legitimately send those naming themselves), or with its whole
namespace in messages and presence (:func:`owned_namespace`: our own protocols, whose clients
only ever send iq requests, so that anything of them in a message is the server's word).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from lxml import etree

from ..jid import JID
from ..xml import ns

if TYPE_CHECKING:
    from .router import Router

# A predicate deciding whether a client-supplied element is one only the server may author.
ServerOnlyCheck = Callable[[etree._Element, "Router"], bool]


def _always(el: etree._Element, router: "Router") -> bool:
    return True


@dataclass(frozen=True, slots=True)
class ServerOwned:
    """A top-level child of stanzas that only the server writes.

    ``qname`` is ``{namespace}name`` (in every stanza), or ``{namespace}*``: every element of
    the namespace in messages and presence (iq payloads stay the clients' requests). With
    ``claims`` set (an attribute naming the author), the element is the server's, and stripped,
    only when that attribute names one of our domains or cannot be parsed."""

    qname: str
    claims: str | None = None

    def __post_init__(self) -> None:
        if not self.qname.startswith("{") or "}" not in self.qname or not self.localname:
            raise ValueError(f"server-owned {self.qname!r}: expected '{{namespace}}name' or '{{namespace}}*'")
        if self.whole_namespace and self.claims:
            raise ValueError("a whole namespace makes no claims")

    @property
    def namespace(self) -> str:
        return self.qname[1 : self.qname.index("}")]

    @property
    def localname(self) -> str:
        return self.qname[self.qname.index("}") + 1 :]

    @property
    def whole_namespace(self) -> bool:
        return self.localname == "*"

    def check(self) -> ServerOnlyCheck:
        attr = self.claims
        if attr is None:
            return _always

        def claims_to_be_local(el: etree._Element, router: "Router") -> bool:
            value = el.get(attr)
            if not value:
                return False
            try:
                return router.is_local(JID.parse(value).domain)
            except ValueError:
                return True  # unparseable: it can only be a forgery attempt

        return claims_to_be_local


def owned(namespace: str, *names: str) -> tuple[ServerOwned, ...]:
    """``owned(NS, "a", "b")``: elements of ``namespace`` the server owns outright."""
    return tuple(ServerOwned(f"{{{namespace}}}{n}") for n in names)


def owned_namespace(namespace: str) -> tuple[ServerOwned, ...]:
    """Every element of ``namespace`` in messages and presence is the server's."""
    return (ServerOwned(f"{{{namespace}}}*"),)


#: The core's own (XEP-0359 §4: ids the server assigns; XEP-0203 §3: the server's delay stamps,
#: offline storage and room history). Clients' copies naming themselves are theirs to send.
CORE: Final = (
    ServerOwned(f"{{{ns.SID}}}stanza-id", claims="by"),
    ServerOwned(f"{{{ns.DELAY}}}delay", claims="from"),
)
