"""XEP-0004: Data Forms: typed fields, parsing, validation and building of ``jabber:x:data``.

A :class:`Form` describes what is asked (``type='form'``) or what is answered (``'result'``);
``Form.from_element`` reads any form off the wire (raising ``bad-request`` on malformed XML),
and ``form.validate(submitted)`` checks a ``type='submit'`` form against the form that was
asked, returning typed values (``str``, ``bool``, ``list[str]``, ``JID``, ``list[JID]``) or
raising :class:`FormError` that names the field and the problem.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from lxml import etree

from ..errors import Condition, StanzaError
from ..jid import JID, JIDError
from . import ns

X = f"{{{ns.DATA_FORMS}}}x"
_D = f"{{{ns.DATA_FORMS}}}"

FORM_TYPES = frozenset(("form", "submit", "cancel", "result"))
FIELD_TYPES = frozenset(
    (
        "boolean", "fixed", "hidden", "jid-multi", "jid-single", "list-multi",
        "list-single", "text-multi", "text-private", "text-single",
    )
)
MULTI_TYPES = frozenset(("jid-multi", "list-multi", "text-multi"))
_TRUE = frozenset(("1", "true"))
_FALSE = frozenset(("0", "false"))
# Limits on what a submitted form may carry (a form is small; anything bigger is hostile).
MAX_FIELDS = 256
MAX_VALUES = 1024


class FormError(ValueError):
    """A submitted value is missing or wrong; ``var`` names the field (None: the whole form)."""

    def __init__(self, var: str | None, text: str) -> None:
        super().__init__(text)
        self.var = var
        self.text = text


Validator = Callable[[Any], None]  # raises ValueError with the reason


@dataclass(frozen=True, slots=True)
class Option:
    value: str
    label: str | None = None


@dataclass(frozen=True, slots=True)
class Field:
    """One field. ``values`` are the raw strings; use :meth:`value` for the typed value."""

    var: str | None
    type: str = "text-single"
    label: str | None = None
    desc: str | None = None
    required: bool = False
    values: tuple[str, ...] = ()
    options: tuple[Option, ...] = ()
    validate: Validator | None = dataclasses.field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.type not in FIELD_TYPES:
            raise ValueError(f"unknown field type {self.type!r}")
        if self.var is None and self.type != "fixed":
            raise ValueError(f"a {self.type} field needs a var")
        if self.type not in MULTI_TYPES and len(self.values) > 1:
            raise ValueError(f"a {self.type} field has one value at most")

    @property
    def name(self) -> str:
        """How to name the field to a person."""
        return self.label or self.var or "field"

    def value(self) -> Any:
        """The typed value: bool, str, list[str], JID, list[JID], or None when empty."""
        return _typed(self.type, self.values, self)

    def with_value(self, value: Any) -> "Field":
        return dataclasses.replace(self, values=_raw(self.type, value))


@dataclass(frozen=True, slots=True)
class Form:
    type: str = "form"
    title: str | None = None
    instructions: tuple[str, ...] = ()
    fields: tuple[Field, ...] = ()
    reported: tuple[Field, ...] = ()  # result tables (XEP-0004 §3.4)
    items: tuple[tuple[Field, ...], ...] = ()

    def __post_init__(self) -> None:
        if self.type not in FORM_TYPES:
            raise ValueError(f"unknown form type {self.type!r}")
        seen: set[str] = set()
        for f in self.fields:
            if f.var is not None:
                if f.var in seen:
                    raise ValueError(f"two fields named {f.var!r}")
                seen.add(f.var)

    # ------------------------------------------------------------------ access

    def field(self, var: str) -> Field | None:
        for f in self.fields:
            if f.var == var:
                return f
        return None

    @property
    def form_type(self) -> str | None:
        """The FORM_TYPE hidden field's value (XEP-0068)."""
        f = self.field("FORM_TYPE")
        return f.values[0] if f is not None and f.values else None

    def values(self) -> dict[str, Any]:
        """Typed values of every field with a var (FORM_TYPE and fixed fields left out)."""
        return {f.var: f.value() for f in self.fields if f.var and f.var != "FORM_TYPE" and f.type != "fixed"}

    def with_values(self, values: Mapping[str, Any]) -> "Form":
        """A copy with the given fields' values replaced (unknown names are an error)."""
        known = {f.var for f in self.fields}
        unknown = set(values) - known
        if unknown:
            raise KeyError(f"no field {sorted(unknown)[0]!r} in this form")
        return dataclasses.replace(
            self, fields=tuple(f.with_value(values[f.var]) if f.var is not None and f.var in values else f for f in self.fields)
        )

    def with_field(self, var: str, **changes: Any) -> "Form":
        if self.field(var) is None:
            raise KeyError(f"no field {var!r} in this form")
        return dataclasses.replace(
            self, fields=tuple(dataclasses.replace(f, **changes) if f.var == var else f for f in self.fields)
        )

    # ------------------------------------------------------------------ validation

    def validate(self, submitted: "Form") -> dict[str, Any]:
        """Check a submitted form against this one; the typed values, or :class:`FormError`.

        Fields not in this form are ignored (XEP-0004 §3.3 lets the submitter add nothing
        the form did not ask for, so they carry no meaning here). ``FORM_TYPE``, when asked,
        must match. Hidden fields keep the value this form gave them.
        """
        if submitted.type != "submit":
            raise FormError(None, f"a form of type {submitted.type!r} was sent; submit the form")
        if self.form_type is not None:
            sent = submitted.form_type
            if sent is not None and sent != self.form_type:
                raise FormError("FORM_TYPE", f"this is a {self.form_type} form, not {sent}")
        out: dict[str, Any] = {}
        for f in self.fields:
            if f.var is None or f.var == "FORM_TYPE" or f.type == "fixed":
                continue
            if f.type == "hidden":
                out[f.var] = f.value()
                continue
            got = submitted.field(f.var)
            raw = got.values if got is not None else ()
            if all(not v.strip() for v in raw):
                if f.required:
                    raise FormError(f.var, f"{f.name} is required")
                out[f.var] = _typed(f.type, (), f)
                continue
            if f.type not in MULTI_TYPES and len(raw) > 1:
                raise FormError(f.var, f"{f.name} takes one value, not {len(raw)}")
            value = _typed(f.type, raw, f)
            if f.options and f.type in ("list-single", "list-multi"):
                allowed = {o.value for o in f.options}
                chosen = [value] if f.type == "list-single" else value
                for v in chosen:
                    if v not in allowed:
                        raise FormError(f.var, f"{f.name}: {v!r} is not one of the options")
            if f.validate is not None:
                try:
                    f.validate(value)
                except ValueError as exc:
                    raise FormError(f.var, f"{f.name}: {exc}") from None
            out[f.var] = value
        return out

    # ------------------------------------------------------------------ XML

    def to_element(self) -> etree._Element:
        x = etree.Element(X, {"type": self.type}, nsmap={None: ns.DATA_FORMS})
        if self.title is not None:
            etree.SubElement(x, _D + "title").text = self.title
        for line in self.instructions:
            etree.SubElement(x, _D + "instructions").text = line
        for f in self.fields:
            _field_element(x, f, self.type)
        if self.reported:
            rep = etree.SubElement(x, _D + "reported")
            for f in self.reported:
                _field_element(rep, dataclasses.replace(f, values=()), "result")
            for item in self.items:
                it = etree.SubElement(x, _D + "item")
                for f in item:
                    _field_element(it, f, "submit")
        return x

    @classmethod
    def from_element(cls, x: etree._Element) -> "Form":
        """Read a form off the wire; malformed forms raise ``bad-request`` naming the problem."""
        if x.tag != X:
            raise StanzaError(Condition.BAD_REQUEST, "not a jabber:x:data form")
        ftype = x.get("type") or ""
        if ftype not in FORM_TYPES:
            raise StanzaError(Condition.BAD_REQUEST, f"data form type {ftype!r} is not form, submit, cancel or result")
        title = None
        instructions: list[str] = []
        fields: list[Field] = []
        reported: list[Field] = []
        items: list[tuple[Field, ...]] = []
        seen: set[str] = set()
        for child in x:
            tag = child.tag
            if tag == _D + "title":
                title = child.text or ""
            elif tag == _D + "instructions":
                instructions.append(child.text or "")
            elif tag == _D + "field":
                f = _parse_field(child, ftype)
                if f.var is not None:
                    if f.var in seen:
                        raise StanzaError(Condition.BAD_REQUEST, f"two fields named {f.var!r}")
                    seen.add(f.var)
                fields.append(f)
            elif tag == _D + "reported":
                reported = [_parse_field(c, "result") for c in child if c.tag == _D + "field"]
            elif tag == _D + "item":
                items.append(tuple(_parse_field(c, "submit") for c in child if c.tag == _D + "field"))
            if len(fields) > MAX_FIELDS or len(items) > MAX_FIELDS * 16:
                raise StanzaError(Condition.POLICY_VIOLATION, "too many fields in the data form")
        return cls(ftype, title, tuple(instructions), tuple(fields), tuple(reported), tuple(items))

    @classmethod
    def find_in(cls, parent: etree._Element) -> "Form | None":
        """The first data form among ``parent``'s children, parsed, or None."""
        x = parent.find(X)
        return cls.from_element(x) if x is not None else None


