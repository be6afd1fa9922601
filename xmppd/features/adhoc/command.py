"""XEP-0050: Ad-Hoc Commands: what an extension declares (commands, stages, results, notes).

A command is a node, a name, who may run it, zero or more stages (each a data form to fill
in) and a handler that runs when the last stage is completed::

    Command(node="urn:xmppd:cmd:mute", name="Mute a member",
            may_run=is_moderator, form=MUTE_FORM, handler=mute)

``form=`` is the one-stage shortcut of ``stages=(Stage(MUTE_FORM),)``; no form at all makes a
command that runs at once (``get-online-users-num``). Stage forms may be functions of the
:class:`Execution` so far (a later form depending on earlier answers, a prefilled form).
"""
from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ...jid import JID
from ...xml.forms import Form, FormError

NS = "http://jabber.org/protocol/commands"

# (requester full JID, target JID the command is on) -> may the requester run it?
MayRun = Callable[[JID, JID], bool | Awaitable[bool]]
FormSource = Form | Callable[["Execution"], Form | Awaitable[Form]]
# Runs when a stage's form validated: raise FormError to show the stage again with the problem.
StageCheck = Callable[["Execution", dict[str, Any]], None | Awaitable[None]]
Handler = Callable[["Execution"], Awaitable["Result | Note | str | None"]]
# (requester, target) -> commands on that target, for targets decided at run time (rooms)
Provider = Callable[[JID, JID], Iterable["Command"] | Awaitable[Iterable["Command"]]]

NOTE_TYPES = ("info", "warn", "error")


@dataclass(frozen=True, slots=True)
class Note:
    text: str
    type: str = "info"

    def __post_init__(self) -> None:
        if self.type not in NOTE_TYPES:
            raise ValueError(f"note type must be one of {NOTE_TYPES}, not {self.type!r}")


@dataclass(frozen=True, slots=True)
class Result:
    """What a completed command answers: notes and/or a ``type='result'`` form."""

    notes: tuple[Note, ...] = ()
    form: Form | None = None

    @classmethod
    def of(cls, value: "Result | Note | str | None") -> "Result":
        if value is None:
            return cls()
        if isinstance(value, Result):
            return value
        if isinstance(value, Note):
            return cls((value,))
        if isinstance(value, str):
            return cls((Note(value),))
        raise TypeError(f"a command handler returned {type(value).__name__}, not Result, Note, str or None")


@dataclass(frozen=True, slots=True)
class Stage:
    form: FormSource
    check: StageCheck | None = None


@dataclass(frozen=True)
class Command:
    """One command. ``admin_only``: server admins only; ``may_run``: a scoped role check.

    Both are checked by the server on every request of an execution (listing and running);
    with neither, anyone who can address the target may run the command.
    """

    node: str
    name: str
    handler: Handler
    form: FormSource | None = None
    stages: tuple[Stage, ...] = ()
    admin_only: bool = False
    may_run: MayRun | None = None

    def __post_init__(self) -> None:
        if not self.node or not self.name:
            raise ValueError("a command needs a node and a name")
        if self.form is not None:
            if self.stages:
                raise ValueError(f"command {self.node}: give form= or stages=, not both")
            object.__setattr__(self, "stages", (Stage(self.form),))
        else:
            object.__setattr__(self, "stages", tuple(self.stages))


@dataclass(slots=True)
class Execution:
    """One run of a command: who runs it, on which JID, and the answers so far."""

    command: Command
    requester: JID
    target: JID
    sessionid: str
    stage: int = 0
    values: dict[str, Any] = field(default_factory=dict)  # typed values of every stage so far
    answers: list[dict[str, Any]] = field(default_factory=list)  # per stage, for 'prev'
    data: dict[str, Any] = field(default_factory=dict)  # the handlers' own scratch space

    @property
    def last_stage(self) -> bool:
        return self.stage >= len(self.command.stages) - 1


async def maybe_await(value: Any) -> Any:
    if inspect.isawaitable(value):
        return await value
    return value


__all__ = [
    "NS", "Command", "Execution", "FormError", "MayRun", "Note", "Provider", "Result", "Stage", "maybe_await",
]
