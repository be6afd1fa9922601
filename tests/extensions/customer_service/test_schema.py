"""urn:xmppd:cs:0: schemas/cs-0.xsd compiles, the examples in tests/data/cs validate or fail as they should."""
from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from xmppd_extensions.customer_service.feature import CustomerService
from xmppd_extensions.customer_service.protocol import NS

from .conftest import SCHEMA

DATA = Path(__file__).parents[2] / "data" / "cs"
VALID = sorted((DATA / "valid").glob("*.xml"))
INVALID = sorted((DATA / "invalid").glob("*.xml"))


def test_the_namespace_travels_with_its_schema_and_disco_feature() -> None:
    assert NS == "urn:xmppd:cs:0" and not NS.startswith("urn:xmpp:")
    assert NS in CustomerService.disco_features
    root = etree.parse(str(Path(__file__).parents[3] / "schemas" / "cs-0.xsd")).getroot()
    assert root.get("targetNamespace") == NS
    assert (Path(__file__).parents[3] / "docs" / "customer-service.md").read_text().count(NS) >= 1
    assert len(VALID) >= 10 and len(INVALID) >= 10


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.name)
def test_valid_examples_validate(path: Path) -> None:
    assert SCHEMA.validate(etree.parse(str(path))), SCHEMA.error_log


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.name)
def test_invalid_examples_fail(path: Path) -> None:
    assert not SCHEMA.validate(etree.parse(str(path)))
