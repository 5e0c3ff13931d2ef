"""Durations in the config and in policies ("90m", "12h", "3d"), read one way everywhere."""

from __future__ import annotations

import re

_DURATION = re.compile(r"([0-9]{1,9})([mhd])\Z")  # ASCII digits only: \d takes any script's
_UNITS = {"m": 60, "h": 3600, "d": 86400}
# Subtracted from today's date by the release-age rule: a century stays far inside what datetime can hold.
MAX_SECONDS = 36500 * 86400


def parse_duration(text: str) -> int:
    """"90m", "12h" or "3d" in seconds; "0" is 0. ValueError, worded for a one-line error, for anything else."""
    if text == "0":
        return 0
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"a duration such as \"90m\", \"12h\" or \"3d\" (or \"0\"), not {text!r}")
    seconds = int(match[1]) * _UNITS[match[2]]
    if seconds > MAX_SECONDS:
        raise ValueError(f"a duration of at most 100 years (\"36500d\"), not {text!r}")
    return seconds
