"""Pre-chat forms as pure functions (extensions/customer_service/prechat.py): definitions checked
and round-tripped through JSON and XML, answers checked, the skills a chosen topic sets."""
from __future__ import annotations

import pytest
from lxml import etree

from xmppd.errors import Condition, StanzaError
from xmppd.xml.forms import submit
from xmppd_extensions.customer_service import prechat

DEF = {"required": True, "fields": [
    {"var": "name", "label": "Name", "required": True},
    {"var": "topic", "type": "list-single", "label": "Topic", "options": [
        {"value": "billing", "label": "Billing", "skills": "billing zh"}, {"value": "tech", "skills": "tech"}]},
    {"var": "call", "type": "boolean", "label": "Call me"},
]}


def x(**values: object) -> etree._Element:
    return submit(values, form_type=prechat.FORM_TYPE).to_element()


def test_definitions_round_trip_through_json_and_xml() -> None:
    form = prechat.definition(DEF)
    assert form is not None and form.required and [f.var for f in form.fields] == ["name", "topic", "call"]
    assert prechat.loads(prechat.dumps(form)) == form
    assert prechat.from_element(prechat.definition_element(form)) == form
    assert prechat.definition({"fields": []}) is None and prechat.parse_json_text("  ") is None


@pytest.mark.parametrize("bad", [
    {"fields": [{"var": "Name"}]},
    {"fields": [{"var": "a"}, {"var": "a"}]},
    {"fields": [{"var": "a", "type": "jid-single"}]},
    {"fields": [{"var": "a", "type": "list-single"}]},  # a list without options
    {"fields": [{"var": "a", "options": [{"value": "x"}]}]},  # options on a text field
    {"fields": [{"var": "a", "type": "list-single", "options": [{"value": "x", "skills": "NO!"}]}]},
    {"fields": [{"var": "a", "label": "bell\x07"}]},
    {"fields": [{"var": f"f{i}"} for i in range(21)]},
])
def test_bad_definitions_are_bad_requests(bad: dict) -> None:
    with pytest.raises(StanzaError) as err:
        prechat.definition(bad)
    assert err.value.condition is Condition.BAD_REQUEST


def test_answers_are_checked_and_the_topic_sets_skills() -> None:
    form = prechat.definition(DEF)
    answers, skills = prechat.submission(form, x(name="Vera", topic="billing", call=True), "vip")
    assert [(a.var, a.value) for a in answers] == [("name", "Vera"), ("topic", "Billing"), ("call", "yes")]
    assert skills == "billing vip zh"
    assert prechat.answers_loads(prechat.answers_dumps(answers)) == answers
    assert prechat.answers_text(answers) == "Name: Vera\nTopic: Billing\nCall me: yes"
    for sent, condition in ((None, Condition.NOT_ACCEPTABLE), (x(topic="tech"), Condition.NOT_ACCEPTABLE),
                            (x(name="V", topic="sales"), Condition.NOT_ACCEPTABLE), (x(name="V", age="9"), Condition.BAD_REQUEST),
                            (x(name="V" * 1001), Condition.NOT_ACCEPTABLE)):
        with pytest.raises(StanzaError) as err:
            prechat.submission(form, sent, "")
        assert err.value.condition is condition
    optional = prechat.definition({**DEF, "required": False})
    assert prechat.submission(optional, None, "vip") == ([], "vip")  # a plain client: no form, the queue's skills
    with pytest.raises(StanzaError):
        prechat.submission(None, x(name="V"), "")
