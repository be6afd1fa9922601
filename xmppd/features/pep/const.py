"""XEP-0060 namespaces and error helpers shared by the PEP parts."""
from __future__ import annotations

from lxml import etree

from ...errors import Condition, StanzaError
from .repository import MAX_ID_LENGTH

PUBSUB = "http://jabber.org/protocol/pubsub"
OWNER = PUBSUB + "#owner"
EVENT = PUBSUB + "#event"
ERRORS = PUBSUB + "#errors"
CONFIG_FORM_TYPE = PUBSUB + "#node_config"
PUBLISH_OPTIONS_FORM_TYPE = PUBSUB + "#publish-options"

Q_PUBSUB = f"{{{PUBSUB}}}pubsub"
Q_OWNER = f"{{{OWNER}}}pubsub"
P = f"{{{PUBSUB}}}"
O = f"{{{OWNER}}}"  # noqa: E741
E = f"{{{EVENT}}}"


def pubsub_error(condition: str, feature: str | None = None) -> etree._Element:
    """``<condition xmlns='http://jabber.org/protocol/pubsub#errors' [feature=...]/>``."""
    el = etree.Element(f"{{{ERRORS}}}{condition}", nsmap={None: ERRORS})
    if feature is not None:
        el.set("feature", feature)
    return el


def node_name(el: etree._Element) -> str:
    """The ``node`` attribute of a pubsub verb (PEP's and the pubsub service's): required, at
    most ``MAX_ID_LENGTH`` characters."""
    node = el.get("node") or ""
    if not node:
        raise StanzaError(Condition.BAD_REQUEST, "the node attribute is required", app=pubsub_error("nodeid-required"))
    if len(node) > MAX_ID_LENGTH:
        raise StanzaError(Condition.NOT_ACCEPTABLE, f"node names have at most {MAX_ID_LENGTH} characters")
    return node


def feature(name: str) -> str:
    return f"{PUBSUB}#{name}"
