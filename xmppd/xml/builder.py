"""Building and serialising stanzas with lxml: the one XML library used end to end."""
from __future__ import annotations

from lxml import etree

from ..errors import NS_STANZAS, NS_STREAMS, StanzaError, StreamErrorCondition
from . import ns

Element = etree._Element
_CLIENT_NSMAP = {None: ns.CLIENT}
tostring = etree.tostring


def element(tag: str, attrib: dict[str, str] | None = None, *, default_ns: str | None = None, text: str | None = None) -> Element:
    """A new element; ``default_ns`` declares the namespace as default (``<query xmlns='...'>``)."""
    el = etree.Element(tag, attrib, nsmap={None: default_ns} if default_ns else None)
    if text is not None:
        el.text = text
    return el


def sub(parent: Element, tag: str, attrib: dict[str, str] | None = None, *, text: str | None = None) -> Element:
    """A child element; a child in a namespace other than its parent's gets it as default namespace."""
    if tag[0] == "{":
        tns = tag[1 : tag.index("}")]
        if parent.nsmap.get(None) != tns:
            el = etree.SubElement(parent, tag, attrib, nsmap={None: tns})
        else:
            el = etree.SubElement(parent, tag, attrib)
    else:
        el = etree.SubElement(parent, tag, attrib)
    if text is not None:
        el.text = text
    return el


def stanza(kind: str, *, to: str | None = None, frm: str | None = None, type: str | None = None, id: str | None = None) -> Element:
    el = etree.Element(f"{{{ns.CLIENT}}}{kind}", nsmap=_CLIENT_NSMAP)
    if to is not None:
        el.set("to", to)
    if frm is not None:
        el.set("from", frm)
    if type is not None:
        el.set("type", type)
    if id is not None:
        el.set("id", id)
    return el


def iq_result(request: Element, payload: Element | None = None) -> Element:
    """The result for an iq request, addressed back to its sender."""
    reply = stanza("iq", type="result", id=request.get("id"))
    _swap_addresses(request, reply)
    if payload is not None:
        reply.append(payload)
    return reply


def _swap_addresses(request: Element, reply: Element) -> None:
    frm = request.get("from")
    to = request.get("to")
    if frm is not None:
        reply.set("to", frm)
    if to is not None:
        reply.set("from", to)


def error_element(err: StanzaError) -> Element:
    e = etree.Element(f"{{{ns.CLIENT}}}error", {"type": err.type.value})
    if err.by:
        e.set("by", err.by)
    etree.SubElement(e, f"{{{NS_STANZAS}}}{err.condition.value}", nsmap={None: NS_STANZAS})
    if err.text:
        t = etree.SubElement(e, f"{{{NS_STANZAS}}}text", nsmap={None: NS_STANZAS})
        t.set(ns.XML_LANG, getattr(err, "lang", "en"))
        t.text = err.text
    if err.app is not None:
        e.append(err.app)  # type: ignore[arg-type]
    return e


def error_reply(original: Element, err: StanzaError) -> Element:
    """RFC 6120 §8.3: the error stanza for ``original``, same kind and id, addresses swapped."""
    kind = etree.QName(original).localname
    reply = stanza(kind, type="error", id=original.get("id"))
    _swap_addresses(original, reply)
    if kind != "iq":
        # Keep a message's or presence's body-less payload out; include the original content
        # only for messages, which helps the sender know what failed.
        for child in original:
            if kind == "message" and child.tag in (f"{{{ns.CLIENT}}}body", f"{{{ns.CLIENT}}}subject", f"{{{ns.CLIENT}}}thread"):
                reply.append(_copy(child))
    reply.append(error_element(err))
    return reply


def _copy(el: Element) -> Element:
    return etree.fromstring(etree.tostring(el))


def stream_error(condition: StreamErrorCondition, text: str | None = None, app: Element | None = None, detail: str | None = None) -> Element:
    """``detail``: the condition element's content (RFC 6120 §4.9.3.19: see-other-host's address)."""
    e = etree.Element(f"{{{ns.STREAM}}}error", nsmap={"stream": ns.STREAM})
    c = etree.SubElement(e, f"{{{NS_STREAMS}}}{condition.value}", nsmap={None: NS_STREAMS})
    if detail:
        c.text = detail
    if text:
        t = etree.SubElement(e, f"{{{NS_STREAMS}}}text", nsmap={None: NS_STREAMS})
        t.set(ns.XML_LANG, "en")
        t.text = text
    if app is not None:
        e.append(app)
    return e


def text_of(el: Element, tag: str) -> str | None:
    child = el.find(tag)
    if child is None:
        return None
    return child.text or ""
