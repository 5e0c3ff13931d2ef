"""What a project page says besides its files: PEP 792 status markers and PEP 708 URLs, checked once here
for every door they come through (an upstream page, the API, the CLI)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from pypilite.errors import BadRequest

ACTIVE, ARCHIVED, DEPRECATED, QUARANTINED = "active", "archived", "deprecated", "quarantined"
STATUSES = (ACTIVE, ARCHIVED, DEPRECATED, QUARANTINED)
# PEP 792: archived and quarantined projects take no new distributions.
CLOSED_TO_UPLOADS = (ARCHIVED, QUARANTINED)
# From least to most severe: what a merged page shows when its parts disagree.
SEVERITY = {"": 0, ACTIVE: 0, DEPRECATED: 1, ARCHIVED: 2, QUARANTINED: 3}
MAX_REASON = 500
MAX_URLS = 16
MAX_URL_LENGTH = 1000


@dataclass(frozen=True)
class Markers:
    """A page's PEP 792 status ("" where none was said) and reason, and its PEP 708 URLs."""

    status: str = ""
    status_reason: str = ""
    tracks: tuple[str, ...] = ()
    alternate_locations: tuple[str, ...] = ()


NONE = Markers()


def parse_status(status: str, reason: str) -> tuple[str, str]:
    """A status and reason set through the API or the CLI: 400 for anything PEP 792 does not name."""
    if status not in STATUSES:
        raise BadRequest(f"status must be one of {', '.join(STATUSES)}, not {status[:40]!r}")
    if len(reason) > MAX_REASON or not reason.isprintable():
        raise BadRequest(f"reason must be one line of at most {MAX_REASON} printable characters")
    return status, reason


def upstream_status(status: object, reason: object) -> tuple[str, str]:
    """A status and reason as an upstream page gave them: anything else than the four names counts as none
    said, a reason is cut to MAX_REASON printable characters."""
    if status not in STATUSES:
        return "", ""
    text = reason if isinstance(reason, str) else ""
    return str(status), "".join(c if c.isprintable() else " " for c in text[:MAX_REASON])


def upstream_urls(values: Iterable[object], own_host: str) -> tuple[str, ...]:
    """PEP 708 URLs as an upstream page gave them (already made absolute): http(s) without credentials,
    bounded in length and number, and none on the upstream's own host, which the proxy stands in for and
    whose address is not for its readers."""
    kept: list[str] = []
    for value in values:
        if not isinstance(value, str) or len(value) > MAX_URL_LENGTH or not value.isprintable():
            continue
        try:
            parts = urlsplit(value)
            host = parts.hostname
        except ValueError:
            continue
        if parts.scheme not in ("http", "https") or not host or "@" in parts.netloc or host.rstrip(".") == own_host:
            continue
        if value not in kept:
            kept.append(value)
        if len(kept) == MAX_URLS:
            break
    return tuple(kept)


def lines(urls: Iterable[str]) -> str:
    return "\n".join(urls)


def from_lines(text: str) -> tuple[str, ...]:
    return tuple(line for line in text.split("\n") if line)
