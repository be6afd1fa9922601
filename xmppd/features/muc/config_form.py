"""XEP-0045 §10.2 room configuration (muc#roomconfig) on the XEP-0004 forms module (xmppd/xml/forms.py)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from lxml import etree

from ...errors import Condition, StanzaError
from ...xml.forms import Field, Form, FormError, Option
from .const import ROOMCONFIG

WHOIS = ("moderators", "anyone")
MAXUSERS_OPTIONS = ("5", "10", "20", "30", "50", "100", "200", "300", "500", "1000")


@dataclass(slots=True)
class RoomConfig:
    name: str = ""
    description: str = ""
    persistent: bool = False
    public: bool = True
    members_only: bool = False
    moderated: bool = False
    password: str = ""  # empty: no password
    max_occupants: int = 200
    whois: str = "moderators"  # who may see real JIDs: "moderators" (semi-anonymous) or "anyone"
    change_subject: bool = False  # participants may change the subject
    allow_invites: bool = False  # participants may invite (members-only rooms)
    history_length: int = 20
    allow_subscription: bool = True  # MUC/Sub
    allow_visitor_nickchange: bool = True  # visitors may change their nick (ejabberd's option of the same name)
    allow_visitor_status: bool = True  # the room relays visitors' status text (ejabberd's option of the same name)
    extra: dict[str, list[str]] = field(default_factory=dict)  # fields added by extensions

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "RoomConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def copy(self) -> "RoomConfig":
        return RoomConfig.from_json({**self.to_json(), "extra": dict(self.extra)})


P = "muc#roomconfig_"


def _b(v: bool) -> tuple[str, ...]:
    return ("1" if v else "0",)


def config_form(cfg: RoomConfig, max_occupants_limit: int, extra: list[Field] = ()) -> Form:  # type: ignore[assignment]
    """The owner's form with the room's current values (§10.2), plus fields extensions add."""
    opts = [o for o in MAXUSERS_OPTIONS if int(o) <= max_occupants_limit]
    if str(max_occupants_limit) not in opts:
        opts.append(str(max_occupants_limit))
    if str(cfg.max_occupants) not in opts:
        opts.append(str(cfg.max_occupants))
    fields = [
        Field("FORM_TYPE", "hidden", values=(ROOMCONFIG,)),
        Field(P + "roomname", "text-single", "Room name", values=(cfg.name,)),
        Field(P + "roomdesc", "text-single", "Description", values=(cfg.description,)),
        Field(P + "persistentroom", "boolean", "Make the room persistent", values=_b(cfg.persistent)),
        Field(P + "publicroom", "boolean", "List the room in the directory", values=_b(cfg.public)),
        Field(P + "membersonly", "boolean", "Members only", values=_b(cfg.members_only)),
        Field(P + "moderatedroom", "boolean", "Moderated (visitors need voice)", values=_b(cfg.moderated)),
        Field(P + "passwordprotectedroom", "boolean", "Password required to enter", values=_b(bool(cfg.password))),
        Field(P + "roomsecret", "text-private", "Password", values=(cfg.password,)),
        Field(P + "maxusers", "list-single", "Maximum occupants", values=(str(cfg.max_occupants),), options=tuple(Option(o) for o in opts)),
        Field(P + "whois", "list-single", "Who may discover real JIDs", values=(cfg.whois,),
              options=(Option("moderators", "Moderators only"), Option("anyone", "Anyone"))),
        Field(P + "changesubject", "boolean", "Participants may change the subject", values=_b(cfg.change_subject)),
        Field(P + "allowinvites", "boolean", "Participants may invite others", values=_b(cfg.allow_invites)),
        Field("muc#maxhistoryfetch", "text-single", "Messages of history sent on join", values=(str(cfg.history_length),)),
        Field(P + "allow_subscription", "boolean", "Allow MUC/Sub subscriptions", values=_b(cfg.allow_subscription)),
        Field(P + "allowvisitornickchange", "boolean", "Allow visitors to change nickname", values=_b(cfg.allow_visitor_nickchange)),
        Field(P + "allowvisitorstatus", "boolean", "Allow visitors to send status text in presence updates",
              values=_b(cfg.allow_visitor_status)),
    ]
    for f in extra:
        if f.var in cfg.extra:
            f = dataclasses.replace(f, values=tuple(cfg.extra[f.var]))
        fields.append(f)
    return Form("form", title="Room configuration", fields=tuple(fields))


def apply_submission(cfg: RoomConfig, asked: Form, x: etree._Element, max_history: int, extra_vars: set[str]) -> RoomConfig:
    """A new config from a submitted form; a malformed form is bad-request, a bad value not-acceptable.

    Fields the submitter leaves out keep their current value (XEP-0045 §10.2 lets clients send
    only what changed).
    """
    submitted = Form.from_element(x)
    sent = {f.var for f in submitted.fields if f.var}
    try:
        values = asked.validate(submitted)
    except FormError as exc:
        raise StanzaError(Condition.NOT_ACCEPTABLE, exc.text) from None
    new = cfg.copy()

    def given(var: str) -> bool:
        return var in sent

    if given(P + "roomname"):
        new.name = values[P + "roomname"] or ""
    if given(P + "roomdesc"):
        new.description = values[P + "roomdesc"] or ""
    for var, attr in (("persistentroom", "persistent"), ("publicroom", "public"), ("membersonly", "members_only"),
                      ("moderatedroom", "moderated"), ("changesubject", "change_subject"),
                      ("allowinvites", "allow_invites"), ("allow_subscription", "allow_subscription"),
                      ("allowvisitornickchange", "allow_visitor_nickchange"), ("allowvisitorstatus", "allow_visitor_status")):
        if given(P + var):
            setattr(new, attr, bool(values[P + var]))
    if given(P + "maxusers"):
        new.max_occupants = int(values[P + "maxusers"])
    if given(P + "whois"):
        new.whois = values[P + "whois"]
    if given("muc#maxhistoryfetch"):
        raw = values["muc#maxhistoryfetch"] or ""
        if not raw.isdigit() or int(raw) > max_history:
            raise StanzaError(Condition.NOT_ACCEPTABLE, f"muc#maxhistoryfetch must be a number from 0 to {max_history}")
        new.history_length = int(raw)
    if given(P + "roomsecret"):
        new.password = values[P + "roomsecret"] or ""
    if given(P + "passwordprotectedroom"):
        if not values[P + "passwordprotectedroom"]:
            new.password = ""
        elif not new.password:
            raise StanzaError(Condition.NOT_ACCEPTABLE, "a password-protected room needs muc#roomconfig_roomsecret")
    for var in extra_vars:
        if given(var):
            v = values[var]
            new.extra[var] = [str(i) for i in v] if isinstance(v, list) else ([] if v is None else [("1" if v else "0") if isinstance(v, bool) else str(v)])
    return new
