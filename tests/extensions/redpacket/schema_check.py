"""Validate XML in urn:xmppd:redpacket:0 against schemas/redpacket-0.xsd."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import xmlschema
from lxml import etree

XSD = Path(__file__).resolve().parents[3] / "schemas" / "redpacket-0.xsd"


@lru_cache(maxsize=1)
def schema() -> xmlschema.XMLSchema:
    return xmlschema.XMLSchema(str(XSD))


def assert_valid_xml(data: bytes | str) -> None:
    el = etree.fromstring(data.encode() if isinstance(data, str) else data)
    schema().validate(etree.tostring(el).decode())
