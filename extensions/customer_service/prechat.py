"""Pre-chat forms (docs/customer-service.md §4.1): what a queue asks a visitor before the chat
starts, as an XEP-0004 data form, after Openfire Fastpath's workgroup form.

A queue's form is defined by its admins (a ``<prechat/>`` element in ``<queue/>``, or JSON
through the REST API and the ``queue`` ad-hoc command) and stored as JSON with the queue; a
visitor fetches it as a ``jabber:x:data`` form and submits it with the chat request
(``<join/>``). The answers are checked here (required fields, options), the options chosen set
the skills the chat needs, and they are kept with the chat as JSON. Pure: no I/O.
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from lxml import etree

from xmppd.errors import Condition, StanzaError
from xmppd.xml import ns
from xmppd.xml.forms import Field, Form, FormError, Option

from .protocol import CsError, q

FORM_TYPE = "urn:xmppd:cs:0#prechat"
TYPES = ("text-single", "text-multi", "list-single", "boolean")
VAR = re.compile(r"^[a-z][a-z0-9_.-]{0,31}$")
SKILL = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,31}$")
MAX_FIELDS = 20
MAX_OPTIONS = 50
MAX_LABEL = 191
MAX_ANSWER = {"text-single": 1000, "text-multi": 4000}  # characters of one answer
MAX_JSON = 60000  # characters of a stored definition (a Text column)
# What XML can carry (no control characters but tab and newlines, no surrogates): labels become attributes.
XML_SAFE = "^[^\\u0000-\\u0008\\u000B\\u000C\\u000E-\\u001F\\uD800-\\uDFFF\\uFFFE\\uFFFF]*$"
_XML_SAFE = re.compile(XML_SAFE)  # the same pattern as the JSON Schema
LABEL = {"type": "string", "maxLength": MAX_LABEL, "pattern": XML_SAFE}

#: JSON Schema of a definition (REST API; the same rules are checked by :func:`definition`).
SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["fields"],
    "properties": {
        "required": {"type": "boolean"},
        "title": LABEL,
        "fields": {
            "type": "array",
            "maxItems": MAX_FIELDS,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["var"],
                "properties": {
                    "var": {"type": "string", "pattern": VAR.pattern},
                    "type": {"type": "string", "enum": list(TYPES)},
                    "label": LABEL,
                    "required": {"type": "boolean"},
                    "options": {
                        "type": "array",
                        "maxItems": MAX_OPTIONS,
                        "items": {
                            "type": "object",
                            "additionalProperties": False,
                            "required": ["value"],
                            "properties": {
                                "value": {"type": "string", "pattern": VAR.pattern},
                                "label": LABEL,
                                "skills": {"type": "string", "maxLength": 191},
                            },
                        },
                    },
                },
            },
        },
    },
}


@dataclass(frozen=True, slots=True)
class Choice:
    value: str
    label: str = ""
    skills: str = ""  # space-separated skills this choice adds to the chat's needs


@dataclass(frozen=True, slots=True)
class Question:
    var: str
    type: str = "text-single"
    label: str = ""
    required: bool = False
    options: tuple[Choice, ...] = ()


@dataclass(frozen=True, slots=True)
class Prechat:
    fields: tuple[Question, ...]
    required: bool = False  # a chat may start only with the form submitted
    title: str = ""


@dataclass(frozen=True, slots=True)
class Answer:
    var: str
    label: str
    value: str  # as shown: the option's label for a list, "yes"/"no" for a boolean


def _bad(detail: str) -> CsError:
    return CsError(Condition.BAD_REQUEST, "prechat_definition", detail=detail)


def _skills(text: str) -> str:
    names = sorted(set(text.lower().split()))
    if len(names) > 16 or not all(SKILL.match(n) for n in names) or len(" ".join(names)) > 191:
        raise _bad(f"skills {text!r}")
    return " ".join(names)


def _label(value: object, what: str) -> str:
    text = str(value or "")
    if len(text) > MAX_LABEL or not _XML_SAFE.match(text):
        raise _bad(f"{what}: at most {MAX_LABEL} characters that XML can carry")
    return text


def definition(data: Mapping[str, Any] | None) -> Prechat | None:
    """A checked definition from its JSON form (None or no fields: no form)."""
    if data is None:
        return None
    if not isinstance(data, Mapping) or not isinstance(data.get("fields", []), list):
        raise _bad("an object with a list of fields")
    raw = data.get("fields") or []
    if len(raw) > MAX_FIELDS:
        raise _bad(f"at most {MAX_FIELDS} fields")
    seen: set[str] = set()
    fields = []
    for f in raw:
        if not isinstance(f, Mapping):
            raise _bad("a field is an object")
        var, typ = str(f.get("var", "")), str(f.get("type", "text-single"))
        if not VAR.match(var) or var in seen:
            raise _bad(f"field name {var!r} (lower-case letters, digits, _.-; once each)")
        if typ not in TYPES:
            raise _bad(f"field type {typ!r} (one of {', '.join(TYPES)})")
        seen.add(var)
        options = []
        for o in f.get("options") or []:
            if not isinstance(o, Mapping) or not VAR.match(str(o.get("value", ""))):
                raise _bad(f"an option of {var} (value: lower-case letters, digits, _.-)")
            options.append(Choice(str(o["value"]), _label(o.get("label"), f"the label of {o['value']}"), _skills(str(o.get("skills") or ""))))
        if (typ == "list-single") != bool(options) or len(options) > MAX_OPTIONS or len({o.value for o in options}) != len(options):
            raise _bad(f"options of {var}: a list-single field has 1-{MAX_OPTIONS} distinct options, other fields none")
        fields.append(Question(var, typ, _label(f.get("label"), f"the label of {var}"), bool(f.get("required", False)), tuple(options)))
    if not fields:
        return None
    return Prechat(tuple(fields), bool(data.get("required", False)), _label(data.get("title"), "the title"))


def as_json(p: Prechat | None) -> dict[str, Any] | None:
    if p is None:
        return None
    return {
        "required": p.required,
        "title": p.title,
        "fields": [
            {"var": f.var, "type": f.type, "label": f.label, "required": f.required,
             **({"options": [{"value": o.value, "label": o.label, "skills": o.skills} for o in f.options]} if f.options else {})}
            for f in p.fields
        ],
    }


def dumps(p: Prechat | None) -> str | None:
    """The stored text of a definition (None: no form)."""
    if p is None:
        return None
    text = json.dumps(as_json(p), ensure_ascii=False, separators=(",", ":"))
    if len(text) > MAX_JSON:
        raise _bad(f"at most {MAX_JSON} characters in all")
    return text


def loads(text: str | None) -> Prechat | None:
    return definition(json.loads(text)) if text else None


def parse_json_text(text: str) -> Prechat | None:
    """A definition typed as JSON (the ad-hoc ``queue`` command); empty: no form."""
    if not text.strip():
        return None
    try:
        data = json.loads(text)
    except ValueError:
        raise _bad("the form must be JSON") from None
    return definition(data)


def from_element(el: etree._Element) -> Prechat | None:
    """``<prechat required title><field var type label required><option value label skills/>
    </field></prechat>`` (no fields: no form)."""
    fields = []
    for f in el.findall(q("field")):
        fields.append({
            "var": f.get("var", ""), "type": f.get("type", "text-single"), "label": f.get("label", ""),
            "required": f.get("required") in ("true", "1"),
            "options": [{"value": o.get("value", ""), "label": o.get("label", ""), "skills": o.get("skills", "")} for o in f.findall(q("option"))],
        })
    return definition({"required": el.get("required") in ("true", "1"), "title": el.get("title", ""), "fields": fields})


def definition_element(p: Prechat) -> etree._Element:
    """The admin's view of a definition, inside a full ``<queue/>``."""
    el = etree.Element(q("prechat"), {"required": "true" if p.required else "false"})
    if p.title:
        el.set("title", p.title)
    for f in p.fields:
        fe = etree.SubElement(el, q("field"), {"var": f.var, "type": f.type})
        if f.label:
            fe.set("label", f.label)
        if f.required:
            fe.set("required", "true")
        for o in f.options:
            oe = etree.SubElement(fe, q("option"), {"value": o.value})
            if o.label:
                oe.set("label", o.label)
            if o.skills:
                oe.set("skills", o.skills)
    return el


