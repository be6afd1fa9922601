"""The archive journal's file (xmppd/features/mam/journal.py), without a server: what is appended
reads back field for field; a torn or damaged record ends the reading there; a record that
cannot be framed is refused before anything is written; the file is emptied when caught up and
rewritten with only the records not stored once it outgrows its bound."""
from __future__ import annotations

import stat

import pytest

from xmppd.features.mam import journal as J
from xmppd.features.mam.repository import ArchivedMessage


def rec(seq: int, body: str = "hi", owner: str = "alice@localhost") -> ArchivedMessage:
    return ArchivedMessage(owner, f"id{seq}", 1_700_000_000_000_000 + seq, "bob@localhost", "phone",
                           f"<message xmlns='jabber:client'><body>{body}</body></message>", seq)


def write(path, records) -> None:
    j = J.Journal(path)
    try:
        j.append(records)
    finally:
        j.close(remove=False)


def test_records_read_back_field_for_field_in_the_order_written(tmp_path):
    path = tmp_path / "db-mam-journal"
    j = J.Journal(path)
    first = [rec(1, "中文 ✓ 🧧"), rec(2, "line\nbreak &amp; <tags/>", owner="房间@conference.localhost")]
    j.append(first)
    j.append([rec(3, "")])
    assert J.read_journal(path) == [*first, rec(3, "")]
    assert j.size == path.stat().st_size
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # (stanzas are private)
    j.close(remove=False)
    assert J.read_journal(path) == [*first, rec(3, "")]


def test_a_torn_tail_or_a_damaged_record_ends_the_reading_there(tmp_path, caplog):
    path = tmp_path / "j"
    write(path, [rec(1), rec(2), rec(3)])
    whole = path.read_bytes()
    path.write_bytes(whole[:-5])  # a crash in the middle of the last write
    assert [r.seq for r in J.read_journal(path)] == [1, 2]
    # a flipped byte inside the second record: its CRC fails, nothing after it is trusted
    one = len(J._encode([rec(1)]))
    damaged = bytearray(whole)
    damaged[one + 20] ^= 0xFF
    path.write_bytes(bytes(damaged))
    assert [r.seq for r in J.read_journal(path)] == [1]
    assert any("damaged record" in r.getMessage() for r in caplog.records)
    assert J.read_journal(tmp_path / "none") == []


def test_a_record_holding_nul_is_refused_before_anything_is_written(tmp_path):
    path = tmp_path / "j"
    j = J.Journal(path)
    j.append([rec(1)])
    size = path.stat().st_size
    with pytest.raises(ValueError):
        j.append([rec(2), rec(3, "a\x00b")])
    assert path.stat().st_size == size and j.size == size
    assert [r.seq for r in J.read_journal(path)] == [1]
    j.close(remove=True)


def test_emptied_when_caught_up_and_rewritten_with_what_is_not_stored_once_full(tmp_path, monkeypatch):
    path = tmp_path / "j"
    j = J.Journal(path)
    j.append([rec(1), rec(2)])
    assert not j.full
    j.empty()
    assert path.stat().st_size == 0 and j.size == 0
    j.append([rec(3)])  # appends go on from the start
    assert [r.seq for r in J.read_journal(path)] == [3]
    monkeypatch.setattr(J, "MAX_BYTES", 200)
    j.append([rec(4), rec(5), rec(6)])
    assert j.full
    j.rewrite([rec(5), rec(6)])  # with only what is not stored
    assert [r.seq for r in J.read_journal(path)] == [5, 6]
    with pytest.raises(J.JournalBusy):
        J.Journal(path)  # the new file was locked before it took the journal's name
    assert j.size == path.stat().st_size
    j.append([rec(7)])  # and appended to
    assert [r.seq for r in J.read_journal(path)] == [5, 6, 7]
    assert not (tmp_path / "j.new").exists()
    j.close(remove=True)
    assert not path.exists()


def test_a_rewrite_cut_short_by_a_crash_is_read_too_and_emptied_with_the_journal(tmp_path):
    path = tmp_path / "j"
    write(path, [rec(1), rec(2)])
    write(tmp_path / "j.new", [rec(2)])  # the rewrite, not renamed yet
    j = J.Journal(path)
    assert [r.seq for r in j.recorded()] == [1, 2, 2]  # (a stored seq is skipped on replay)
    j.replayed()
    assert path.stat().st_size == 0 and not (tmp_path / "j.new").exists()
    j.close(remove=True)
    assert not path.exists()


def test_one_process_at_a_time_holds_a_journal(tmp_path):
    path = tmp_path / "j"
    first = J.Journal(path)
    first.append([rec(1)])
    with pytest.raises(J.JournalBusy):
        J.Journal(path)  # (flock: a second open file description, in this process or another)
    assert [r.seq for r in J.read_journal(path)] == [1]  # untouched
    first.close(remove=False)
    second = J.Journal(path)
    assert [r.seq for r in second.recorded()] == [1]
    second.close(remove=True)
