"""Reading an element's integer and JID attributes, with the standard errors (one home).

The texts are the core catalogue's ``error.attr_*`` (xmppd/locale), told in the requester's
language where the error leaves the server.
"""
from __future__ import annotations

from typing import Literal, overload

from lxml import etree

from ..errors import Condition
from ..i18n import core_error
from ..jid import JID, JIDError


@overload
def int_attr(el: etree._Element, name: str, default: int, *, low: int = ..., high: int = ...) -> int: ...
@overload
def int_attr(el: etree._Element, name: str, *, required: Literal[True], low: int = ..., high: int = ...) -> int: ...
@overload
def int_attr(el: etree._Element, name: str, default: int | None = None, *, required: bool = ..., low: int = ...,
             high: int = ...) -> int | None: ...


def int_attr(el: etree._Element, name: str, default: int | None = None, *, required: bool = False, low: int = 0,
             high: int = 10**9) -> int | None:
    """The decimal integer in ``name`` (ASCII digits, an optional ``-``), from ``low`` to ``high``;
    ``default`` when absent, or bad-request when ``required``."""
    raw = el.get(name)
    if raw is None:
        if required:
            raise core_error(Condition.BAD_REQUEST, "attr_required", name=name)
        return default
    digits = raw[1:] if raw.startswith("-") else raw
    if not (digits.isascii() and digits.isdigit()) or len(digits) > 18:
        raise core_error(Condition.BAD_REQUEST, "attr_integer", name=name, value=repr(raw))
    value = int(raw)
    if not low <= value <= high:
        raise core_error(Condition.BAD_REQUEST, "attr_between", name=name, low=low, high=high)
    return value


@overload
def jid_attr(el: etree._Element, name: str, *, required: Literal[True], account: bool = ..., bare: bool = ...) -> JID: ...
@overload
def jid_attr(el: etree._Element, name: str, *, required: bool = ..., account: bool = ..., bare: bool = ...) -> JID | None: ...


def jid_attr(el: etree._Element, name: str, *, required: bool = False, account: bool = False, bare: bool = True) -> JID | None:
    """The JID in ``name``: its bare JID unless ``bare=False``; ``account=True`` asks for
    ``user@domain``; None when absent unless ``required`` (bad-request)."""
    raw = el.get(name)
    if not raw:
        if required:
            raise core_error(Condition.BAD_REQUEST, "attr_required", name=name)
        return None
    try:
        jid = JID.parse(raw)
    except JIDError:
        raise core_error(Condition.JID_MALFORMED, "attr_jid", name=name) from None
    if account and jid.local is None:
        raise core_error(Condition.BAD_REQUEST, "attr_account_jid", name=name)
    return jid.bare if bare else jid
