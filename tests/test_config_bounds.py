"""Every option's value is checked when the configuration is loaded: ``xmppctl check`` and
``xmppd`` refuse the same values with the same one line naming the key, exit code 2, never a
traceback (issue 16 item 6). And every number an option takes declares its bounds, so that no
new option can reach a feature's setup unchecked."""
from __future__ import annotations

import dataclasses
import subprocess
import sys
import typing
from pathlib import Path

import pytest

from xmppd.config import CORE_SECTIONS, ConfigError, build, constraints_of
from xmppd.core.loader import discover

BIN = Path(sys.executable).parent

# What a new user tried (issue 16 item 6): each passed `check` and then failed start-up with a
# traceback, or crashed `check` itself.
BAD_VALUES = [
    ("redpacket.max_amount", "-5"),
    ("redpacket.sweep_interval", "0"),
    ("mute.max_seconds", "0"),
    ("mute.timer_tick", "0"),
    ("mam.default_mode", "sometimes"),
    ("c2s.write_buffer_limit", "0"),
    ("muc.max_occupants", "-1"),
]


def all_sections() -> dict[str, type]:
    return {**CORE_SECTIONS, **{n: c.Options for n, c in discover().items()}}


@pytest.mark.parametrize("key,value", BAD_VALUES)
def test_bad_feature_values_are_refused_at_load_naming_the_key(key, value):
    sections = {n: c.Options for n, c in discover().items()}
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        build({}, sections, [f"{key}={value}"])


@pytest.mark.parametrize("key,value", BAD_VALUES)
def test_check_and_start_refuse_the_same_value_with_one_line(tmp_path, key, value):
    common = ["--set", f"server.data_dir={tmp_path / 'data'}", "--set", f"{key}={value}"]
    check = subprocess.run([str(BIN / "xmppctl"), *common, "check"], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    start = subprocess.run(
        [str(BIN / "xmppd"), *common, "--set", "listen.c2s=127.0.0.1:0", "--set", "listen.c2s_tls=", "--set", "listen.http="],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )
    for r in (check, start):
        assert r.returncode == 2, r.stderr
        assert "Traceback" not in r.stderr
        assert r.stderr.strip().count("\n") == 0 and key in r.stderr, r.stderr
    assert check.stderr.split("configuration error: ")[1] == start.stderr.split("configuration error: ")[1]
    assert not (tmp_path / "data").exists()  # nothing was created for a configuration that is refused


def numeric_fields():
    for section, cls in all_sections().items():
        hints = typing.get_type_hints(cls, include_extras=True)
        for f in dataclasses.fields(cls):
            tp = hints[f.name]
            base = typing.get_origin(tp) is typing.Annotated and tp.__origin__ or tp
            if base in (int, float) or (typing.get_origin(base) in (typing.Union, __import__("types").UnionType)
                                        and any(a in (int, float) for a in typing.get_args(base))):
                yield section, f, tp


def test_every_numeric_option_declares_its_bounds():
    missing = [f"{s}.{f.name}" for s, f, tp in numeric_fields() if not constraints_of(tp)]
    assert not missing, f"numeric options without a declared bound (use PositiveInt, NonNegative ...): {missing}"


def test_every_default_satisfies_its_bounds():
    for section, f, tp in numeric_fields():
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        if default is None:
            continue
        for c in constraints_of(tp):
            assert c.problem(default) is None, f"{section}.{f.name} default {default!r} {c.problem(default)}"
    build({}, {n: c.Options for n, c in discover().items()}, [])  # and the defaults build


def test_a_bound_names_the_key_the_rule_and_the_value():
    sections = {n: c.Options for n, c in discover().items()}
    with pytest.raises(ConfigError) as exc:
        build({}, sections, ["redpacket.max_amount=-5"])
    assert str(exc.value) == "redpacket.max_amount must be at least 1, not -5"
    with pytest.raises(ConfigError) as exc:
        build({}, sections, ["mam.default_mode=sometimes"])
    assert str(exc.value) == "mam.default_mode must be 'always', 'never' or 'roster', not 'sometimes'"
