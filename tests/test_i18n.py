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


@pytest.mark.interop
@pytest.mark.parametrize(("lang", "text"), [
    ("zh-CN", "本服务器不服务 example.net，且未开启联邦"),
    ("en", "example.net is not served here and federation is off"),
    ("fr", "example.net is not served here and federation is off"),  # no French catalogue: English
], ids=["zh", "en", "fr"])
async def test_core_error_texts_are_in_the_senders_stream_language(tmp_path: Path, lang: str, text: str) -> None:
    from slixmpp.exceptions import IqError

    from tests.helpers import add_user, running_server, slix, slix_close

    async with running_server(tmp_path) as srv:
        c = await slix(srv, await add_user(srv, "ann"), lang=lang)
        try:
            with pytest.raises(IqError) as exc:
                await c.make_iq_get(ito="someone@example.net", queryxmlns="urn:xmpp:ping").send(timeout=5)
            err = exc.value.iq.xml.find("{jabber:client}error/{urn:ietf:params:xml:ns:xmpp-stanzas}text")
            assert err.text == text
            assert err.get("{http://www.w3.org/XML/1998/namespace}lang") == ("zh" if lang.startswith("zh") else "en")
        finally:
            await slix_close(c)
