"""RFC 6121 §2-3: rosters (with XEP-0237 versioning) and the presence subscription state machine.

``feature.py`` is the roster feature and its public API, ``repository.py`` the storage,
``states.py`` the pure subscription state machine of RFC 6121 Appendix A, ``migrations/`` the
schema history. Presence itself (RFC 6121 §4) is ``xmppd/features/presence.py``.
"""
from .feature import Roster
from .repository import RosterItem

__all__ = ["Roster", "RosterItem"]
