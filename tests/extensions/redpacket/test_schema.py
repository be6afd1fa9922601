"""Red packets (urn:xmppd:redpacket:0): the XSD compiles, examples validate or fail as they should,
and what the feature builds validates."""

from __future__ import annotations

from pathlib import Path

import pytest
import xmlschema

from xmppd_extensions.redpacket.feature import NS

from .schema_check import XSD, assert_valid_xml, schema

DATA = Path(__file__).resolve().parents[2] / "data" / "redpacket"


def test_the_schema_compiles_for_our_namespace():
    s = schema()
    assert s.target_namespace == NS
    assert {"send", "open", "redpacket", "grabbed", "finished", "refunded", "already-grabbed"} <= {
        e.local_name for e in s.elements.values()}
    assert XSD.name == "redpacket-0.xsd"


@pytest.mark.parametrize("path", sorted((DATA / "valid").glob("*.xml")), ids=lambda p: p.name)
def test_valid_examples_validate(path):
    assert_valid_xml(path.read_bytes())


@pytest.mark.parametrize("path", sorted((DATA / "invalid").glob("*.xml")), ids=lambda p: p.name)
def test_invalid_examples_fail(path):
    with pytest.raises(xmlschema.XMLSchemaValidationError):
        assert_valid_xml(path.read_bytes())


def test_there_are_examples_of_both_kinds():
    assert len(list((DATA / "valid").glob("*.xml"))) >= 5
    assert len(list((DATA / "invalid").glob("*.xml"))) >= 5
