"""The nightly job: each date once, in order, recorded; and every kind of failure recorded, publishing
nothing for its date, leaving the earlier state as it was, retried by the next run."""

from __future__ import annotations

import datetime as dt
import errno
import hashlib
import json
import shutil
from pathlib import Path

import pytest
from tests.conftest import KBO_FULL, KBO_UPDATE, run_cli
from tests.jobs.helpers import (
    DAY1,
    DAY2,
    DAY3,
    GENT,
    configure,
    drop_file,
    persons_source,
    published,
    published_snapshots,
    snapshot_dates,
    subscriber_with_grant,
)
from tests.jobs.sftp_server import sftp_server
from tests.mutations.persons_rows import insz, row

from mutapub.jobs import job, runs, sources
from mutapub.mutations.models import utcnow
from mutapub.mutations.workspace import Workspace

D1, D2, D3 = dt.date(2025, 10, 1), dt.date(2025, 10, 2), dt.date(2025, 10, 3)


def _run(ws: Workspace, day: dt.date) -> job.Outcome:
    return job.run_date(ws, "persons", day, utcnow())


def _all(ws: Workspace) -> list[job.Outcome]:
    return job.run_dates(ws, "persons", job.offered_dates(ws, "persons"), utcnow)


def test_each_offered_date_runs_once_in_order_and_a_rerun_publishes_nothing(
    workspace: Workspace, tmp_path: Path
) -> None:
    ws = persons_source(workspace, tmp_path / "drop")
    subscriber_with_grant(ws)
    drop_file(tmp_path / "drop", D2, DAY2)
    drop_file(tmp_path / "drop", D1, DAY1)
    outcomes = _all(ws)
    assert [(o.date, o.run.status, o.run.deliveries) for o in outcomes] == [(D1, "done", 1), (D2, "done", 1)]
    assert published(ws) == [(1, D1), (2, D2)]
    run = runs.get_run(ws.sessions, outcomes[1].run.id)
    assert [s["step"] for s in run.steps] == ["space", "fetch", "ingest", "diff", "inbox", "publish", "purge"]
    assert all(s["seconds"] >= 0 for s in run.steps)
    assert run.counts["rows"] == 3 and (
        run.counts["inserts"],
        run.counts["updates"],
        run.counts["deletes"],
    ) == (1, 1, 1)
    assert run.started_at is not None and run.ended_at is not None and run.error is None
    # again: nothing new is offered; and a date asked for explicitly is already done
    assert job.offered_dates(ws, "persons") == []
    again = _run(ws, D2)
    assert again.already_done and again.run.id == outcomes[1].run.id
    assert published(ws) == [(1, D1), (2, D2)]
    assert len(runs.list_runs(ws.sessions)) == 2
    ws.engine.dispose()


def test_a_missing_source_fails_the_date_and_the_next_run_retries(
    workspace: Workspace, tmp_path: Path
) -> None:
    ws = persons_source(workspace, tmp_path / "drop")
    subscriber_with_grant(ws)
    drop_file(tmp_path / "drop", D1, DAY1)
    assert _run(ws, D1).ok
    drop_file(tmp_path / "drop", D2, DAY2, marker=False)  # still being delivered: no marker yet
    failed = _run(ws, D2)
    assert (failed.run.status, failed.run.failed_step) == ("failed", "fetch")
    assert "no complete file for 2025-10-02 yet" in (failed.run.error or "")
    _nothing_published_for_d2(ws)
    (tmp_path / "drop" / "persons_2025-10-02.csv.done").write_text("")
    retry = _run(ws, D2)
    assert (retry.run.status, retry.run.attempt, retry.run.deliveries) == ("done", 2, 1)
    assert published(ws) == [(1, D1), (2, D2)]
    ws.engine.dispose()


def _nothing_published_for_d2(ws: Workspace) -> None:
    assert published(ws) == [(1, D1)]
    assert snapshot_dates(ws) == [D1]
    assert published_snapshots(ws) == 1
    assert not any(
        p.name.endswith(".csv")
        for p in (ws.publish_dir / "gent" / "outbox" / "persons").iterdir()
        if "000002" in p.name
    )


def test_a_snapshot_failing_validation_fails_the_date_and_publishes_nothing(
    workspace: Workspace, tmp_path: Path
) -> None:
    ws = persons_source(workspace, tmp_path / "drop")
    subscriber_with_grant(ws)
    drop_file(tmp_path / "drop", D1, DAY1)
    assert _run(ws, D1).ok
    bad = [*DAY2[:-1], row(4, nis=GENT, insz="85073000199")]  # a wrong INSZ check digit
    drop_file(tmp_path / "drop", D2, bad)
    failed = _run(ws, D2)
    assert (failed.run.status, failed.run.failed_step) == ("failed", "ingest")
    assert "85073000199" in (failed.run.error or "") or "insz" in (failed.run.error or "")
    _nothing_published_for_d2(ws)
    # a later date waits for the failed one: nothing is published out of order
    drop_file(tmp_path / "drop", D3, DAY3)
    held = _all(ws)
    assert [(o.date, o.run.status) for o in held] == [(D2, "failed")]
    _nothing_published_for_d2(ws)
    drop_file(tmp_path / "drop", D2, DAY2)  # the source delivers a corrected file
    fixed = _all(ws)
    assert [(o.date, o.run.status, o.run.attempt) for o in fixed] == [(D2, "done", 3), (D3, "done", 1)]
    assert published(ws) == [(1, D1), (2, D2), (3, D3)]
    ws.engine.dispose()


