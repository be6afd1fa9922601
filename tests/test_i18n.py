"""xmppd/i18n.py: language chains, catalogues as data, and every catalogue shipped complete in zh and en."""
from __future__ import annotations

from pathlib import Path

import pytest

from xmppd.i18n import Catalog, CatalogError, Languages, Translator, chain, normalise

ROOT = Path(__file__).parents[1]
SHIPPED = sorted(p.parent for p in [*ROOT.glob("xmppd/**/locale/en.toml"), *ROOT.glob("extensions/*/locale/en.toml")])


def test_tags_fall_back_from_specific_to_general_then_default_then_english() -> None:
    assert chain("zh-Hans-CN") == ("zh-hans-cn", "zh-hans", "zh", "en")
    assert chain("zh_TW", default="zh") == ("zh-tw", "zh", "en")
    assert chain(None, default="zh") == ("zh", "en")
    assert chain("not a tag!") == ("en",)
    assert normalise("") is None and normalise("EN-gb") == "en-gb"


def test_a_catalogue_must_follow_its_english_source() -> None:
    with pytest.raises(CatalogError, match="not in the en catalogue"):
        Catalog({"en": {"a": "x"}, "zh": {"b": "y"}})
    with pytest.raises(CatalogError, match="uses fields"):
        Catalog({"en": {"a": "{nick} joined"}, "zh": {"a": "{name} 加入"}})
    with pytest.raises(CatalogError, match="no en catalogue"):
        Catalog({"zh": {"a": "x"}})


def test_missing_keys_fall_back_and_the_language_used_is_reported() -> None:
    class NoSessions:
        def get(self, jid: object) -> None:
            return None

        def of(self, jid: object) -> list[object]:
            return []

    tr = Translator(Catalog({"en": {"hi": "Hello {n}", "bye": "Bye"}, "zh": {"hi": "你好 {n}"}}), Languages(NoSessions(), "zh"))  # type: ignore[arg-type]
    assert tr.render("zh-Hans", "hi", n=1) == ("zh", "你好 1")
    assert tr.render("zh", "bye") == ("en", "Bye")
    assert tr.render("fr", "hi", n=2) == ("zh", "你好 2")  # the server default before English
    assert tr("nobody@localhost", "hi", n=3) == "你好 3"  # unknown reader: the server default


@pytest.mark.parametrize("folder", SHIPPED, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_shipped_catalogue_is_complete_in_chinese(folder: Path) -> None:
    cat = Catalog.load(folder)
    assert set(cat.languages) >= {"en", "zh"}
    missing = set(cat.messages["en"]) - set(cat.messages["zh"])
    assert not missing, f"{folder}: no Chinese for {sorted(missing)}"
