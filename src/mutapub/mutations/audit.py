"""The audit trail: who changed which subscriber, credential, grant or followed key, when, and how.

Entries are written in the same transaction as the change they describe, so a refused command leaves
neither a change nor an entry. Passwords and their hashes never reach an entry.
"""

from __future__ import annotations

import datetime as dt
import getpass
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mutapub.mutations.models import AuditEntry, utcnow

# Keys scrubbed from before/after values whatever the caller passes: defence in depth.
SECRET_KEYS = frozenset({"password", "password_hash", "secret"})
# Options whose value is a secret, redacted from the recorded command line.
SECRET_OPTIONS = ("--password",)


def default_actor() -> str:
    """The operator: the OS user running the command."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers) and no LOGNAME/USER
        return "unknown"


def command_line(argv: Sequence[str] | None = None) -> str:
    """The command as typed (`mutapub …`), with the value of any secret option replaced by `***`."""
    args = list(sys.argv[1:] if argv is None else argv)
    out: list[str] = []
    hide_next = False
    for arg in args:
        if hide_next:
            out.append("***")
            hide_next = False
            continue
        name, eq, _value = arg.partition("=")
        if name in SECRET_OPTIONS:  # `--password-stdin` is a flag, not a secret: it is kept
            if eq:
                out.append(f"{name}=***")
            else:
                out.append(arg)
                hide_next = True
            continue
        out.append(arg)
    return shlex.join(["mutapub", *out])


@dataclass(frozen=True)
class AuditContext:
    """Who is changing things and through which command; handed to every mutating library function."""

    actor: str
    command: str

    @classmethod
    def current(cls, actor: str | None = None, argv: Sequence[str] | None = None) -> AuditContext:
        """The context of this process: `actor` or the OS user, and the command line without secrets."""
        return cls(actor=actor or default_actor(), command=command_line(argv))


def _scrub(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _scrub(v) for k, v in value.items() if k not in SECRET_KEYS}
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    return value


def record(
    session: Session,
    ctx: AuditContext,
    action: str,
    entity: str,
    ref: str,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> AuditEntry:
    """Add one audit entry to `session` (committed with the change it describes)."""
    entry = AuditEntry(
        at=utcnow(),
        actor=ctx.actor,
        command=ctx.command,
        action=action,
        entity=entity,
        ref=ref,
        before=_scrub(before) if before is not None else None,
        after=_scrub(after) if after is not None else None,
    )
    session.add(entry)
    return entry


def list_entries(
    session: Session, since: dt.datetime | None = None, entity: str | None = None, ref: str | None = None
) -> list[AuditEntry]:
    """Audit entries, oldest first, optionally from `since` (UTC) on and about one entity or record."""
    stmt = select(AuditEntry).order_by(AuditEntry.at, AuditEntry.id)
    if since is not None:
        stmt = stmt.where(AuditEntry.at >= since)
    if entity is not None:
        stmt = stmt.where(AuditEntry.entity == entity)
    if ref is not None:
        stmt = stmt.where(AuditEntry.ref == ref)
    return list(session.scalars(stmt))


def entry_as_dict(entry: AuditEntry) -> dict[str, Any]:
    """An entry as JSON-ready values; times in UTC ISO 8601."""
    at = entry.at if entry.at.tzinfo else entry.at.replace(tzinfo=dt.UTC)  # SQLite drops the zone
    return {
        "id": entry.id,
        "at": at.astimezone(dt.UTC).isoformat(),
        "actor": entry.actor,
        "command": entry.command,
        "action": entry.action,
        "entity": entry.entity,
        "ref": entry.ref,
        "before": entry.before,
        "after": entry.after,
    }