def data_form(p: Prechat, title: str = "") -> Form:
    """What the visitor fills in: a XEP-0004 form with FORM_TYPE ``urn:xmppd:cs:0#prechat``."""
    fields = [Field("FORM_TYPE", "hidden", values=(FORM_TYPE,))]
    for f in p.fields:
        fields.append(Field(f.var, f.type, f.label or f.var, required=f.required,
                            options=tuple(Option(o.value, o.label or o.value) for o in f.options)))
    return Form("form", title=p.title or title or None, fields=tuple(fields))


def submission(p: Prechat | None, x: etree._Element | None, base_skills: str = "") -> tuple[list[Answer], str]:
    """The visitor's answers, checked, and the skills the chat needs: the queue's
    (``base_skills``) and those of each option chosen. Refused with ``not-acceptable`` naming a required field left empty, an
    option that is not offered or an answer too long; ``bad-request`` for a malformed form or a
    field the form does not ask. No form: no answers (a submitted one is refused)."""
    if x is None:
        if p is not None and p.required:
            raise CsError(Condition.NOT_ACCEPTABLE, "prechat_required")
        return [], base_skills
    if p is None:
        raise CsError(Condition.BAD_REQUEST, "prechat_none")
    try:
        sent = Form.from_element(x)
    except StanzaError as err:
        raise CsError(Condition.BAD_REQUEST, "prechat_invalid", reason=err.text or "") from None
    if sent.form_type not in (None, FORM_TYPE):
        raise CsError(Condition.BAD_REQUEST, "prechat_invalid", reason=f"FORM_TYPE {sent.form_type}")
    asked = {f.var: f for f in p.fields}
    for f in sent.fields:
        if f.var and f.var != "FORM_TYPE" and f.var not in asked:
            raise CsError(Condition.BAD_REQUEST, "prechat_unknown", var=f.var)
    for f in p.fields:  # told in the visitor's language, before the generic checks
        got = sent.field(f.var)
        if f.required and (got is None or all(not v.strip() for v in got.values)):
            raise CsError(Condition.NOT_ACCEPTABLE, "prechat_missing", field=f.label or f.var)
    try:
        values = data_form(p).validate(sent)
    except FormError as err:
        raise CsError(Condition.NOT_ACCEPTABLE, "prechat_invalid", reason=err.text) from None
    out = []
    skills = set(base_skills.split())
    for f in p.fields:
        v = values.get(f.var)
        if v is None or v == "" or v == []:
            continue
        if f.type == "boolean":
            shown = "yes" if v else "no"
        elif f.type == "list-single":
            choice = next(o for o in f.options if o.value == v)  # validate() checked the options
            shown = choice.label or choice.value
            skills.update(choice.skills.split())
        else:
            shown = "\n".join(v) if isinstance(v, list) else str(v)
            if len(shown) > MAX_ANSWER[f.type]:
                raise CsError(Condition.NOT_ACCEPTABLE, "prechat_long", field=f.label or f.var, most=MAX_ANSWER[f.type])
        out.append(Answer(f.var, f.label or f.var, shown.strip()))
    return out, " ".join(sorted(skills))


def answers_dumps(answers: Iterable[Answer]) -> str | None:
    rows = [{"var": a.var, "label": a.label, "value": a.value} for a in answers]
    return json.dumps(rows, ensure_ascii=False, separators=(",", ":")) if rows else None


def answers_loads(text: str | None) -> list[Answer]:
    if not text:
        return []
    return [Answer(str(r["var"]), str(r["label"]), str(r["value"])) for r in json.loads(text)]


def answers_element(answers: Iterable[Answer]) -> etree._Element | None:
    """``<answers><answer var label>value</answer>…</answers>`` (in an offer, an assignment, a session)."""
    rows = list(answers)
    if not rows:
        return None
    el = etree.Element(q("answers"))
    for a in rows:
        etree.SubElement(el, q("answer"), {"var": a.var, "label": a.label}).text = a.value
    return el


def answers_text(answers: Iterable[Answer]) -> str:
    """The answers as lines for a body or a ticket (``Topic: Billing``)."""
    return "\n".join(f"{a.label}: {a.value}" for a in answers)


def x_of(parent: etree._Element) -> etree._Element | None:
    return parent.find(f"{{{ns.DATA_FORMS}}}x")
