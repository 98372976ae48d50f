"""Cross-process locks in the database: a lease row with an expiry, renewed while its holder works.

Several publishers, schedulers or server nodes may share one database; a lease makes one of them do a
piece of work at a time, and a lease left by a crashed process expires and is taken over.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from mutapub.mutations.errors import MutapubError
from mutapub.mutations.models import Lease, utcnow


class LeaseHeld(MutapubError):
    """Another process holds the lease."""

    exit_code = 3


def holder_name() -> str:
    """Who this process is, as shown to operators: host, pid and a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _dead_local_holder(holder: str) -> bool:
    """Whether `holder` was a process of this host that no longer runs (its lease need not be waited out)."""
    host, _, rest = holder.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def try_acquire(sessions: sessionmaker[Session], name: str, holder: str, ttl: dt.timedelta) -> bool:
    """Take the lease if it is free, expired, or left by a dead process of this host; True when taken."""
    now = utcnow()
    with sessions() as session:
        try:
            with session.begin():
                session.add(Lease(name=name, holder=holder, acquired_at=now, expires_at=now + ttl))
            return True
        except IntegrityError:
            pass
        with session.begin():
            existing = session.scalars(select(Lease).where(Lease.name == name)).one_or_none()
            stale = existing is not None and _dead_local_holder(existing.holder)
            condition = (Lease.expires_at < now) | (Lease.holder == holder)
            if stale and existing is not None:
                condition = condition | (Lease.holder == existing.holder)
            taken = session.execute(
                update(Lease)
                .where(Lease.name == name, condition)
                .values(holder=holder, acquired_at=now, expires_at=now + ttl)
                .execution_options(synchronize_session=False)
            )
            return taken.rowcount == 1  # type: ignore[attr-defined]


def renew(sessions: sessionmaker[Session], name: str, holder: str, ttl: dt.timedelta) -> bool:
    """Push the expiry forward; False when the lease was lost (expired and taken by another)."""
    with sessions() as session, session.begin():
        done = session.execute(
            update(Lease).where(Lease.name == name, Lease.holder == holder).values(expires_at=utcnow() + ttl)
        )
        return done.rowcount == 1  # type: ignore[attr-defined]


def release(sessions: sessionmaker[Session], name: str, holder: str) -> None:
    """Give the lease up."""
    with sessions() as session, session.begin():
        session.execute(delete(Lease).where(Lease.name == name, Lease.holder == holder))


def current(sessions: sessionmaker[Session], name: str) -> Lease | None:
    """The lease row, if any (possibly expired)."""
    with sessions() as session:
        return session.scalars(select(Lease).where(Lease.name == name)).one_or_none()


@contextmanager
def held(
    sessions: sessionmaker[Session],
    name: str,
    *,
    wait: float | None = None,
    ttl: dt.timedelta = dt.timedelta(minutes=10),
    poll: float = 0.5,
) -> Iterator[str]:
    """Hold the lease for the block; wait up to `wait` seconds for it (None: forever), else LeaseHeld."""
    holder = holder_name()
    deadline = None if wait is None else time.monotonic() + wait
    while not try_acquire(sessions, name, holder, ttl):
        if deadline is not None and time.monotonic() >= deadline:
            lease = current(sessions, name)
            who = f"{lease.holder} until {lease.expires_at:%Y-%m-%d %H:%M:%S}" if lease else "another process"
            raise LeaseHeld(f"{name} is locked by {who}; try again later or wait for it")
        time.sleep(poll)
    try:
        yield holder
    finally:
        release(sessions, name, holder)
