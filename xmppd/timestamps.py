"""XEP-0082 date-times: the one place the server writes and reads them.

Every stamp is UTC with a ``Z``. The precisions are named, as each use needs its own:

* :func:`seconds` — ``2026-12-07T01:02:03Z`` (XEP-0215 expiry, ad-hoc ping)
* :func:`millis` — ``2026-12-07T01:02:03.456Z`` (XEP-0203 delay of offline and resumed
  messages, webhook times)
* :func:`micros` — ``2026-12-07T01:02:03.456789Z`` (MAM and MUC history, PEP items, red
  packets, customer service: clients order by them); :func:`micros_of_us` from integer
  microseconds, as MAM keeps its times
* :func:`auto` — whole seconds when the value is on a whole second, else microseconds (mute end
  times; :func:`optional` for the REST API's ``*_at`` fields that may be null)

``when`` is an aware datetime or seconds since the epoch. :func:`parse` reads one back.
"""
from __future__ import annotations

from datetime import UTC, datetime

_HEAD = "%Y-%m-%dT%H:%M:%S"


def _utc(when: datetime | float) -> datetime:
    return datetime.fromtimestamp(when, UTC) if isinstance(when, (int, float)) else when.astimezone(UTC)


def seconds(when: datetime | float) -> str:
    return _utc(when).strftime(_HEAD) + "Z"


def millis(when: datetime | float) -> str:
    t = _utc(when)
    return f"{t.strftime(_HEAD)}.{t.microsecond // 1000:03d}Z"


def micros(when: datetime | float) -> str:
    t = _utc(when)
    return f"{t.strftime(_HEAD)}.{t.microsecond:06d}Z"


def micros_of_us(us: int) -> str:
    """:func:`micros` of integer microseconds since the epoch, exact (no float rounding)."""
    return micros(datetime.fromtimestamp(us // 1_000_000, UTC).replace(microsecond=us % 1_000_000))


def auto(when: datetime | float) -> str:
    t = _utc(when)
    return micros(t) if t.microsecond else seconds(t)


def optional(when: datetime | None) -> str | None:
    """:func:`auto`, or None for None (JSON fields that may be null)."""
    return None if when is None else auto(when)


def parse(text: str) -> datetime:
    """An XEP-0082 date-time (``Z``, an offset, or none meaning UTC) as an aware UTC datetime;
    ValueError for anything else."""
    t = datetime.fromisoformat(text.strip())
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)
