"""Red packets (urn:xmppd:redpacket:0): amounts as people write and read them.

Storage, the ledger and the protocol carry integer minor units (fen). People — in ad-hoc forms
and on xmppctl's command line alike — write display units (``12.34``) and read them back with the
currency; the configured ``redpacket.precision`` converts between the two, never through floating
point. One notation everywhere: the same text means the same money through every door.
"""

from __future__ import annotations

import re

MAX_DIGITS = 12  # integer digits of an amount: far beyond any wallet, well inside a BIGINT

_AMOUNT = re.compile(r"([+-]?)(\d+)(?:\.(\d+))?")


def parse_amount(text: str, precision: int, *, signed: bool = False) -> int:
    """``'12.34'`` → 1234 minor units (precision 2); ValueError with the reason otherwise."""
    m = _AMOUNT.fullmatch(text.strip().replace(",", "")) if text else None
    if m is None:
        unit = "1" if precision == 0 else "12." + "3456"[:precision]
        raise ValueError(f"{text!r} is not an amount (write it like {'-' if signed else ''}{unit})")
    sign, whole, frac = m.group(1), m.group(2), m.group(3) or ""
    if sign and not signed:
        raise ValueError("give a positive amount, without a sign")
    if len(frac) > precision:
        raise ValueError(f"at most {precision} digits after the decimal point" if precision else "a whole number, no decimals")
    if len(whole.lstrip("0")) > MAX_DIGITS:
        raise ValueError("that amount is too large")
    minor = int(whole) * 10**precision + (int(frac.ljust(precision, "0")) if precision else 0)
    if minor == 0:
        raise ValueError("the amount must not be zero")
    return -minor if sign == "-" else minor


def format_amount(amount: int, precision: int, currency: str = "") -> str:
    """1234 minor units → ``'12.34 CNY'`` (precision 2); negative amounts keep their sign."""
    sign, amount = ("-", -amount) if amount < 0 else ("", amount)
    text = str(amount) if precision == 0 else f"{amount // 10**precision}.{amount % 10**precision:0{precision}d}"
    return f"{sign}{text} {currency}" if currency else f"{sign}{text}"
