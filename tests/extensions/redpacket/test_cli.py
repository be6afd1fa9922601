"""Red packets (urn:xmppd:redpacket:0): xmppctl wallet verbs on the embedded database."""

from __future__ import annotations

import pytest

from xmppd.cli import xmppctl_main


def run(tmp_path, capsys, *argv: str) -> tuple[int, str, str]:
    code = xmppctl_main(["--set", f"server.data_dir={tmp_path.as_posix()}", "--set", "server.domain=example.com", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_wallet_topup_adjust_balance_and_audit(tmp_path, capsys):
    assert run(tmp_path, capsys, "wallet", "topup", "alice@example.com", "1000")[0] == 0
    code, out, _ = run(tmp_path, capsys, "wallet", "adjust", "alice@example.com", "-300", "--reason", "chargeback")
    assert code == 0 and "balance 700" in out
    code, out, _ = run(tmp_path, capsys, "wallet", "balance", "alice@example.com")
    assert out.strip() == "alice@example.com: 700"
    code, out, _ = run(tmp_path, capsys, "wallet", "audit")
    assert code == 0 and "audit OK" in out and "topups 1000 + adjustments -300 = 700" in out


@pytest.mark.parametrize("argv,message", [
    (("wallet", "adjust", "alice@example.com", "-1", "--reason", "x"), "cannot go below zero"),
    (("wallet", "topup", "alice@example.com", "0"), "positive"),
    (("wallet", "topup", "alice@other.org", "5"), "not served here"),
    (("wallet", "refund", "abc"), "no red packet"),
    (("wallet", "packet", "abc"), "no red packet"),
])
def test_wallet_refusals_are_one_clear_line(tmp_path, capsys, argv, message):
    code, _, err = run(tmp_path, capsys, *argv)
    assert code == 1 and message in err and "Traceback" not in err


def test_wallet_adjust_requires_a_reason(tmp_path, capsys):
    with pytest.raises(SystemExit):
        run(tmp_path, capsys, "wallet", "adjust", "alice@example.com", "5")
