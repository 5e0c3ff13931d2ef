"""The audit trail: who did what to which resource, when, and from where.

Service functions record their own events inside the transaction that makes the change, so the CLI and the
REST API leave the same trail and no change is committed without its record.
"""

from __future__ import annotations

import getpass
import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from pypilite.models import AuditEvent, utcnow

MAX_LIMIT = 1000


@dataclass(frozen=True)
class Actor:
    """Who is acting: a user's name (or "cli:<os user>" at the command line) and the client's address."""

    name: str
    address: str = ""

    @classmethod
    def command_line(cls) -> Actor:
        try:
            user = getpass.getuser()
        except (KeyError, OSError):
            user = "unknown"
        return cls(name=f"cli:{user}", address="local")


def record(actor: Actor, action: str, resource_type: str, resource: str, **detail: Any) -> None:
    AuditEvent.create(actor=actor.name, action=action, resource_type=resource_type, resource=resource,
                      address=actor.address, detail=json.dumps(detail, sort_keys=True) if detail else "")


def recent_count(action: str, *, address: str | None = None, resource: str | None = None,
                 window: timedelta) -> int:
    query = AuditEvent.select().where((AuditEvent.action == action) & (AuditEvent.time >= utcnow() - window))
    if address is not None:
        query = query.where(AuditEvent.address == address)
    if resource is not None:
        query = query.where(AuditEvent.resource == resource)
    return query.count()


def as_json(event: AuditEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        "time": event.time.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "actor": event.actor,
        "action": event.action,
        "resource_type": event.resource_type,
        "resource": event.resource,
        "address": event.address,
        "detail": json.loads(event.detail) if event.detail else {},
    }


def query(resource_type: str = "", q: str = "", limit: int = 100, before: int | None = None) -> list[AuditEvent]:
    """Newest first; `before` is the cursor (an event id) of the next page."""
    select = AuditEvent.select().order_by(AuditEvent.id.desc()).limit(min(max(limit, 1), MAX_LIMIT))
    if resource_type:
        select = select.where(AuditEvent.resource_type == resource_type)
    if q:
        select = select.where(AuditEvent.actor.contains(q) | AuditEvent.action.contains(q)
                              | AuditEvent.resource.contains(q) | AuditEvent.address.contains(q)
                              | AuditEvent.detail.contains(q))
    if before is not None:
        select = select.where(AuditEvent.id < before)
    return list(select)
