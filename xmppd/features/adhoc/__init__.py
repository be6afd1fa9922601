"""XEP-0050: Ad-Hoc Commands, the framework every command (admin, rooms, extensions) uses.

``from xmppd.features.adhoc import Command, Stage, Result, Note, FormError`` and register with
``ctx.feature("adhoc").register(...)``; see docs/adhoc.md.
"""
from ...xml.forms import Field, Form, FormError, Option
from .command import NS, Command, Execution, MayRun, Note, Provider, Result, Stage
from .feature import Adhoc, AdhocOptions, bad_action, bad_sessionid

__all__ = [
    "NS", "Adhoc", "AdhocOptions", "Command", "Execution", "Field", "Form", "FormError", "MayRun",
    "Note", "Option", "Provider", "Result", "Stage", "bad_action", "bad_sessionid",
]
