"""Workspaces with configured sources, subscribers and grants for the job tests."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from sqlalchemy import func, select
from tests.mutations.persons_rows import row, write

from mutapub.mutations import grants, subscribers
from mutapub.mutations.audit import AuditContext
from mutapub.mutations.config import load_settings
from mutapub.mutations.models import Delivery, PublishedSnapshot, Snapshot
from mutapub.mutations.workspace import Workspace

CTX = AuditContext(actor="test", command="pytest")
GENT, LEUVEN = "44021", "24062"
DAY1 = [row(1, nis=GENT), row(2, nis=GENT), row(3, nis=LEUVEN)]
DAY2 = [row(1, nis=GENT, street="Molenstraat"), row(2, nis=GENT), row(4, nis=GENT)]
DAY3 = [row(1, nis=GENT, street="Molenstraat"), row(4, nis=GENT), row(5, nis=LEUVEN)]


def configure(ws: Workspace, toml: str) -> Workspace:
    """The workspace with `toml` appended to its mutapub.toml, settings read again."""
    with open(ws.settings.config_file, "a", encoding="utf-8") as fh:
        fh.write("\n" + toml + "\n")
    return Workspace(load_settings(ws.home))


def persons_source(ws: Workspace, drop: Path, **extra: str) -> Workspace:
    """A local persons source on `drop`, files complete by marker, inbox uploads taken at once."""
    drop.mkdir(parents=True, exist_ok=True)
    extra.setdefault("complete", '["marker"]')
    lines = "".join(f"{k} = {v}\n" for k, v in extra.items())
    return configure(ws, f'[sources.persons]\npath = "{drop}"\nglob = "persons_*.csv"\n{lines}')


def drop_file(drop: Path, day: dt.date, lines: list[str], marker: bool = True) -> Path:
    """A persons file for `day` in the drop directory, with its .done marker."""
    path = write(drop / f"persons_{day.isoformat()}.csv", lines)
    if marker:
        (drop / (path.name + ".done")).write_text("")
    return path


def subscriber_with_grant(ws: Workspace, code: str = "gent", **kw: object) -> None:
    """A subscriber with a grant on persons (identity and address, Gent's population by default)."""
    kw.setdefault("groups", ["identity", "address"])
    kw.setdefault("where", [f"municipality_nis in ({GENT})"])
    with ws.sessions() as s, s.begin():
        subscribers.add(s, CTX, code, password="S3cure-pass-123!", **subscribers.settings(name=code))
    with ws.sessions() as s, s.begin():
        grants.add(s, CTX, code, "persons", legal_basis=f"VTC/{code}", **kw)  # type: ignore[arg-type]


def published(ws: Workspace, dataset: str = "persons") -> list[tuple[int, dt.date]]:
    """(seq, snapshot date) of every published delivery of a dataset."""
    with ws.sessions() as s:
        rows = s.execute(
            select(Delivery.seq, Snapshot.snapshot_date)
            .join(Snapshot, Snapshot.id == Delivery.snapshot_id)
            .where(Delivery.dataset == dataset, Delivery.status == "published")
            .order_by(Delivery.seq)
        ).all()
    return [(seq, day) for seq, day in rows]


def snapshot_dates(ws: Workspace, dataset: str = "persons") -> list[dt.date]:
    """Dates of the registered snapshots of a dataset."""
    with ws.sessions() as s:
        return list(
            s.scalars(
                select(Snapshot.snapshot_date)
                .where(Snapshot.dataset == dataset)
                .order_by(Snapshot.snapshot_date)
            )
        )


def published_snapshots(ws: Workspace) -> int:
    """How many snapshots are marked published."""
    with ws.sessions() as s:
        return int(s.scalar(select(func.count()).select_from(PublishedSnapshot)) or 0)
