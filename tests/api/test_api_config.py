"""[api] and [metrics] are checked when the configuration is read: one line naming the key."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import make_config
from xmppd.config import ConfigError


@pytest.mark.parametrize(
    ("override", "words"),
    [
        ('api.tokens=[{ token = "short", scope = "admin" }]', "at least 24"),
        ('api.tokens=[{ token = "a token with spaces inside it!!", scope = "admin" }]', "without spaces"),
        ('api.tokens=[{ token = "0123456789abcdefghijklmnop", scope = "root" }]', "api.tokens[0].scope must be 'admin' or 'read'"),
        ('api.tokens=[{ token = "0123456789abcdefghijklmnop" }, { token = "0123456789abcdefghijklmnop" }]', "twice"),
        ('api.tokens=[{ token = "0123456789abcdefghijklmnop", scope = "admin", colour = "red" }]', "unknown key"),
        ("api.max_page=0", "api.max_page must be at least 1"),
        ("api.max_body=100", "api.max_body must be at least 1024"),
        ('metrics.allow=["not-an-address"]', "metrics.allow[0]"),
        ("metrics.health_timeout=0", "metrics.health_timeout must be more than 0"),
    ],
)
def test_bad_api_and_metrics_options_are_refused_with_the_key(tmp_path: Path, override: str, words: str) -> None:
    with pytest.raises(ConfigError) as exc:
        make_config(tmp_path, override)
    assert words in str(exc.value)
    assert "0123456789abcdefghijklmnop" not in str(exc.value)  # a token is never echoed


def test_a_read_token_defaults_to_read_and_is_not_in_repr(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, 'api.tokens=[{ token = "0123456789abcdefghijklmnop" }]')
    assert cfg.api.tokens[0].scope == "read"
    assert "0123456789abcdefghijklmnop" not in repr(cfg.api)