def submit(values: Mapping[str, Any], *, form_type: str | None = None, types: Mapping[str, str] | None = None) -> Form:
    """A ``type='submit'`` form with these values (what a client sends; handy in tests)."""
    fields: list[Field] = []
    if form_type is not None:
        fields.append(Field("FORM_TYPE", "hidden", values=(form_type,)))
    for var, value in values.items():
        ftype = (types or {}).get(var) or _guess_type(value)
        fields.append(Field(var, ftype, values=_raw(ftype, value)))
    return Form("submit", fields=tuple(fields))


# ---------------------------------------------------------------------- helpers


def _guess_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, JID):
        return "jid-single"
    if isinstance(value, (list, tuple)):
        return "jid-multi" if value and all(isinstance(v, JID) for v in value) else "list-multi"
    return "text-single"


def _raw(ftype: str, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if ftype == "boolean":
        if isinstance(value, str):
            return (value,)
        return ("1" if value else "0",)
    if ftype == "text-multi":
        if isinstance(value, str):
            return tuple(value.split("\n"))
        return tuple(str(v) for v in value)
    if ftype in MULTI_TYPES:
        if isinstance(value, (str, JID)):
            return (str(value),)
        return tuple(str(v) for v in value)
    return (str(value),)


def _typed(ftype: str, raw: Iterable[str], f: Field | None) -> Any:
    raw = tuple(raw)
    var = f.var if f is not None else None
    name = f.name if f is not None else "field"
    if ftype == "boolean":
        if not raw:
            return False
        v = raw[0].strip().lower()
        if v in _TRUE:
            return True
        if v in _FALSE:
            return False
        raise FormError(var, f"{name}: {raw[0]!r} is not a boolean (use 1/0 or true/false)")
    if ftype == "text-multi":
        return "\n".join(raw)
    if ftype == "jid-single":
        if not raw or not raw[0].strip():
            return None
        return _jid(raw[0], var, name)
    if ftype == "jid-multi":
        out: list[JID] = []
        for v in raw:
            if v.strip():
                j = _jid(v, var, name)
                if j not in out:  # XEP-0004 §3.3: duplicates are not meaningful
                    out.append(j)
        return out
    if ftype == "list-multi":
        return list(dict.fromkeys(raw))
    if not raw:
        return None
    return raw[0]


def _jid(text: str, var: str | None, name: str) -> JID:
    try:
        return JID.parse(text.strip())
    except (JIDError, ValueError) as exc:
        raise FormError(var, f"{name}: {text!r} is not a valid JID ({exc})") from None


def _field_element(parent: etree._Element, f: Field, form_type: str) -> None:
    attrs: dict[str, str] = {}
    if f.var is not None:
        attrs["var"] = f.var
    # A submit form's fields carry only var and values (XEP-0004 §3.2); others keep their type.
    if form_type != "submit":
        attrs["type"] = f.type
        if f.label is not None:
            attrs["label"] = f.label
    el = etree.SubElement(parent, _D + "field", attrs)
    if form_type == "form":
        if f.desc is not None:
            etree.SubElement(el, _D + "desc").text = f.desc
        if f.required:
            etree.SubElement(el, _D + "required")
    for v in f.values:
        etree.SubElement(el, _D + "value").text = v
    if form_type == "form":
        for o in f.options:
            opt = etree.SubElement(el, _D + "option", {"label": o.label} if o.label is not None else None)
            etree.SubElement(opt, _D + "value").text = o.value


def _parse_field(el: etree._Element, form_type: str) -> Field:
    if el.tag != _D + "field":
        raise StanzaError(Condition.BAD_REQUEST, "unexpected element in a data form")
    ftype = el.get("type") or "text-single"
    if ftype not in FIELD_TYPES:
        raise StanzaError(Condition.BAD_REQUEST, f"unknown data form field type {ftype!r}")
    var = el.get("var")
    if var is None and ftype != "fixed":
        raise StanzaError(Condition.BAD_REQUEST, f"a {ftype} field without var")
    values = tuple(v.text or "" for v in el.findall(_D + "value"))
    if len(values) > MAX_VALUES:
        raise StanzaError(Condition.POLICY_VIOLATION, "too many values in a data form field")
    if ftype not in MULTI_TYPES and len(values) > 1:
        if form_type == "submit" and el.get("type") is None:
            ftype = "list-multi"  # a submitted field need not name its type (XEP-0004 §3.2)
        else:
            raise StanzaError(Condition.BAD_REQUEST, f"field {var!r} of type {ftype} has several values")
    options = tuple(
        Option(o.findtext(_D + "value") or "", o.get("label")) for o in el.findall(_D + "option")
    )
    return Field(
        var,
        ftype,
        label=el.get("label"),
        desc=el.findtext(_D + "desc"),
        required=el.find(_D + "required") is not None,
        values=values,
        options=options,
    )


__all__ = ["FIELD_TYPES", "Field", "Form", "FormError", "Option", "X", "submit"]
