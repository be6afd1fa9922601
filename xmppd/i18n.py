"""Server-generated texts in the reader's language (RFC 6120 §4.7.4, §8.1.5): one mechanism for every feature.

Texts are data. A feature keeps a ``locale/`` folder beside its code with one TOML file per
language (``en.toml``, ``zh.toml``; the file name is the language tag): keys, grouped in tables if
wished (``[close] idle = "..."`` is the key ``close.idle``), whose values are ``str.format``
templates with named fields (``"{nick} is now chatting with you."``). English is the source: every
other file may only hold keys English has, with the same fields; a key a language lacks falls back
along the chain. Adding a language is adding a file.

Which language: :class:`Languages` answers for a JID. A full JID reads its session's stream
``xml:lang``; a bare JID reads the language of its available resource of highest priority (the
one messages to the bare JID reach first), else its last-known language from this run of the
server, else ``server.default_lang``. A tag is looked up along its chain: ``zh-Hans-CN`` ->
``zh-hans`` -> ``zh`` -> ``server.default_lang`` -> ``en``.

A feature gets a :class:`Translator` from ``ctx.translator(folder)``:
``tr(to, "key", **fields)`` renders for a recipient; ``tr.text(lang, "key", ...)`` for an explicit
language; ``tr.body(parent, to_or_lang, "key", ...)`` adds a ``<body xml:lang>`` naming the
language actually used.
"""
from __future__ import annotations

import collections
import functools
import re
import string
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lxml import etree

from .errors import Condition, ErrorType, StanzaError
from .jid import JID, JIDError
from .xml import ns

if TYPE_CHECKING:
    from .core.sessions import SessionRegistry

SOURCE = "en"  # the language every catalogue is complete in
_TAG = re.compile(r"^[a-z]{1,8}(-[a-z0-9]{1,8})*$")
_REMEMBERED = 100_000  # accounts whose last language is kept for when they are offline


class CatalogError(ValueError):
    """A catalogue that does not load or does not match its English source."""


def normalise(tag: str | None) -> str | None:
    """``"zh_Hans-CN"`` -> ``"zh-hans-cn"``; None for an empty or malformed tag (BCP 47 shape)."""
    if not tag:
        return None
    t = tag.strip().replace("_", "-").lower()[:35]
    return t if _TAG.match(t) else None


def chain(tag: str | None, default: str = SOURCE) -> tuple[str, ...]:
    """The languages to try for ``tag``, most specific first, ending in ``default`` and English."""
    out: list[str] = []
    t = normalise(tag)
    while t:
        out.append(t)
        t = t.rpartition("-")[0]
    for extra in (normalise(default), SOURCE):
        if extra and extra not in out:
            out.append(extra)
    return tuple(out)


def _fields(template: str) -> frozenset[str]:
    return frozenset(f for _, f, _, _ in string.Formatter().parse(template) if f)


def _flatten(table: Mapping[str, Any], prefix: str, out: dict[str, str], where: str) -> None:
    for k, v in table.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            _flatten(v, key + ".", out, where)
        elif isinstance(v, str):
            out[key] = v
        else:
            raise CatalogError(f"{where}: {key} must be a string, not {type(v).__name__}")


class Catalog:
    """One feature's texts: language tag -> key -> template."""

    def __init__(self, messages: Mapping[str, Mapping[str, str]], name: str = "<catalog>") -> None:
        self.name = name
        self.messages = {normalise(lang) or lang: dict(m) for lang, m in messages.items()}
        source = self.messages.get(SOURCE)
        if source is None:
            raise CatalogError(f"{name}: no {SOURCE} catalogue (English is the source language)")
        for lang, m in self.messages.items():
            for key, template in m.items():
                if key not in source:
                    raise CatalogError(f"{name}/{lang}: {key} is not in the {SOURCE} catalogue")
                if _fields(template) != _fields(source[key]):
                    raise CatalogError(f"{name}/{lang}: {key} uses fields {sorted(_fields(template))}, {SOURCE} {sorted(_fields(source[key]))}")

    @classmethod
    def load(cls, folder: str | Path) -> "Catalog":
        folder = Path(folder)
        messages: dict[str, dict[str, str]] = {}
        for path in sorted(folder.glob("*.toml")):
            lang = normalise(path.stem)
            if lang is None:
                raise CatalogError(f"{path}: the file name is not a language tag")
            try:
                data = tomllib.loads(path.read_text(encoding="utf-8"))
            except (OSError, tomllib.TOMLDecodeError) as exc:
                raise CatalogError(f"{path}: {exc}") from None
            _flatten(data, "", messages.setdefault(lang, {}), str(path))
        return cls(messages, str(folder))

    @property
    def languages(self) -> tuple[str, ...]:
        return tuple(sorted(self.messages))

    def template(self, langs: Iterable[str], key: str) -> tuple[str, str]:
        """(language used, template) for the first language of ``langs`` that has ``key``."""
        for lang in langs:
            t = self.messages.get(lang, {}).get(key)
            if t is not None:
                return lang, t
        t = self.messages[SOURCE].get(key)
        if t is None:
            raise KeyError(f"{self.name}: no text {key!r}")
        return SOURCE, t