def test_a_full_disk_fails_the_date_before_anything_is_written(
    workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = persons_source(workspace, tmp_path / "drop")
    subscriber_with_grant(ws)
    drop_file(tmp_path / "drop", D1, DAY1)
    assert _run(ws, D1).ok
    drop_file(tmp_path / "drop", D2, DAY2)
    # the workspace's filesystem has less free space than the configured minimum
    monkeypatch.setenv("MUTAPUB_JOBS_MIN_FREE_MB", str(10**12))
    low = _run(configure(ws, ""), D2)
    assert (low.run.status, low.run.failed_step) == ("failed", "space")
    assert "MB free, less than jobs.min_free_mb" in (low.run.error or "")
    monkeypatch.delenv("MUTAPUB_JOBS_MIN_FREE_MB")
    # the disk fills up while the file is being copied in (ENOSPC from the write)
    real_copy = shutil.copyfileobj

    def disk_full(src, dst, length=0):  # type: ignore[no-untyped-def]
        dst.write(src.read(10))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(sources.shutil, "copyfileobj", disk_full)
    full = _run(ws, D2)
    assert (full.run.status, full.run.failed_step) == ("failed", "fetch")
    assert "No space left on device" in (full.run.error or "")
    assert [p.name for p in (ws.home / "incoming" / "persons").iterdir()] == ["persons_2025-10-01.csv"]
    _nothing_published_for_d2(ws)
    monkeypatch.setattr(sources.shutil, "copyfileobj", real_copy)
    retry = _run(ws, D2)
    assert (retry.run.status, retry.run.attempt) == ("done", 3)
    assert published(ws) == [(1, D1), (2, D2)]
    ws.engine.dispose()


def test_an_sftp_server_that_is_down_fails_the_date_and_the_next_run_fetches(
    workspace: Workspace, tmp_path: Path
) -> None:
    remote = tmp_path / "remote"
    (remote / "persons").mkdir(parents=True)
    subscriber_with_grant(workspace)
    for day, lines in ((D1, DAY1), (D2, DAY2)):
        path = drop_file(remote / "persons", day, lines, marker=False)
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        (remote / "persons" / (path.name + ".sha256")).write_text(f"{sha}  {path.name}\n")

    def sftp_ws(server) -> Workspace:  # type: ignore[no-untyped-def]
        toml = (
            f'[sources.persons]\nkind = "sftp"\npath = "/persons"\nglob = "persons_*.csv"\nhost = "{server.host}"\n'
            f'port = {server.port}\nuser = "{server.user}"\nprivate_key = "{server.client_key_file}"\n'
            f'known_hosts = "{server.known_hosts}"\ntimeout_seconds = 5.0\n'
        )
        text = workspace.settings.config_file.read_text().split("[sources.persons]")[0]
        workspace.settings.config_file.write_text(text)
        return configure(workspace, toml)

    with sftp_server(remote, tmp_path) as server:
        ws = sftp_ws(server)
        assert _run(ws, D1).ok
    down = _run(ws, D2)  # the server is gone now
    assert (down.run.status, down.run.failed_step) == ("failed", "fetch")
    assert "cannot reach SFTP" in (down.run.error or "")
    _nothing_published_for_d2(ws)
    with sftp_server(remote, tmp_path) as server:
        ws = sftp_ws(server)
        retry = _run(ws, D2)
    assert (retry.run.status, retry.run.attempt, retry.run.deliveries) == ("done", 2, 1)
    assert retry.run.steps[1]["verified"] is True
    assert published(ws) == [(1, D1), (2, D2)]
    ws.engine.dispose()


def test_inbox_uploads_are_applied_before_publishing(
    workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MUTAPUB_JOBS_INBOX_SETTLE_SECONDS", "0")
    ws = persons_source(workspace, tmp_path / "drop")
    subscriber_with_grant(ws, "ocmw", where=[], followed_only=True)
    inbox = ws.publish_dir / "ocmw" / "inbox" / "persons"
    inbox.mkdir(parents=True)
    (inbox / "follow-add-1.csv").write_text(f"insz\n{insz(1)}\n{insz(3)}\nnot-a-key\n")
    (inbox / "follow-remove-x.csv").write_bytes(b"\xff\xfe binary")
    drop_file(tmp_path / "drop", D1, DAY1)
    outcome = _run(ws, D1)
    assert outcome.ok
    assert outcome.run.counts["inbox_accepted"] == 2 and outcome.run.counts["inbox_rejected"] == 2
    outbox = ws.publish_dir / "ocmw" / "outbox" / "persons"
    result = (outbox / "follow-add-1.csv.result.txt").read_text()
    assert "accepted: 2" in result and "line 4: 'not-a-key'" in result
    assert "not UTF-8" in (outbox / "follow-remove-x.csv.result.txt").read_text()
    assert list(inbox.iterdir()) == []
    archived = sorted(
        p.name.split("-", 1)[1] for p in (ws.home / "inbox-archive" / "ocmw" / "persons").iterdir()
    )
    assert archived == ["follow-add-1.csv", "follow-remove-x.csv"]
    from mutapub.mutations import packaging, publication
    from mutapub.schemas import load_schema

    ((d, _code, _snap),) = publication.list_deliveries(ws, subscriber="ocmw")
    rows = packaging.read_rows(
        (ws.publish_dir / d.path).read_bytes(),
        d.format,
        d.compression,
        d.csv_delimiter,
        key=load_schema("persons").key,
    )
    assert sorted(r["key"]["insz"] for r in rows) == sorted([insz(1), insz(3)])
    ws.engine.dispose()


def test_kbo_full_then_update_in_extract_order(workspace: Workspace, tmp_path: Path) -> None:
    drop = tmp_path / "kbo"
    drop.mkdir()
    for z in (KBO_UPDATE, KBO_FULL):
        shutil.copy(z, drop)
        (drop / (z.name + ".done")).write_text("")
    ws = configure(
        workspace,
        f'[sources.kbo]\npath = "{drop}"\nglob = "KboOpenData_*.zip"\nformat = "kbo"\ndate_offset_days = -1\ncomplete = ["marker"]',
    )
    assert job.offered_dates(ws, "kbo") == [dt.date(2025, 10, 10), dt.date(2025, 10, 11)]
    outcomes = job.run_dates(ws, "kbo", job.offered_dates(ws, "kbo"), utcnow)
    assert [(o.date, o.run.status) for o in outcomes] == [
        (dt.date(2025, 10, 10), "done"),
        (dt.date(2025, 10, 11), "done"),
    ]
    assert snapshot_dates(ws, "kbo_enterprise") == [dt.date(2025, 10, 10), dt.date(2025, 10, 11)]
    assert (
        outcomes[1].run.counts["inserts"]
        + outcomes[1].run.counts["updates"]
        + outcomes[1].run.counts["deletes"]
        > 0
    )
    ws.engine.dispose()


def test_kbo_update_with_the_wrong_snapshot_date_is_refused(
    sqlite_workspace: Workspace, tmp_path: Path
) -> None:
    drop = tmp_path / "kbo"
    drop.mkdir()
    shutil.copy(KBO_FULL, drop)
    ws = configure(
        sqlite_workspace,
        f'[sources.kbo]\npath = "{drop}"\nglob = "*.zip"\nformat = "kbo"\nstable_seconds = 0.0',
    )
    failed = job.run_date(ws, "kbo", dt.date(2025, 10, 11), utcnow())
    assert failed.run.status == "failed" and "date_offset_days" in (failed.run.error or "")
    assert snapshot_dates(ws, "kbo_enterprise") == [dt.date(2025, 10, 10)]  # registered, never published
    ws.engine.dispose()


# --- the command ----------------------------------------------------------------------------------


def test_run_command_exit_codes_json_logs_and_runs_listing(workspace: Workspace, tmp_path: Path) -> None:
    ws = persons_source(workspace, tmp_path / "drop")
    subscriber_with_grant(ws)
    drop_file(tmp_path / "drop", D1, DAY1)
    done = run_cli("run", "--log-format", "json")
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stderr.splitlines()]
    assert {"run-start", "step-end", "run-done"} <= {e.get("event") for e in events}
    assert all({"ts", "level", "message"} <= set(e) for e in events)
    again = run_cli("run", "--date", "2025-10-01")
    assert again.returncode == 0 and "already done" in again.stdout and "nothing published" in again.stdout
    missing = run_cli("run", "--date", "2025-10-02")
    assert missing.returncode == 1 and "FAILED at fetch" in missing.stdout
    assert run_cli("run", "--dataset", "vehicles").returncode == 2
    assert run_cli("run", "--date", "yesterday").returncode == 2
    listed = run_cli("runs", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [(r["date"], r["status"], r["deliveries"]) for r in rows] == [
        ("2025-10-02", "failed", 0),
        ("2025-10-01", "done", 1),
    ]
    assert {"id", "dataset", "date", "status", "started", "ended", "deliveries", "error"} <= set(rows[0])
    assert "no file for 2025-10-02" in rows[0]["error"]
    shown = json.loads(run_cli("runs", "show", str(rows[1]["id"]), "--json").stdout)
    assert [s["step"] for s in shown["steps"]][0] == "space" and shown["counts"]["rows"] == 3
    text = run_cli("runs", "show", str(rows[0]["id"]))
    assert "failed at: fetch" in text.stdout
    assert run_cli("runs", "show", "999").returncode == 1
    ws.engine.dispose()


def test_run_with_nothing_configured_has_nothing_to_do(sqlite_workspace: Workspace) -> None:
    done = run_cli("run")
    assert done.returncode == 0 and "nothing to do" in done.stdout
    assert json.loads(run_cli("runs", "list", "--json").stdout) == []
    assert run_cli("scheduler", "list").returncode == 0
