"""One reading of "90m", "12h", "3d" for the config and for policies."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pypilite.config import ConfigError, build_config
from pypilite.durations import parse_duration
from pypilite.policies import PolicyError, parse_policy


@pytest.mark.parametrize("text, seconds", [("0", 0), ("90m", 5400), ("12h", 43200), ("3d", 259200),
                                           ("36500d", 36500 * 86400)])
def test_durations_in_seconds(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "3", "3w", "-3d", "3 d", "1.5h", "1000000000d", "3d\n", "٣d"])
def test_anything_else_is_one_line_naming_the_form(text: str) -> None:
    with pytest.raises(ValueError, match=r'^a duration such as "90m", "12h" or "3d" \(or "0"\), not '):
        parse_duration(text)


def test_a_century_at_most_so_the_release_age_rule_can_subtract_it_from_today() -> None:
    assert datetime.now(UTC) - timedelta(seconds=parse_duration("36500d")) > datetime.min.replace(tzinfo=UTC)
    with pytest.raises(ValueError, match=r'^a duration of at most 100 years \("36500d"\), not \'36501d\''):
        parse_duration("36501d")


def test_the_config_and_a_policy_refuse_the_same_durations() -> None:
    with pytest.raises(ConfigError, match="advisories.max_age must be a duration of at most 100 years"):
        build_config({"advisories": {"max_age": "999999d"}}, {})
    with pytest.raises(PolicyError, match="min_release_age must be a duration of at most 100 years"):
        parse_policy({"min_release_age": "999999d"}, "repository 'pypi'", "proxy")
    assert parse_policy({"min_release_age": "36500d"}, "repository 'pypi'", "proxy").age == timedelta(days=36500)