class LocalisedError(StanzaError):
    """A stanza error whose text is a catalogue key: English as raised, and rendered in the
    language of the entity it answers where it leaves the server (``Router.bounce``)."""

    def __init__(self, condition: Condition, catalog: Catalog, key: str, /, *, type: ErrorType | None = None,
                 app: object | None = None, by: str | None = None, **fields: Any) -> None:
        self.catalog = catalog
        self.key = key
        self.fields = fields
        super().__init__(condition, catalog.template((SOURCE,), key)[1].format(**fields), type=type, app=app, by=by)

    def for_lang(self, lang: str | None, default: str = SOURCE) -> StanzaError:
        used, template = self.catalog.template(chain(lang, default), self.key)
        return StanzaError(self.condition, template.format(**self.fields), type=self.type, app=self.app, by=self.by, lang=used)


@functools.cache
def core_catalog() -> Catalog:
    """The core's own texts (``xmppd/locale``)."""
    return Catalog.load(Path(__file__).parent / "locale")


def core_error(condition: Condition, key: str, /, **fields: Any) -> LocalisedError:
    """A stanza error of the server core with text ``error.<key>``."""
    return LocalisedError(condition, core_catalog(), "error." + key, **fields)


class Languages:
    """The language a JID reads (see the module's docstring). One per server."""

    def __init__(self, sessions: "SessionRegistry", default: str = SOURCE) -> None:
        self.sessions = sessions
        self.default = normalise(default) or SOURCE
        self._last: collections.OrderedDict[JID, str] = collections.OrderedDict()

    def remember(self, bare: JID, lang: str | None) -> None:
        """The account's latest session said ``lang`` (kept for when it is offline)."""
        if lang is None:
            return
        self._last[bare] = lang
        self._last.move_to_end(bare)
        while len(self._last) > _REMEMBERED:
            self._last.popitem(last=False)

    @staticmethod
    def of_session(session: Any) -> str | None:
        return normalise(getattr(session.stream, "client_lang", None))

    def localise(self, err: StanzaError, who: JID | str | None) -> StanzaError:
        """``err`` with its text in ``who``'s language when it is a :class:`LocalisedError`."""
        return err.for_lang(self.of(who), self.default) if isinstance(err, LocalisedError) else err

    def of(self, who: JID | str | None) -> str:
        """The language tag to render for ``who`` (normalised)."""
        if who is None:
            return self.default
        if isinstance(who, str):
            try:
                who = JID.parse(who)
            except JIDError:
                return self.default
        if who.resource is not None:
            s = self.sessions.get(who)
            lang = self.of_session(s) if s is not None else None
            if lang:
                return lang
        said = [(s.available, s.priority, lang) for s in self.sessions.of(who.bare) if (lang := self.of_session(s))]
        if said:
            return max(said, key=lambda t: (t[0], t[1]))[2]
        return self._last.get(who.bare) or self.default


class Translator:
    """A feature's catalogue bound to the server's :class:`Languages`."""

    def __init__(self, catalog: Catalog, languages: Languages) -> None:
        self.catalog = catalog
        self.languages = languages

    def lang(self, who: JID | str | None) -> str:
        return self.languages.of(who)

    def render(self, lang: str | None, key: str, /, **fields: Any) -> tuple[str, str]:
        """(language used, text) of ``key`` for the language tag ``lang``."""
        used, template = self.catalog.template(chain(lang, self.languages.default), key)
        return used, template.format(**fields)

    def text(self, lang: str | None, key: str, /, **fields: Any) -> str:
        return self.render(lang, key, **fields)[1]

    def __call__(self, to: JID | str | None, key: str, /, **fields: Any) -> str:
        """The text of ``key`` in the language of recipient ``to``."""
        return self.text(self.lang(to), key, **fields)

    def error(self, condition: Condition, key: str, /, **fields: Any) -> LocalisedError:
        """A stanza error with the text ``key``, told in the requester's language by the router."""
        return LocalisedError(condition, self.catalog, key, **fields)

    def body(self, parent: etree._Element, lang: str | None, key: str, /, **fields: Any) -> etree._Element:
        """Append ``<body xml:lang='…'>`` with the text of ``key`` in ``lang`` (the language used)."""
        used, text = self.render(lang, key, **fields)
        b = etree.SubElement(parent, f"{{{ns.CLIENT}}}body")
        b.text = text
        b.set(ns.XML_LANG, used)
        return b


__all__ = ["Catalog", "CatalogError", "Languages", "LocalisedError", "Translator", "chain", "core_error", "normalise"]
