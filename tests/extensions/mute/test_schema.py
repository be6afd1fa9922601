"""Group mute (urn:xmppd:mute:0): the XSD compiles, examples validate or fail as they should,
and everything the feature builds validates."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import xmlschema

from xmppd_extensions.mute import protocol as P
from xmppd_extensions.mute.repository import PLATFORM, AuditEntry, Ban, Mute, MuteAll

from .support import XSD, assert_valid, schema

DATA = Path(__file__).resolve().parents[2] / "data" / "mute"
T0 = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)


def test_the_schema_compiles_for_our_namespace():
    s = schema()
    assert s.target_namespace == P.NS == "urn:xmppd:mute:0"
    assert {"mute", "unmute", "mute-all", "unmute-all", "list", "status", "audit", "notice", "muted", "all-muted",
            "platform-muted"} <= {e.local_name for e in s.elements.values()}
    assert XSD.name == "mute-0.xsd"


@pytest.mark.parametrize("path", sorted((DATA / "valid").glob("*.xml")), ids=lambda p: p.name)
def test_valid_examples_validate(path):
    assert_valid(path.read_bytes())


@pytest.mark.parametrize("path", sorted((DATA / "invalid").glob("*.xml")), ids=lambda p: p.name)
def test_invalid_examples_fail(path):
    with pytest.raises(xmlschema.XMLSchemaValidationError):
        assert_valid(path.read_bytes())


def test_there_are_examples_of_both_kinds():
    assert len(list((DATA / "valid").glob("*.xml"))) >= 8
    assert len(list((DATA / "invalid").glob("*.xml"))) >= 5


def test_everything_the_server_builds_validates():
    m = Mute("r@conference.example.com", "alice@example.com", T0 + timedelta(seconds=600), "spam", "bob@example.com", T0)
    open_ended = Mute(PLATFORM, "carol@example.com", None, None, "admin@example.com", T0, "mute")
    state = MuteAll("r@conference.example.com", "adam@example.com", "quiet", T0)
    built = [
        P.item(m, T0, nick="alice"), P.item(open_ended, T0), P.all_element(state),
        P.status(muted=m, all_muted=state, platform=open_ended, now=T0),
        P.status(muted=None, all_muted=None, platform=None, now=T0),
        P.audit_entry(AuditEntry(1, T0, "bob@example.com", "mute", m.room, m.jid, 600, m.until, "spam")),
        P.audit_entry(AuditEntry(2, T0, "admin@example.com", "unmute", PLATFORM, "carol@example.com", None, None, None)),
        P.notice("mute", nick="alice", jid="alice@example.com", actor_nick="bob", actor="bob@example.com", seconds=600,
                 until=m.until, reason="spam"),
        P.notice("expire", jid="carol@example.com", scope="platform"),
        P.muted_error(m.room, m).app, P.muted_error(m.room, open_ended).app,
        P.all_muted_error(state.room, state).app, P.platform_muted_error(open_ended).app,
        P.slow_mode_error(m.room, 30, 20).app, P.filtered_error(m.room, "spam").app,
        P.filtered_error(m.room, "spam", platform=True).app, P.filtered_error(None, "spam", platform=True).app,
        P.ban_element(Ban(m.room, "alice@example.com", T0 + timedelta(seconds=600), "flood", "bob@example.com", T0), T0),
    ]
    for el in built:
        assert_valid(el)


@pytest.mark.parametrize(("seconds", "en", "zh"), [
    (1, "1 second", "1 秒"), (90, "90 seconds", "90 秒"), (600, "10 minutes", "10 分钟"),
    (3600, "1 hour", "1 小时"), (7200, "2 hours", "2 小时"), (86400, "1 day", "1 天"), (604800, "7 days", "7 天"),
])
def test_durations_read_naturally(seconds, en, zh):
    assert P.duration(seconds, "en") == en
    assert P.duration(seconds, "zh-CN") == zh


def test_notice_bodies_in_both_languages():
    assert P.notice_body("mute", "en", target="alice", actor="bob", seconds=600) == "alice was muted for 10 minutes by bob"
    assert P.notice_body("mute", "zh", target="alice", actor="bob", seconds=600) == "bob 将 alice 禁言 10 分钟"
    assert P.notice_body("mute", "en", target="carol", actor="an administrator", scope="platform") == (
        "carol was muted on this server by an administrator")
    assert P.notice_body("expire", "zh", target="alice") == "alice 的禁言已到期"
    with pytest.raises(ValueError):
        P.notice_body("ban", "en")
