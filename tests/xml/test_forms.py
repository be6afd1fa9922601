"""XEP-0004 data forms: parse/validate/build round trips, every field type, required fields, bad values."""
from __future__ import annotations

import pytest
from lxml import etree

from xmppd.errors import Condition, StanzaError
from xmppd.jid import JID
from xmppd.xml.forms import FIELD_TYPES, Field, Form, FormError, Option, submit

D = "jabber:x:data"


def _all_types_form() -> Form:
    return Form(
        "form",
        "Every type",
        ("Fill it in.", "Second line."),
        (
            Field("FORM_TYPE", "hidden", values=("urn:test:form",)),
            Field(None, "fixed", values=("A section",)),
            Field("name", "text-single", "Name", "Your name", required=True),
            Field("secret", "text-private", "Secret"),
            Field("bio", "text-multi", "About you"),
            Field("agree", "boolean", "Agree?", values=("0",)),
            Field("colour", "list-single", "Colour", options=(Option("red", "Red"), Option("blue"))),
            Field("tags", "list-multi", "Tags", options=(Option("a"), Option("b"), Option("c"))),
            Field("owner", "jid-single", "Owner"),
            Field("members", "jid-multi", "Members"),
            Field("token", "hidden", values=("xyz",)),
        ),
    )


def _reparse(form: Form) -> Form:
    return Form.from_element(etree.fromstring(etree.tostring(form.to_element())))


def test_every_field_type_round_trips_through_xml():
    form = _all_types_form()
    assert {f.type for f in form.fields} == FIELD_TYPES
    back = _reparse(form)
    assert back == form
    assert back.form_type == "urn:test:form"
    x = form.to_element()
    assert x.tag == f"{{{D}}}x" and x.get("type") == "form"
    name = x.find(f"{{{D}}}field[@var='name']")
    assert name.findtext(f"{{{D}}}desc") == "Your name"
    assert name.find(f"{{{D}}}required") is not None
    colour = x.find(f"{{{D}}}field[@var='colour']")
    assert [(o.get("label"), o.findtext(f"{{{D}}}value")) for o in colour.findall(f"{{{D}}}option")] == [("Red", "red"), (None, "blue")]


def test_submit_and_validate_gives_typed_values():
    form = _all_types_form()
    sent = submit(
        {
            "name": "Alice",
            "secret": "s3cret",
            "bio": "line one\nline two",
            "agree": True,
            "colour": "blue",
            "tags": ["a", "c", "a"],
            "owner": JID.parse("alice@example.com"),
            "members": [JID.parse("bob@example.com"), JID.parse("carol@example.com/phone")],
            "token": "forged",
        },
        form_type="urn:test:form",
        types={"bio": "text-multi"},
    )
    values = form.validate(_reparse(sent))
    assert values == {
        "name": "Alice",
        "secret": "s3cret",
        "bio": "line one\nline two",
        "agree": True,
        "colour": "blue",
        "tags": ["a", "c"],
        "owner": JID("alice", "example.com"),
        "members": [JID("bob", "example.com"), JID("carol", "example.com", "phone")],
        "token": "xyz",  # hidden fields keep the server's value
    }


def test_submitted_xml_from_a_client_without_field_types():
    x = etree.fromstring(
        f"<x xmlns='{D}' type='submit'><field var='name'><value>Bob</value></field>"
        "<field var='members'><value>a@example.com</value><value>b@example.com</value></field>"
        "<field var='agree'><value>true</value></field><field var='unknown'><value>ignored</value></field></x>"
    )
    values = _all_types_form().validate(Form.from_element(x))
    assert values["name"] == "Bob"
    assert values["members"] == [JID("a", "example.com"), JID("b", "example.com")]
    assert values["agree"] is True
    assert "unknown" not in values
    assert values["secret"] is None and values["bio"] == "" and values["tags"] == [] and values["owner"] is None


def test_required_field_missing_or_blank_is_named():
    form = _all_types_form()
    for sent in (submit({}), submit({"name": "   "})):
        with pytest.raises(FormError) as e:
            form.validate(sent)
        assert e.value.var == "name" and "Name is required" in e.value.text


@pytest.mark.parametrize(
    ("var", "value", "problem"),
    [
        ("agree", "maybe", "not a boolean"),
        ("owner", "not a jid@", "not a valid JID"),
        ("members", ["ok@example.com", "@bad"], "not a valid JID"),
        ("colour", "green", "not one of the options"),
        ("tags", ["a", "z"], "not one of the options"),
    ],
)
def test_bad_values_are_named(var, value, problem):
    with pytest.raises(FormError) as e:
        _all_types_form().validate(submit({"name": "x", var: value}, types={var: "text-single" if isinstance(value, str) else "list-multi"}))
    assert e.value.var == var
    assert problem in e.value.text


