"""Looking up what the store already holds with SQLAlchemy Core alone, for commands that only look.

Importing the ORM and the models costs a short command about 0.15 s, a third of its run:
`mutapub diff` on a change set computed at ingest (its usual case) needs neither. The tables are
named here as lightweight Core clauses, only with the columns read; `models` stays their definition.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import column, select, table

from mutapub.mutations.workspace import Workspace

if TYPE_CHECKING:
    from mutapub.mutations.models import ChangeSet

_snapshots = table("snapshots", column("id"), column("dataset"), column("snapshot_date"))
_change_sets = table(
    "change_sets",
    column("id"),
    column("dataset"),
    column("from_snapshot_id"),
    column("to_snapshot_id"),
    column("inserts"),
    column("updates"),
    column("deletes"),
)


@dataclass(frozen=True)
class ChangeSetSummary:
    """A stored change set's identity and counts, as `mutapub diff` reports them."""

    id: int
    dataset: str
    from_snapshot_id: int
    to_snapshot_id: int
    inserts: int
    updates: int
    deletes: int

    @classmethod
    def of(cls, cs: ChangeSet) -> ChangeSetSummary:
        """The summary of a change set loaded through the ORM."""
        return cls(
            cs.id, cs.dataset, cs.from_snapshot_id, cs.to_snapshot_id, cs.inserts, cs.updates, cs.deletes
        )

    @property
    def counts(self) -> dict[str, int]:
        """Rows per operation, as `{"I": n, "U": n, "D": n}`."""
        return {"I": self.inserts, "U": self.updates, "D": self.deletes}


def stored_change_set(
    ws: Workspace, dataset: str, from_id: int | None = None, to_id: int | None = None
) -> ChangeSetSummary | None:
    """The stored change set of `dataset` between two snapshots (default: the two latest), or None
    when it is not stored, the pair is incomplete or the ids do not fit: `changesets.compute` then
    computes it or says what is wrong."""
    with ws.engine.connect() as conn:
        if from_id is None and to_id is None:
            latest = (
                conn.execute(
                    select(_snapshots.c.id)
                    .where(_snapshots.c.dataset == dataset)
                    .order_by(_snapshots.c.snapshot_date.desc())
                    .limit(2)
                )
                .scalars()
                .all()
            )
            if len(latest) < 2:
                return None
            to_id, from_id = latest
        elif from_id is None or to_id is None:
            return None
        c = _change_sets.c
        row = conn.execute(
            select(c.id, c.inserts, c.updates, c.deletes).where(
                c.dataset == dataset, c.from_snapshot_id == from_id, c.to_snapshot_id == to_id
            )
        ).one_or_none()
    if row is None:
        return None
    return ChangeSetSummary(row.id, dataset, from_id, to_id, row.inserts, row.updates, row.deletes)
