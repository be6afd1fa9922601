"""usernames.UsernamePolicy: reserved names, their TR 39 look-alikes, service domains, feature
patterns (the doors that use it are tested over the wire in tests/features/test_reserved_names.py)."""
from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from xmppd.config import ConfigError
from xmppd.usernames import DEFAULT_RESERVED_NAMES, UsernamePolicy, ascii_lookalike, skeleton

from .helpers import make_config

ROOT = Path(__file__).resolve().parent.parent


def policy(**kw) -> UsernamePolicy:
    return UsernamePolicy.build(
        "localhost",
        kw.pop("reserved", DEFAULT_RESERVED_NAMES),
        patterns=kw.pop("patterns", [(r"s-[0-9a-f]+", "cs")]),
        admins=kw.pop("admins", ["boss@localhost", "root@localhost", "admin@elsewhere.org"]),
        domains=kw.pop("domains", lambda: ("localhost", "conference.localhost", "chat.example.net")),
    )


@pytest.mark.parametrize("name", ["admin", "postmaster", "noreply", "mailer-daemon"])
def test_reserved_names_are_refused(name):
    assert policy().refusal(name, public=False) == f"the username {name!r} is reserved"


@pytest.mark.parametrize("name", ["adm\u0456n", "\u0430dmin", "adrnin", "\u0440ostmaster", "supp\u043ert"])
def test_names_that_look_like_reserved_ones_are_refused(name):
    why = policy().refusal(name, public=False)
    assert why is not None and "it looks like" in why


@pytest.mark.parametrize("name", ["s-0000abcd", "s-0123456789ab", "\u0455-0000abcd", "s-0000\u0430bcd"])
def test_names_of_feature_addresses_are_refused(name):
    assert "reserved for the addresses of cs" in (policy().refusal(name, public=True) or "")


@pytest.mark.parametrize("name", ["localhost", "conference.localhost", "x.conference.localhost", "c\u043enference.localhost", "chat.example.net", "upload.localhost"])
def test_names_that_look_like_our_domains_are_refused(name):
    assert "looks like the domain" in (policy().refusal(name, public=True) or "")


@pytest.mark.parametrize("name", ["alice", "carol", "administrators", "s-mith", "s-", "adm1n", "conference", "my.name", "jean-luc", "\u5c0f\u660e", "\u0438\u0432\u0430\u043d"])
def test_ordinary_names_are_accepted(name):
    assert policy().refusal(name, public=True) is None


def test_operators_may_create_admins_accounts_and_strangers_may_not():
    p = policy()
    assert p.refusal("root", public=False) is None  # root@localhost is in server.admins
    assert p.refusal("boss", public=False) is None
    assert p.refusal("root", public=True) == "the username 'root' is reserved"
    assert p.refusal("boss", public=True) == "the username 'boss' is reserved"
    assert p.refusal("admin", public=False) is not None  # admin@elsewhere.org is not ours


def test_reserved_names_are_prepared_like_usernames():
    p = policy(reserved=["Helpdesk", "\uff21\uff22"])  # fullwidth "ＡＢ" prepares to "ab"
    assert p.refusal("helpdesk", public=False) is not None
    assert p.refusal("ab", public=False) is not None
    with pytest.raises(ValueError, match="not a valid username"):
        policy(reserved=["a@b"])


def test_skeletons_are_those_of_unicode_tr39():
    assert skeleton("adm\u0456n") == skeleton("admin") == skeleton("adrnin")
    assert skeleton("admin") != skeleton("adm1n")
    assert ascii_lookalike("\u0455-00\u0430b") == "s-00ab"
    assert ascii_lookalike("\u5c0f\u660e") == "\u5c0f\u660e"


def test_the_default_list_is_the_documented_one():
    conf = tomllib.loads((ROOT / "conf" / "xmppd.toml").read_text())
    assert conf["registration"]["reserved_names"] == list(DEFAULT_RESERVED_NAMES)


def test_a_bad_reserved_name_stops_the_configuration(tmp_path):
    with pytest.raises(ConfigError, match=r"registration.reserved_names\[1\] 'x/y'"):
        make_config(tmp_path, 'registration.reserved_names=["ok", "x/y"]')