def test_single_value_field_with_two_values_is_refused():
    x = etree.fromstring(f"<x xmlns='{D}' type='submit'><field var='name'><value>a</value><value>b</value></field></x>")
    with pytest.raises(FormError, match="takes one value"):
        _all_types_form().validate(Form.from_element(x))


def test_custom_validator_and_form_type_mismatch():
    form = Form(fields=(Field("FORM_TYPE", "hidden", values=("urn:a",)), Field("n", "text-single", "Number", validate=lambda v: int(v))))
    with pytest.raises(FormError, match="Number: invalid literal"):
        form.validate(submit({"n": "x"}))
    with pytest.raises(FormError) as e:
        form.validate(submit({"n": "1"}, form_type="urn:b"))
    assert e.value.var == "FORM_TYPE"
    assert form.validate(submit({"n": "1"}, form_type="urn:a")) == {"n": "1"}


def test_only_submit_forms_validate():
    with pytest.raises(FormError, match="submit"):
        _all_types_form().validate(Form("cancel"))


@pytest.mark.parametrize(
    "xml",
    [
        f"<x xmlns='{D}'/>",  # no type
        f"<x xmlns='{D}' type='bogus'/>",
        f"<x xmlns='{D}' type='form'><field var='a' type='colour'/></x>",
        f"<x xmlns='{D}' type='form'><field type='text-single'/></x>",  # no var
        f"<x xmlns='{D}' type='form'><field var='a' type='text-single'><value>1</value><value>2</value></field></x>",
        f"<x xmlns='{D}' type='form'><field var='a'/><field var='a'/></x>",
        "<x xmlns='urn:other' type='form'/>",
    ],
)
def test_malformed_forms_are_bad_request(xml):
    with pytest.raises(StanzaError) as e:
        Form.from_element(etree.fromstring(xml))
    assert e.value.condition is Condition.BAD_REQUEST


def test_huge_form_is_refused():
    fields = "".join(f"<field var='f{i}'/>" for i in range(300))
    with pytest.raises(StanzaError) as e:
        Form.from_element(etree.fromstring(f"<x xmlns='{D}' type='submit'>{fields}</x>"))
    assert e.value.condition is Condition.POLICY_VIOLATION


def test_submit_form_xml_carries_only_var_and_values():
    x = submit({"a": "1", "b": ["x", "y"]}).to_element()
    for f in x.findall(f"{{{D}}}field"):
        assert set(f.attrib) == {"var"}
    assert [v.text for v in x.findall(f"{{{D}}}field[@var='b']/{{{D}}}value")] == ["x", "y"]


def test_result_form_with_reported_table_round_trips():
    form = Form(
        "result",
        reported=(Field("jid", "jid-single", "JID"), Field("name", "text-single", "Name")),
        items=(
            (Field("jid", "jid-single", values=("a@example.com",)), Field("name", "text-single", values=("A",))),
            (Field("jid", "jid-single", values=("b@example.com",)), Field("name", "text-single", values=("B",))),
        ),
    )
    back = _reparse(form)
    assert [f.var for f in back.reported] == ["jid", "name"]
    assert [[f.values for f in item] for item in back.items] == [[("a@example.com",), ("A",)], [("b@example.com",), ("B",)]]


def test_building_checks_its_input():
    with pytest.raises(ValueError):
        Field("a", "colour")
    with pytest.raises(ValueError):
        Field(None, "text-single")
    with pytest.raises(ValueError):
        Field("a", "text-single", values=("1", "2"))
    with pytest.raises(ValueError):
        Form("form", fields=(Field("a"), Field("a")))
    with pytest.raises(ValueError):
        Form("draft")


def test_with_values_and_typed_access():
    form = _all_types_form().with_values({"agree": True, "members": [JID.parse("a@b.c")], "bio": "x\ny"})
    assert form.field("agree").value() is True
    assert form.field("members").values == ("a@b.c",)
    assert form.field("bio").values == ("x", "y")
    assert form.values()["agree"] is True and "FORM_TYPE" not in form.values()
    with pytest.raises(KeyError):
        form.with_values({"nope": 1})
    assert form.with_field("name", desc="problem").field("name").desc == "problem"
