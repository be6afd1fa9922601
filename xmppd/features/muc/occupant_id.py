"""XEP-0421: anonymous unique occupant identifiers (urn:xmpp:occupant-id:0).

Every presence and message a room sends on an occupant's behalf carries
``<occupant-id xmlns='urn:xmpp:occupant-id:0' id='...'/>``: the same id for the same real bare
JID in the same room (across nicks, sessions, rejoins, restarts and cluster nodes), different
in every room, and revealing nothing of the JID. The id is HMAC-SHA256 of the bare JID under a
per-room key, itself HMAC-SHA256 of the room's JID under one server secret kept in the database
(``server_secrets``, name ``muc-occupant-id``), so every node of a cluster computes the same id.
An ``<occupant-id/>`` a client puts in its own stanza is removed (§4: the room is the only
source of it).
"""
from __future__ import annotations

import base64
import hashlib
import hmac

from lxml import etree

from ...jid import JID

NS = "urn:xmpp:occupant-id:0"
TAG = f"{{{NS}}}occupant-id"


class OccupantIds:
    """The ids of one server (one secret); ``of(room, bare)`` is cached per room key."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret
        self._keys: dict[str, bytes] = {}

    def _room_key(self, room: str) -> bytes:
        key = self._keys.get(room)
        if key is None:
            if len(self._keys) > 10000:
                self._keys.clear()
            key = self._keys[room] = hmac.new(self._secret, room.encode(), hashlib.sha256).digest()
        return key

    def of(self, room: str, bare: JID) -> str:
        digest = hmac.new(self._room_key(room), str(bare.bare).encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest[:18]).decode()


def element(oid: str) -> etree._Element:
    return etree.Element(TAG, {"id": oid}, nsmap={None: NS})


def stamp(stanza: etree._Element, oid: str) -> None:
    """Remove any occupant-id from ``stanza`` and add the room's."""
    for old in stanza.findall(TAG):
        stanza.remove(old)
    stanza.append(element(oid))


def strip(stanza: etree._Element) -> None:
    for old in stanza.findall(TAG):
        stanza.remove(old)
