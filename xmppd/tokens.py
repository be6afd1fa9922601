"""Random tokens for the per-connection hot path, drawn from a buffer of ``os.urandom`` bytes.

Every login needs a few unpredictable values (two stream ids, a SCRAM server nonce, a session
id). Each is a slice of a 4 KiB buffer filled by one ``os.urandom`` call, not one system call
of its own; every byte is handed out once. The bytes are the kernel's CSPRNG output, as with
:mod:`secrets`: buffering changes where they wait, not how unpredictable they are. A forked
child drops the parent's buffer, so two processes never hand out the same bytes.
"""
from __future__ import annotations

import base64
import os

_REFILL = 4096
_buf = b""
_pos = 0


def _drop_buffer() -> None:
    global _buf, _pos
    _buf, _pos = b"", 0


os.register_at_fork(after_in_child=_drop_buffer)


def token_bytes(n: int) -> bytes:
    """``n`` random bytes, never handed out before."""
    global _buf, _pos
    if n > _REFILL // 4:
        return os.urandom(n)
    pos = _pos
    end = pos + n
    if end > len(_buf):
        _buf = os.urandom(_REFILL)
        pos, end = 0, n
    _pos = end
    return _buf[pos:end]


def token_hex(n: int) -> str:
    """``n`` random bytes as ``2n`` hex digits (like :func:`secrets.token_hex`)."""
    return token_bytes(n).hex()


def token_urlsafe(n: int) -> str:
    """``n`` random bytes in unpadded URL-safe base64 (like :func:`secrets.token_urlsafe`)."""
    return base64.urlsafe_b64encode(token_bytes(n)).rstrip(b"=").decode("ascii")
