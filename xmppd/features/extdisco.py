"""XEP-0215: External Service Discovery — the STUN and TURN servers a client needs to place a
call (Jingle, WebRTC), with temporary TURN credentials.

Services come from ``[extdisco] services`` in the configuration. A service with a ``secret``
gets credentials per request by the TURN REST API convention that coturn (``use-auth-secret``),
eturnal and others implement (draft-uberti-behave-turn-rest-00): the username is
``<expiry as Unix time>:<local part>``, the password the base64 of HMAC-SHA1 of that username
keyed with the shared secret, so the TURN server checks them with no call back to xmppd, and
they stop working at ``expires``. The secret itself never leaves the server.

Only the server's own users are answered (a TURN relay costs bandwidth; XEP-0215 §7: "the
server SHOULD only return credentials to entities that are authorized to use them").
"""
from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass, field
from typing import Annotated

from lxml import etree

from .. import timestamps
from ..config import AtLeast, AtMost, OneOf
from ..core.dispatch import IqRequest
from ..core.feature import Feature, iq_handler
from ..errors import Condition, StanzaError
from ..xml.builder import element, sub

NS = "urn:xmpp:extdisco:2"
_SERVICES = f"{{{NS}}}services"
_CREDENTIALS = f"{{{NS}}}credentials"
_SERVICE = f"{{{NS}}}service"

Port = Annotated[int, AtLeast(1), AtMost(65535)]


@dataclass(frozen=True, slots=True)
class ServiceOptions:
    # "stun", "turn", "stuns" or "turns" (RFC 7064/7065 URI schemes; XEP-0215 also allows others)
    type: Annotated[str, OneOf("stun", "turn", "stuns", "turns")] = "stun"
    host: str = ""  # a host name or an IP address clients can reach
    port: Port = 3478
    transport: Annotated[str, OneOf("udp", "tcp")] = "udp"
    name: str = ""  # shown to users, optional
    # The TURN server's shared secret (coturn static-auth-secret): "" gives no credentials
    # (an open STUN server); set, every answer carries a fresh username and password.
    secret: str = ""
    # Seconds the credentials stay valid: long enough for a call, short enough that a leaked
    # pair is soon useless (coturn's examples use one day).
    ttl: Annotated[int, AtLeast(60), AtMost(7 * 86400)] = 86400

    def __post_init__(self) -> None:
        if not self.host:
            raise ValueError("a service needs a host")


@dataclass(frozen=True, slots=True)
class ExtDiscoOptions:
    # [[extdisco.services]] tables; empty (the default): the list clients get is empty.
    services: list[ServiceOptions] = field(default_factory=list)


def turn_credentials(secret: str, user: str, expires: int) -> tuple[str, str]:
    """(username, password) by the TURN REST convention for a user until ``expires``."""
    username = f"{expires}:{user}"
    password = base64.b64encode(hmac.digest(secret.encode(), username.encode(), hashlib.sha1)).decode("ascii")
    return username, password


class ExtDisco(Feature):
    name = "extdisco"
    implements = ("XEP-0215",)
    disco_features = (NS,)
    Options = ExtDiscoOptions

    def _check_local(self, req: IqRequest) -> None:
        if req.from_jid.domain != self.ctx.domain or req.from_jid.local is None:
            raise StanzaError(Condition.FORBIDDEN, "external services are for this server's users")

    def _service_element(self, parent: etree._Element, svc: ServiceOptions, user: str) -> None:
        attrs = {"type": svc.type, "host": svc.host, "port": str(svc.port), "transport": svc.transport}
        if svc.name:
            attrs["name"] = svc.name
        if svc.secret:
            expires = int(self.ctx.clock.now()) + svc.ttl
            attrs["username"], attrs["password"] = turn_credentials(svc.secret, user, expires)
            attrs["expires"] = timestamps.seconds(expires)
            attrs["restricted"] = "1"
        sub(parent, _SERVICE, attrs)

    @iq_handler("get", _SERVICES)
    async def services(self, req: IqRequest) -> etree._Element:
        self._check_local(req)
        wanted = req.payload.get("type")
        out = element(_SERVICES, default_ns=NS)
        if wanted:
            out.set("type", wanted)
        for svc in self.options.services:
            if wanted is None or svc.type == wanted:
                self._service_element(out, svc, req.from_jid.local or "")
        return out

    @iq_handler("get", _CREDENTIALS)
    async def credentials(self, req: IqRequest) -> etree._Element:
        """§3.3: fresh credentials for one service, named by host (and type, port when given)."""
        self._check_local(req)
        asked = req.payload.find(_SERVICE)
        if asked is None or not asked.get("host"):
            raise StanzaError(Condition.BAD_REQUEST, "name the service: <service host='…' type='…'/>")
        out = element(_CREDENTIALS, default_ns=NS)
        for svc in self.options.services:
            if svc.host != asked.get("host") or asked.get("type", svc.type) != svc.type:
                continue
            if asked.get("port") not in (None, str(svc.port)):
                continue
            if not svc.secret:
                raise StanzaError(Condition.ITEM_NOT_FOUND, f"{svc.host} needs no credentials")
            self._service_element(out, svc, req.from_jid.local or "")
            return out
        raise StanzaError(Condition.ITEM_NOT_FOUND, "no such external service")
