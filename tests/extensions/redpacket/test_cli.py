"""Red packets (urn:xmppd:redpacket:0): xmppctl wallet verbs on the embedded database."""

from __future__ import annotations

import pytest

from xmppd.cli import xmppctl_main

PASSWORD = "correct horse battery"


def run(tmp_path, capsys, *argv: str) -> tuple[int, str, str]:
    code = xmppctl_main(["--set", f"server.data_dir={tmp_path.as_posix()}", "--set", "server.domain=example.com", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def alice(tmp_path, capsys):
    assert run(tmp_path, capsys, "user", "add", "alice@example.com", "--password", PASSWORD)[0] == 0
    return "alice@example.com"


def test_wallet_topup_adjust_balance_and_audit_in_display_units(tmp_path, capsys, alice):
    code, out, _ = run(tmp_path, capsys, "wallet", "topup", alice, "10")
    assert code == 0 and "+10.00 CNY, balance 10.00 CNY" in out
    code, out, _ = run(tmp_path, capsys, "wallet", "adjust", alice, "-3.01", "--reason", "chargeback")
    assert code == 0 and "-3.01 CNY, balance 6.99 CNY" in out
    code, out, _ = run(tmp_path, capsys, "wallet", "balance", alice)
    assert out.strip() == "alice@example.com: 6.99 CNY"
    code, out, _ = run(tmp_path, capsys, "wallet", "audit")
    # The audit report is the ledger's own text, in minor units (the same as the ad-hoc audit).
    assert code == 0 and "audit OK" in out and "topups 1000 + adjustments -301 = 699" in out


def test_wallet_amount_notation_follows_the_configured_precision(tmp_path, capsys, alice):
    code, out, _ = run(tmp_path, capsys, "--set", "redpacket.precision=0", "--set", "redpacket.currency=JPY", "wallet", "topup", alice, "500")
    assert code == 0 and "+500 JPY, balance 500 JPY" in out
    code, _, err = run(tmp_path, capsys, "--set", "redpacket.precision=0", "wallet", "topup", alice, "1.5")
    assert code == 1 and "a whole number" in err


def test_wallet_refuses_accounts_that_do_not_exist(tmp_path, capsys, alice):
    for argv in (("topup", "nobody@example.com", "100"), ("adjust", "nobody@example.com", "1", "--reason", "x")):
        code, out, err = run(tmp_path, capsys, "wallet", *argv)
        assert code == 1 and "there is no account nobody@example.com" in err, (argv, err)
    code, out, err = run(tmp_path, capsys, "wallet", "balance", "nobody@example.com")
    assert code == 0 and out.strip() == "nobody@example.com: 0.00 CNY" and "note: there is no account" in err
    code, out, _ = run(tmp_path, capsys, "wallet", "audit")
    assert code == 0 and "topups 0" in out  # nothing was credited to the name nobody holds


@pytest.mark.parametrize("argv,message", [
    (("wallet", "adjust", "alice@example.com", "-1", "--reason", "x"), "cannot go below zero"),
    (("wallet", "topup", "alice@example.com", "0"), "must not be zero"),
    (("wallet", "topup", "alice@example.com", "-5"), "without a sign"),
    (("wallet", "topup", "alice@example.com", "12.345"), "at most 2 digits"),
    (("wallet", "topup", "alice@example.com", "ten"), "is not an amount"),
    (("wallet", "topup", "alice@other.org", "5"), "not served here"),
    (("wallet", "refund", "abc"), "no red packet"),
    (("wallet", "packet", "abc"), "no red packet"),
])
def test_wallet_refusals_are_one_clear_line(tmp_path, capsys, alice, argv, message):
    code, _, err = run(tmp_path, capsys, *argv)
    assert code == 1 and message in err and "Traceback" not in err


def test_wallet_adjust_requires_a_reason(tmp_path, capsys):
    with pytest.raises(SystemExit):
        run(tmp_path, capsys, "wallet", "adjust", "alice@example.com", "5")


def test_wallet_reading_verbs_create_no_database(tmp_path, capsys):
    for argv in (("balance", "alice@example.com"), ("audit",), ("packet", "abc")):
        code, _, err = run(tmp_path, capsys, "wallet", *argv)
        assert code == 1 and "there is no database at" in err, err
    assert not (tmp_path / "xmppd.db").exists()
