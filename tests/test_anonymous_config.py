"""``[anonymous]`` is checked when the configuration is loaded (docs/auth.md "Anonymous
visitors"): a host of its own, limits that fit together, allow_to entries that are addresses."""
from __future__ import annotations

import pytest

from tests.helpers import running_server
from xmppd.config import ConfigError, build
from xmppd.core.loader import discover


def load(*overrides: str):
    return build({}, {n: c.Options for n, c in discover().items()}, list(overrides))


def test_anonymous_is_off_by_default_with_protective_limits():
    a = load().anonymous
    assert a.domain == "" and a.allow_to == []
    assert (a.logins_per_ip_per_minute, a.max_sessions, a.max_sessions_per_ip) == (10, 1000, 5)


@pytest.mark.parametrize("override,message", [
    ("anonymous.domain=localhost", "must not be server.domain"),
    ("anonymous.domain=Guest.Localhost", "written as 'guest.localhost'"),
    ("anonymous.domain=bob@localhost", "must be a bare domain"),
    ("anonymous.max_sessions_per_ip=2000", "max_sessions_per_ip must not exceed"),
    ("anonymous.logins_per_ip_per_minute=0", "anonymous.logins_per_ip_per_minute"),
    ("anonymous.allow_to=['sales@localhost/desk']", "must be a domain or a bare JID"),
])
def test_bad_anonymous_settings_are_refused_naming_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load(override, "anonymous.domain=guest.localhost" if "domain" not in override else "server.domain=localhost")


async def test_a_domain_a_feature_already_serves_is_refused_at_start(tmp_path):
    with pytest.raises(ConfigError, match="anonymous.domain cs.localhost is already served"):
        async with running_server(tmp_path, "anonymous.domain=cs.localhost"):
            pass
