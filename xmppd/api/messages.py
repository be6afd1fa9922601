"""REST API: send a message or a headline (``POST /messages``), through the router.

From the server (no ``from``: the stanza comes from ``server.domain``) or on behalf of a local
account (``from``: its bare JID or username). On behalf of a user the message passes the same
one-to-one speech gate (``hooks.SPEECH``: mute, blocking rules) as the user's own messages and
then takes the router's path (archive, carbons, offline storage) as if the user had sent it.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..core import hooks as H
from ..errors import StanzaError
from ..jid import JID, JIDError
from ..tokens import token_hex
from ..xml import ns
from ..xml.builder import stanza, sub
from .framework import JID_SCHEMA, ApiError, ApiRequest, Operation, bad_request, obj, xml_text

if TYPE_CHECKING:
    from ..app import Server

MESSAGE = obj(
    {
        "to": JID_SCHEMA,
        "from": JID_SCHEMA,
        "type": {"type": "string", "enum": ["chat", "normal", "headline"], "default": "chat"},
        "body": xml_text(65536),
        "subject": xml_text(1024),
        "id": {"type": "string", "minLength": 1, "maxLength": 128, "pattern": "^[A-Za-z0-9._:-]+$"},
    },
    ["to"],
)
MESSAGE["anyOf"] = [{"required": ["body"]}, {"required": ["subject"]}]


def parse_jid(text: str, field: str) -> JID:
    try:
        return JID.parse(text)
    except JIDError as exc:
        raise bad_request("invalid_jid", f"{field}: {text[:100]!r} is not a valid JID ({exc})") from None


def operations(server: "Server") -> list[Operation]:
    domain = server.domain

    async def sender(text: str | None) -> JID:
        if text is None:
            return JID.parse(domain)
        jid = parse_jid(text if "@" in text else f"{text}@{domain}", "from")
        if jid.domain != domain or jid.local is None or jid.resource is not None:
            raise bad_request("invalid_sender", f"from must be an account of {domain} (a bare JID or a username)")
        if await server.accounts.get(jid.local, domain) is None:
            raise ApiError(404, "user_not_found", f"no account {jid}")
        return jid

    async def send_message(req: ApiRequest) -> Any:
        b = req.body
        if "body" not in b and "subject" not in b:
            raise bad_request("empty_message", "a message needs a body or a subject")
        to = parse_jid(b["to"], "to")
        frm = await sender(b.get("from"))
        msg_id = b.get("id") or token_hex(8)
        el = stanza("message", to=str(to), frm=str(frm), type=b.get("type", "chat"), id=msg_id)
        if "subject" in b:
            sub(el, f"{{{ns.CLIENT}}}subject", text=b["subject"])
        if "body" in b:
            sub(el, f"{{{ns.CLIENT}}}body", text=b["body"])
        if frm.local is not None and to.local is not None and to.domain == domain:
            try:
                await server.router.may_speak(H.Speech(frm, to, el, feature="api"))
            except StanzaError as err:
                raise ApiError(422, "speech_refused", err.text or err.condition.value) from None
        await server.router.send(el)
        return {"id": msg_id, "from": str(frm), "to": str(to)}

    return [
        Operation("POST", "/messages", send_message, "Send a message or headline as the server or a user", "messages",
                  "sendMessage", body=MESSAGE,
                  response=obj({"id": {"type": "string"}, "from": {"type": "string"}, "to": {"type": "string"}}, ["id", "from", "to"]),
                  errors=(404, 422),
                  description="Without `from` the message comes from the server's domain; with `from` (an account of "
                  "this server) it passes the speech gate that account's own messages pass and is routed as theirs."),
    ]
