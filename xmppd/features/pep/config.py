"""XEP-0060 node configuration for PEP nodes: the fields, the form, publish-options.

A node's configuration is a plain dict (stored as JSON) of these fields:

=================================  ==================================================
``access_model``                   open, presence (default), roster, whitelist
``roster_groups_allowed``          roster groups that may read when access is roster
``persist_items``                  keep published items (default true)
``max_items``                      items kept, 1..``[pep] max_items`` (``max``: that bound)
``send_last_published_item``       never, on_sub, on_sub_and_presence (default)
``notify_retract``                 notify retractions (default true)
``notify_delete``                  notify the deletion of the node (default true)
``deliver_payloads``               notifications carry the payload (default true)
``title``                          free text
=================================  ==================================================
"""
from __future__ import annotations

from typing import Any

from lxml import etree

from ...errors import Condition, StanzaError
from ...xml.forms import Field, Form, FormError, Option
from .const import CONFIG_FORM_TYPE, PUBLISH_OPTIONS_FORM_TYPE, pubsub_error

ACCESS_MODELS = ("open", "presence", "roster", "whitelist")
SEND_LAST = ("never", "on_sub", "on_sub_and_presence")
_BOOLS = ("persist_items", "notify_retract", "notify_delete", "deliver_payloads")
_P = "pubsub#"

#: Fields the server understands (form var without the ``pubsub#`` prefix).
FIELDS = ("access_model", "roster_groups_allowed", *_BOOLS, "max_items", "send_last_published_item", "title")


def default_config() -> dict[str, Any]:
    return {
        "access_model": "presence",
        "roster_groups_allowed": [],
        "persist_items": True,
        "notify_retract": True,
        "notify_delete": True,
        "deliver_payloads": True,
        "max_items": 1,
        "send_last_published_item": "on_sub_and_presence",
        "title": "",
    }


def config_form(config: dict[str, Any], max_items: int, *, type: str = "form") -> Form:
    cur = {**default_config(), **config}
    fields = [
        Field("FORM_TYPE", "hidden", values=(CONFIG_FORM_TYPE,)),
        Field(_P + "title", "text-single", label="A friendly name for the node", values=(cur["title"],) if cur["title"] else ()),
        Field(_P + "access_model", "list-single", label="Who may subscribe and retrieve items",
              values=(cur["access_model"],), options=tuple(Option(m) for m in ACCESS_MODELS)),
        Field(_P + "roster_groups_allowed", "list-multi", label="Roster groups allowed to subscribe",
              values=tuple(cur["roster_groups_allowed"])),
        Field(_P + "persist_items", "boolean", label="Persist items to storage", values=("1" if cur["persist_items"] else "0",)),
        Field(_P + "max_items", "text-single", label=f"Max number of items to persist (1 to {max_items}, or max)",
              values=(str(cur["max_items"]),)),
        Field(_P + "send_last_published_item", "list-single", label="When to send the last published item",
              values=(cur["send_last_published_item"],), options=tuple(Option(m) for m in SEND_LAST)),
        Field(_P + "notify_retract", "boolean", label="Notify subscribers when items are removed",
              values=("1" if cur["notify_retract"] else "0",)),
        Field(_P + "notify_delete", "boolean", label="Notify subscribers when the node is deleted",
              values=("1" if cur["notify_delete"] else "0",)),
        Field(_P + "deliver_payloads", "boolean", label="Deliver payloads with event notifications",
              values=("1" if cur["deliver_payloads"] else "0",)),
    ]
    return Form(type, fields=tuple(fields))


def _bool(var: str, values: tuple[str, ...]) -> bool:
    v = values[0].strip().lower() if values else ""
    if v in ("1", "true"):
        return True
    if v in ("0", "false"):
        return False
    raise FormError(var, f"{var} is a boolean (1, 0, true or false), not {v!r}")


def parse_value(name: str, values: tuple[str, ...], max_items: int) -> Any:
    """The typed value of field ``pubsub#<name>``, or ``FormError``."""
    var = _P + name
    if name in _BOOLS:
        return _bool(var, values)
    if name == "roster_groups_allowed":
        return [v for v in values if v]
    v = values[0].strip() if values else ""
    if name == "access_model":
        if v not in ACCESS_MODELS:
            raise FormError(var, f"access model {v!r} is not supported ({', '.join(ACCESS_MODELS)})")
        return v
    if name == "send_last_published_item":
        if v not in SEND_LAST:
            raise FormError(var, f"{v!r} is not one of {', '.join(SEND_LAST)}")
        return v
    if name == "max_items":
        if v == "max":
            return max_items
        if not v.isdigit() or not 1 <= int(v) <= max_items:
            raise FormError(var, f"max_items is 1 to {max_items} or max, not {v!r}")
        return int(v)
    return v  # title


def submitted(form: Form, max_items: int) -> dict[str, Any]:
    """The known fields a submitted form sets, typed; unknown fields are an error."""
    out: dict[str, Any] = {}
    for f in form.fields:
        if f.var is None or f.var == "FORM_TYPE":
            continue
        if not f.var.startswith(_P) or f.var[len(_P):] not in FIELDS:
            raise FormError(f.var, f"the field {f.var} is not supported")
        name = f.var[len(_P):]
        out[name] = parse_value(name, f.values, max_items)
    return out


def configure(x: etree._Element, current: dict[str, Any], max_items: int) -> dict[str, Any]:
    """A node configuration submitted in ``x`` (``pubsub#node_config``) applied over ``current``."""
    form = Form.from_element(x)
    if form.type == "cancel":
        return current
    if form.type != "submit":
        raise StanzaError(Condition.BAD_REQUEST, "submit the configuration form (type='submit')")
    if form.form_type not in (None, CONFIG_FORM_TYPE):
        raise StanzaError(Condition.BAD_REQUEST, f"FORM_TYPE is {CONFIG_FORM_TYPE}")
    try:
        return {**current, **submitted(form, max_items)}
    except FormError as exc:
        raise StanzaError(Condition.NOT_ACCEPTABLE, exc.text) from None


def publish_options(x: etree._Element | None, max_items: int) -> dict[str, Any]:
    """XEP-0060 §7.1.5: the preconditions of a publish (empty: none)."""
    if x is None:
        return {}
    form = Form.from_element(x)
    if form.form_type != PUBLISH_OPTIONS_FORM_TYPE:
        raise StanzaError(Condition.BAD_REQUEST, f"publish-options need FORM_TYPE {PUBLISH_OPTIONS_FORM_TYPE}")
    try:
        return submitted(form, max_items)
    except FormError as exc:
        raise StanzaError(Condition.CONFLICT, exc.text, app=pubsub_error("precondition-not-met")) from None


def check_preconditions(config: dict[str, Any], options: dict[str, Any]) -> None:
    """Every publish-option must equal the node's configuration (else precondition-not-met)."""
    cur = {**default_config(), **config}
    for name, value in options.items():
        have = cur.get(name)
        if name == "roster_groups_allowed":
            same = sorted(have or []) == sorted(value)
        else:
            same = have == value
        if not same:
            raise StanzaError(
                Condition.CONFLICT, f"the node's {name} is {have!r}, not {value!r}",
                app=pubsub_error("precondition-not-met"),
            )
