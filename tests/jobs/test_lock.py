"""The run lock between real processes: never two runs of a source at once, `--wait` waits, and a lock
left by a killed process is taken over."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.jobs.helpers import DAY1, drop_file, persons_source, published, subscriber_with_grant

from mutapub.jobs import runs
from mutapub.mutations import leases
from mutapub.mutations.workspace import Workspace

D1 = dt.date(2025, 10, 1)


def _start(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "mutapub.mutations.cli", "run", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )


def _slow_source(ws: Workspace, tmp_path: Path) -> Workspace:
    """A source judged complete by a stable size over 6 s: each run holds the lock that long, well past
    the start-up of a second process on a busy machine."""
    ws = persons_source(ws, tmp_path / "drop", complete='["stable"]', stable_seconds="6.0")
    subscriber_with_grant(ws)
    drop_file(tmp_path / "drop", D1, DAY1, marker=False)
    return ws


def _wait_for_lock(ws: Workspace, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while leases.current(ws.sessions, runs.lease_name("persons")) is None:
        assert time.monotonic() < deadline, "the first run never took the lock"
        time.sleep(0.05)


def test_a_second_run_exits_3_while_the_first_holds_the_lock(workspace: Workspace, tmp_path: Path) -> None:
    ws = _slow_source(workspace, tmp_path)
    first = _start()
    _wait_for_lock(ws)
    second = _start()
    out2, err2 = second.communicate(timeout=120)
    out1, err1 = first.communicate(timeout=120)
    assert first.returncode == 0, err1
    assert second.returncode == 3, (out2, err2)
    assert "being processed by" in err2 and "--wait" in err2
    assert [(r.status, r.attempt) for r in runs.list_runs(ws.sessions)] == [("done", 1)]
    assert published(ws) == [(1, D1)]
    ws.engine.dispose()


def test_with_wait_the_second_run_waits_and_finds_the_date_done(workspace: Workspace, tmp_path: Path) -> None:
    ws = _slow_source(workspace, tmp_path)
    first = _start()
    _wait_for_lock(ws)
    second = _start("--wait")
    out2, err2 = second.communicate(timeout=120)
    first.communicate(timeout=120)
    assert (first.returncode, second.returncode) == (0, 0), err2
    assert "already done" in out2 or "nothing new" in out2
    assert [(r.status, r.attempt) for r in runs.list_runs(ws.sessions)] == [("done", 1)]
    assert published(ws) == [(1, D1)]
    ws.engine.dispose()


def test_a_lock_left_by_a_killed_run_is_taken_over(workspace: Workspace, tmp_path: Path) -> None:
    ws = _slow_source(workspace, tmp_path)
    crashed = _start()
    _wait_for_lock(ws)
    deadline = time.monotonic() + 30
    while not runs.list_runs(ws.sessions):  # its run is recorded: it is in the middle of the job
        assert time.monotonic() < deadline
        time.sleep(0.05)
    crashed.send_signal(signal.SIGKILL)
    crashed.wait(timeout=30)
    assert leases.current(ws.sessions, runs.lease_name("persons")) is not None  # left behind
    after = _start()  # no --wait: a lease of a dead process on this host is taken over at once
    out, err = after.communicate(timeout=120)
    assert after.returncode == 0, (out, err)
    history = sorted(runs.list_runs(ws.sessions), key=lambda r: r.attempt)
    assert [(r.attempt, r.status) for r in history] == [(1, "failed"), (2, "done")]
    assert "abandoned" in (history[0].error or "")
    assert published(ws) == [(1, D1)]
    ws.engine.dispose()
