"""Publication: what each subscriber receives, published atomically and exactly once, and the trail."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest
from sqlalchemy import select, update
from tests.conftest import KBO_FULL, KBO_UPDATE, run_cli
from tests.mutations.persons_rows import insz, row, write

from mutapub.mutations import follows, grants, packaging, publication, subscribers
from mutapub.mutations.audit import AuditContext
from mutapub.mutations.errors import MutapubError
from mutapub.mutations.models import Delivery, Grant
from mutapub.mutations.snapshots import ingest_file
from mutapub.mutations.workspace import Workspace
from mutapub.schemas import load_schema

CTX = AuditContext(actor="test", command="pytest")
GENT, LEUVEN = "44021", "24062"


def _subscriber(ws: Workspace, code: str, **values: str) -> None:
    with ws.sessions() as s, s.begin():
        subscribers.add(
            s, CTX, code, password="S3cure-pass-123!", **subscribers.settings(name=code, **values)
        )


def _grant(ws: Workspace, code: str, dataset: str = "persons", **kw: object) -> int:
    kw.setdefault("legal_basis", f"VTC/{code}")
    with ws.sessions() as s, s.begin():
        return grants.add(s, CTX, code, dataset, **kw).id  # type: ignore[arg-type]


def _ingest(ws: Workspace, tmp: Path, day: int, lines: list[str]) -> None:
    path = write(tmp / f"persons-{day}.csv", lines)
    ingest_file(ws, "persons", path, dt.date(2025, 10, day))


def _files(ws: Workspace, code: str) -> list[dict]:
    """Every published delivery of a subscriber, read back from its outbox."""
    out = []
    for d, _code, _snap in publication.list_deliveries(ws, subscriber=code):
        data = (ws.publish_dir / d.path).read_bytes()
        assert hashlib.sha256(data).hexdigest() == d.sha256
        manifest = json.loads((ws.publish_dir / (d.path + ".manifest.json")).read_text())
        rows = packaging.read_rows(
            data, d.format, d.compression, d.csv_delimiter, key=load_schema(d.dataset).key
        )
        out.append({"seq": d.seq, "kind": d.kind, "rows": rows, "manifest": manifest, "data": data})
    return out


def _ops(rows: list[dict]) -> list[tuple[str, str]]:
    return [(r["op"], next(iter(r["key"].values()))) for r in rows]


DAY1 = [row(1, nis=GENT), row(2, nis=GENT), row(3, nis=LEUVEN), row(4, nis=GENT)]
DAY2 = [
    row(1, nis=LEUVEN),  # moves out of Gent
    row(2, nis=GENT, civil_status="married"),  # a change Gent may not see
    row(3, nis=GENT),  # moves into Gent
    row(4, nis=GENT, street="Molenstraat"),
    row(5, nis=GENT),  # born in Gent
    row(6, nis=LEUVEN),
]


def test_initial_extract_then_a_delta_judged_on_both_sides(workspace: Workspace, tmp_path: Path) -> None:
    _subscriber(workspace, "gent")
    _grant(workspace, "gent", groups=["identity", "address"], where=[f"municipality_nis in ({GENT})"])
    _ingest(workspace, tmp_path, 1, DAY1)
    _ingest(workspace, tmp_path, 2, DAY2)
    report = publication.publish(workspace)
    assert [(d.kind, d.seq) for d in report.deliveries] == [("initial", 1), ("delta", 2)]
    initial, delta = _files(workspace, "gent")
    assert _ops(initial["rows"]) == [("I", insz(1)), ("I", insz(2)), ("I", insz(4))]
    assert _ops(delta["rows"]) == [("D", insz(1)), ("I", insz(3)), ("U", insz(4)), ("I", insz(5))]
    by_key = {r["key"]["insz"]: r for r in delta["rows"]}
    assert by_key[insz(4)]["changed"] == ["street"] and by_key[insz(4)]["after"]["street"] == "Molenstraat"
    assert by_key[insz(3)]["after"]["municipality_nis"] == GENT
    assert "civil_status" not in by_key[insz(3)]["after"]
    header = packaging._decompress(delta["data"], "gzip").decode().splitlines()[0]
    assert header.startswith("op;insz;") and "civil_status" not in header and header.endswith(";changed")
    m = delta["manifest"]
    assert (m["sequence"], m["previous_sequence"], m["kind"], m["counts"]) == (
        2,
        1,
        "delta",
        {"I": 2, "U": 1, "D": 1},
    )
    assert (
        m["grants"][0]["legal_basis"] == "VTC/gent"
        and m["file"]["sha256"] == hashlib.sha256(delta["data"]).hexdigest()
    )
    assert publication.publish(workspace).deliveries == []  # nothing new: nothing published, no gap


def test_a_run_without_changes_publishes_an_empty_delta(workspace: Workspace, tmp_path: Path) -> None:
    _subscriber(workspace, "gent", format="jsonl", compression="none")
    _grant(workspace, "gent", groups=["identity"])
    _ingest(workspace, tmp_path, 1, DAY1)
    _ingest(workspace, tmp_path, 2, DAY1)
    publication.publish(workspace)
    initial, delta = _files(workspace, "gent")
    assert len(initial["rows"]) == 4 and delta["rows"] == [] and delta["data"] == b""
    assert delta["manifest"]["counts"] == {"I": 0, "U": 0, "D": 0}


def test_followed_keys_enter_and_leave(workspace: Workspace, tmp_path: Path) -> None:
    _subscriber(workspace, "ocmw")
    _grant(workspace, "ocmw", groups=["identity", "address", "civil_status"], followed_only=True)
    with workspace.sessions() as s, s.begin():
        follows.add(s, CTX, "ocmw", "persons", [insz(2)])
    _ingest(workspace, tmp_path, 1, DAY1)
    publication.publish(workspace)
    with workspace.sessions() as s, s.begin():
        follows.add(s, CTX, "ocmw", "persons", [insz(4)])
        follows.remove(s, CTX, "ocmw", "persons", [insz(2)])
    _ingest(workspace, tmp_path, 2, DAY2)
    publication.publish(workspace)
    initial, delta = _files(workspace, "ocmw")
    assert _ops(initial["rows"]) == [("I", insz(2))]
    assert _ops(delta["rows"]) == [("D", insz(2)), ("I", insz(4))]  # unfollowed → D, newly followed → I


def test_revoked_grant_narrows_then_stops(workspace: Workspace, tmp_path: Path) -> None:
    _subscriber(workspace, "provincie", format="jsonl")
    _grant(workspace, "provincie", groups=["identity"], where=[f"municipality_nis = '{GENT}'"])
    leuven = _grant(workspace, "provincie", groups=["address"], where=[f"municipality_nis = '{LEUVEN}'"])
    _ingest(workspace, tmp_path, 1, DAY1)
    publication.publish(workspace)
    initial = _files(workspace, "provincie")[0]
    by_key = {r["key"]["insz"]: r["after"] for r in initial["rows"]}
    assert "street" in by_key[insz(3)] and "last_name" not in by_key[insz(3)]  # per-row union of fields
    assert "last_name" in by_key[insz(1)] and "street" not in by_key[insz(1)]
    with workspace.sessions() as s, s.begin():
        grants.revoke(s, CTX, leuven)
    _ingest(workspace, tmp_path, 2, DAY1)
    publication.publish(workspace)
    delta = _files(workspace, "provincie")[1]
    assert _ops(delta["rows"]) == [("D", insz(3))]  # the population left with the revoked grant
    with workspace.sessions() as s, s.begin():
        for g in s.scalars(select(Grant).where(Grant.revoked_at.is_(None))):
            grants.revoke(s, CTX, g.id)
    _ingest(workspace, tmp_path, 3, DAY1)
    assert publication.publish(workspace).deliveries == []


def test_a_new_grant_gives_a_full_extract(workspace: Workspace, tmp_path: Path) -> None:
    _subscriber(workspace, "gent")
    _grant(workspace, "gent", groups=["identity"], where=[f"municipality_nis in ({GENT})"])
    _ingest(workspace, tmp_path, 1, DAY1)
    publication.publish(workspace)
    _grant(workspace, "gent", groups=["address"], where=[f"municipality_nis in ({LEUVEN})"])
    _ingest(workspace, tmp_path, 2, DAY2)
    publication.publish(workspace)
    second = _files(workspace, "gent")[1]
    assert second["kind"] == "initial" and second["manifest"]["kind"] == "initial"
    assert {op for op, _ in _ops(second["rows"])} == {"I"} and len(second["rows"]) == 6


def test_related_dataset_population_follows_the_registered_seat(workspace: Workspace) -> None:
    """Denominations of enterprises whose registered seat is in 2000-2999, checked against plain Python."""
    _subscriber(workspace, "economie")
    where = "kbo_address[TypeOfAddress = 'REGO'].Zipcode between '2000' and '2999'"
    _grant(workspace, "economie", dataset="kbo_denomination", columns=["Denomination"], where=[where])
    _grant(
        workspace,
        "economie",
        dataset="kbo_address",
        groups=["location"],
        where=["TypeOfAddress = 'REGO'", "Zipcode between '2000' and '2999'"],
    )
    assert run_cli("snapshot", "ingest-kbo", str(KBO_FULL)).returncode == 0
    assert run_cli("snapshot", "ingest-kbo", str(KBO_UPDATE)).returncode == 0
    publication.publish(workspace)
    files = [f for f in _files(workspace, "economie")]
    deliveries = publication.list_deliveries(workspace, subscriber="economie", dataset="kbo_denomination")
    assert [d.kind for d, _, _ in deliveries] == ["initial", "delta"]

    import pyarrow.parquet as pq

    def snapshot_rows(dataset: str, day: str) -> list[dict]:
        snaps = [s for s in run_json("snapshot", "list", dataset) if s["date"] == day]
        from mutapub.mutations.snapshots import list_snapshots

        snap = next(s for s in list_snapshots(workspace, dataset) if s.id == snaps[0]["id"])
        return pq.read_table(workspace.path_in(snap.path)).to_pylist()

    def selected(day: str) -> set[tuple]:
        seats = {
            a["EntityNumber"]
            for a in snapshot_rows("kbo_address", day)
            if a["TypeOfAddress"] == "REGO" and a["Zipcode"] is not None and "2000" <= a["Zipcode"] <= "2999"
        }
        return {
            tuple(r.values()) for r in snapshot_rows("kbo_denomination", day) if r["EntityNumber"] in seats
        }

    before, after = selected("2025-10-10"), selected("2025-10-11")
    key = load_schema("kbo_denomination").key
    delta_rows = next(
        f for f in files if f["kind"] == "delta" and f["manifest"]["dataset"] == "kbo_denomination"
    )["rows"]
    got = {(r["op"], tuple(r["key"][k] for k in key)) for r in delta_rows}
    assert got == {("I", k) for k in after - before} | {("D", k) for k in before - after}
    assert got  # the real update moves some enterprises in or out of the range


def run_json(*args: str) -> list[dict]:
    result = run_cli(*args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_fast_path_equals_judging_whole_snapshots() -> None:
    """Selecting from the change set's rows only gives what judging both whole snapshots gives."""
    from mutapub.mutations.diff import diff
    from mutapub.mutations.grants import GrantRule, effective_policy

    schema = load_schema("persons")
    names = list(schema.column_names)

    def table(lines: list[str]) -> pa.Table:
        cols = list(zip(*[line.split(";") for line in lines], strict=True))
        return pa.table(
            {n: pa.array([v or None for v in c], pa.string()) for n, c in zip(names, cols, strict=True)}
        )

    old, new = table(DAY1), table(DAY2)
    changes = diff(old, new, schema)
    rules = [
        GrantRule(
            "gent",
            "persons",
            ("insz", "last_name", "street", "municipality_nis"),
            "x",
            (f"municipality_nis = '{GENT}'",),
            id=1,
        )
    ]
    policy = effective_policy(rules, "persons", dt.date(2025, 10, 2))
    whole = publication.select_delta(policy, policy, schema, old, new, changes, {}, {})
    few_old, few_new = publication.changed_rows(changes, schema)
    fast = publication.select_delta(policy, policy, schema, few_old, few_new, changes, {}, {})
    assert whole[0].equals(fast[0]) and whole[2].equals(fast[2])
    assert all((whole[1][f] == fast[1][f]).all() for f in whole[1])


# --- atomicity and exactly-once ------------------------------------------------------------------


def _published_state(ws: Workspace) -> list[tuple]:
    rows = publication.list_deliveries(ws)
    return [
        (code, d.dataset, d.seq, d.kind, d.status, d.rows, json.dumps(d.counts, sort_keys=True))
        for d, code, _ in rows
    ]


def _check_outbox(ws: Workspace) -> None:
    """Every file in the outboxes is a complete published delivery or its manifest, nothing else."""
    listed = {d.path: d for d, _, _ in publication.list_deliveries(ws, status="published")}
    on_disk = {str(p.relative_to(ws.publish_dir)) for p in ws.publish_dir.rglob("*") if p.is_file()}
    assert on_disk == set(listed) | {p + ".manifest.json" for p in listed}
    for path, d in listed.items():
        assert hashlib.sha256((ws.publish_dir / path).read_bytes()).hexdigest() == d.sha256
    assert not [p for p in ws.staging_dir.rglob("*") if p.is_file()]


def _scenario(ws: Workspace, tmp: Path) -> None:
    _subscriber(ws, "gent")
    _subscriber(ws, "leuven", format="xml", compression="zip")
    _grant(ws, "gent", groups=["identity", "address"], where=[f"municipality_nis in ({GENT})"])
    _grant(ws, "leuven", groups=["identity"], where=[f"municipality_nis in ({LEUVEN})"])
    _ingest(ws, tmp, 1, DAY1)
    _ingest(ws, tmp, 2, DAY2)


@pytest.mark.parametrize(
    "step", ["after-plan", "after-staging", "after-rename", "after-manifest", "after-commit"]
)
def test_a_crash_at_any_step_then_a_rerun_gives_an_uninterrupted_run(
    workspace: Workspace, tmp_path: Path, step: str
) -> None:
    _scenario(workspace, tmp_path)
    crashed = run_cli("publish", env={"MUTAPUB_CRASH_AT": step})
    assert crashed.returncode == 99, crashed.stderr
    partial = [d for d, _, _ in publication.list_deliveries(workspace) if d.status == "published"]
    for d in partial:  # what was marked published has its file
        assert (workspace.publish_dir / d.path).is_file()
    os.environ.pop("MUTAPUB_CRASH_AT", None)
    assert run_cli("publish").returncode == 0
    _check_outbox(workspace)
    state = _published_state(workspace)
    assert [(c, s, k) for c, _, s, k, *_ in state] == [
        ("gent", 1, "initial"),
        ("gent", 2, "delta"),
        ("leuven", 1, "initial"),
        ("leuven", 2, "delta"),
    ]
    assert all(
        st == "published" for *_, st, _r, _c in [(x[0], x[1], x[2], x[3], x[4], x[5], x[6]) for x in state]
    )
    assert run_cli("publish").returncode == 0 and _published_state(workspace) == state


def test_two_publishers_at_once_publish_each_delivery_once(workspace: Workspace, tmp_path: Path) -> None:
    _scenario(workspace, tmp_path)
    cmd = [sys.executable, "-m", "mutapub.mutations.cli", "publish"]
    procs = [
        subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)
    ]
    codes = [p.wait(timeout=300) for p in procs]
    assert codes == [0, 0], [p.stderr.read() for p in procs if p.stderr]
    _check_outbox(workspace)
    assert len(_published_state(workspace)) == 4


# --- bad input -----------------------------------------------------------------------------------


def test_a_grant_for_another_schema_version_is_refused(workspace: Workspace, tmp_path: Path) -> None:
    _scenario(workspace, tmp_path)
    with workspace.sessions() as s, s.begin():
        s.execute(update(Grant).where(Grant.id == 1).values(schema_version=99))
    result = run_cli("publish")
    assert (
        result.returncode == 1 and "schema version 99" in result.stderr and "Traceback" not in result.stderr
    )
    assert publication.list_deliveries(workspace) == []
    assert not list(workspace.publish_dir.rglob("*.gz"))


def test_a_missing_staging_directory_is_named(workspace: Workspace, tmp_path: Path) -> None:
    _scenario(workspace, tmp_path)
    shutil.rmtree(workspace.staging_dir)
    result = run_cli("publish")
    assert result.returncode == 1 and "staging directory" in result.stderr
    assert [d.status for d, _, _ in publication.list_deliveries(workspace)] == ["planned"] * 2
    assert not [p for p in workspace.publish_dir.rglob("*") if p.is_file()]
    workspace.staging_dir.mkdir()
    assert run_cli("publish").returncode == 0
    _check_outbox(workspace)


def test_a_full_disk_publishes_nothing_half(
    workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _scenario(workspace, tmp_path)
    real_write = packaging.write

    def full_disk(*args: object, **kwargs: object) -> object:
        out = args[2]
        out.write(b"partial bytes")  # type: ignore[attr-defined]
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(packaging, "write", full_disk)
    with pytest.raises(MutapubError, match="No space left on device"):
        publication.publish(workspace)
    assert not [p for p in workspace.publish_dir.rglob("*") if p.is_file()]
    assert not [p for p in workspace.staging_dir.rglob("*") if p.is_file()]
    monkeypatch.setattr(packaging, "write", real_write)
    publication.publish(workspace)
    _check_outbox(workspace)


def _failing_last_write(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fourth data file written (leuven's delta, after gent's delta) finds the disk full."""
    real_write, calls = packaging.write, []

    def write(*args: object, **kwargs: object) -> object:
        calls.append(1)
        if len(calls) == 4:
            raise OSError(28, "No space left on device")
        return real_write(*args, **kwargs)

    monkeypatch.setattr(packaging, "write", write)


def test_a_failed_delivery_leaves_the_earlier_ones_of_its_batch_published(
    workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _scenario(workspace, tmp_path)
    _failing_last_write(monkeypatch)
    with pytest.raises(MutapubError, match="No space left on device"):
        publication.publish(workspace)
    status = {(code, d.seq): d.status for d, code, _ in publication.list_deliveries(workspace)}
    assert status == {
        ("gent", 1): "published",
        ("gent", 2): "published",  # in the outbox before leuven's failed, so recorded
        ("leuven", 1): "published",
        ("leuven", 2): "planned",
    }
    _check_outbox(workspace)


def test_a_database_failing_after_a_failed_delivery_keeps_the_first_error(
    workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy.exc import OperationalError

    _scenario(workspace, tmp_path)
    _failing_last_write(monkeypatch)
    real_record = publication.record_disclosures

    def record(session: object, deliveries: list) -> None:
        if any(d_id for d_id, *_ in deliveries if d_id > 2):  # the deltas' batch: the database is gone
            raise OperationalError("INSERT INTO disclosures", {}, Exception("database is locked"))
        real_record(session, deliveries)  # type: ignore[arg-type]

    monkeypatch.setattr(publication, "record_disclosures", record)
    with pytest.raises(MutapubError, match="No space left on device") as failed:
        publication.publish(workspace)
    assert any("could not be marked published" in n for n in failed.value.__notes__)
    status = {(code, d.seq): d.status for d, code, _ in publication.list_deliveries(workspace)}
    assert status[("gent", 2)] == "planned" and status[("leuven", 2)] == "planned"
    monkeypatch.undo()
    publication.publish(workspace)  # gent's delta again, with the same name and bytes
    _check_outbox(workspace)
    assert {d.status for d, _, _ in publication.list_deliveries(workspace)} == {"published"}


def test_an_initial_extract_starts_once_the_deliveries_before_it_are_recorded(
    workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _scenario(workspace, tmp_path)
    real_write_files, seen = publication.write_files, []

    def write_files(ws: Workspace, session: object, delivery: Delivery, *args: object) -> object:
        with ws.sessions() as other:  # what another process (the FTPS server, an auditor) sees now
            seen.append((delivery.kind, sorted(other.scalars(select(Delivery.status)))))
        return real_write_files(ws, session, delivery, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(publication, "write_files", write_files)
    publication.publish(workspace)
    assert seen[:2] == [
        ("initial", ["planned", "planned"]),
        ("initial", ["planned", "published"]),  # gent's extract was committed before leuven's began
    ]


def test_an_outbox_escaping_the_publish_root_is_refused(workspace: Workspace, tmp_path: Path) -> None:
    _scenario(workspace, tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (workspace.publish_dir / "gent").symlink_to(elsewhere)
    result = run_cli("publish")
    assert result.returncode == 1 and "outside the publish root" in result.stderr
    assert not list(elsewhere.rglob("*"))


# --- resend, retention, disclosures, removal -----------------------------------------------------


def test_purge_then_resend_gives_the_same_bytes(workspace: Workspace, tmp_path: Path) -> None:
    _scenario(workspace, tmp_path)
    publication.publish(workspace)
    before = {d.path: d.sha256 for d, _, _ in publication.list_deliveries(workspace)}
    assert run_cli("retention", "purge", "--older-than", "0d").returncode == 0
    assert {d.status for d, _, _ in publication.list_deliveries(workspace)} == {"expired"}
    assert not [p for p in workspace.publish_dir.rglob("*") if p.is_file()]
    result = run_cli("deliveries", "resend", "leuven", "persons", "--from-seq", "1")
    assert result.returncode == 0, result.stderr
    for d, _code, _ in publication.list_deliveries(workspace, subscriber="leuven"):
        assert d.status == "published"
        assert hashlib.sha256((workspace.publish_dir / d.path).read_bytes()).hexdigest() == before[d.path]


def test_deliveries_list_json_and_disclosures(workspace: Workspace, tmp_path: Path) -> None:
    _scenario(workspace, tmp_path)
    publication.publish(workspace)
    listed = run_json("deliveries", "list", "--subscriber", "gent")
    assert [(d["seq"], d["kind"], d["status"]) for d in listed] == [
        (1, "initial", "published"),
        (2, "delta", "published"),
    ]
    assert {
        "subscriber",
        "dataset",
        "seq",
        "kind",
        "path",
        "sha256",
        "size",
        "rows",
        "status",
        "created",
    } <= set(listed[0])
    assert listed[0]["path"].startswith("gent/outbox/persons/gent_persons-mutaties_")
    trail = run_json("disclosures", insz(3))
    assert [(t["subscriber"], t["op"], t["date"]) for t in trail] == [
        ("leuven", "I", "2025-10-01"),
        ("gent", "I", "2025-10-02"),
        ("leuven", "D", "2025-10-02"),
    ]
    assert trail[1]["legal_basis"] == ["VTC/gent"] and trail[1]["downloaded"] is False
    assert run_json("disclosures", insz(2)) == [
        d for d in run_json("disclosures", insz(2)) if d["subscriber"] == "gent"
    ]
    removed = run_cli("subscriber", "remove", "gent")
    assert removed.returncode != 0 and "suspend" in removed.stderr


def test_disclosures_find_an_enterprise_written_either_way(workspace: Workspace) -> None:
    _subscriber(workspace, "economie")
    _grant(workspace, "economie", dataset="kbo_enterprise", groups=["status"])
    assert run_cli("snapshot", "ingest-kbo", str(KBO_FULL)).returncode == 0
    publication.publish(workspace)
    with workspace.sessions() as s:
        first = s.scalars(select(Delivery)).first()
    assert first is not None
    dotted = run_json("disclosures", "0502.503.253")
    assert dotted and dotted == run_json("disclosures", "0502503253")


def test_disclosures_of_a_mistyped_number_say_so(workspace: Workspace, tmp_path: Path) -> None:
    _scenario(workspace, tmp_path)
    publication.publish(workspace)
    mistyped = run_cli("disclosures", insz(3)[:-1])  # a digit short: neither an INSZ nor a KBO number
    assert mistyped.returncode == 1
    assert f"{insz(3)[:-1]!r} is neither an INSZ" in mistyped.stderr and mistyped.stdout == ""
    nobody = run_cli("disclosures", insz(9))  # valid, never delivered
    assert nobody.returncode == 0 and nobody.stdout.strip() == "(none)"
    assert run_json("disclosures", "0403.170.701") == []  # a valid enterprise number, never delivered


def test_a_published_snapshot_cannot_be_replaced(workspace: Workspace, tmp_path: Path) -> None:
    _scenario(workspace, tmp_path)
    publication.publish(workspace)
    other = write(tmp_path / "other.csv", DAY1[:2])
    result = run_cli("snapshot", "ingest", "persons", str(other), "--date", "2025-10-02", "--replace")
    assert result.returncode == 1 and "already published" in result.stderr
    assert [s["rows"] for s in run_json("snapshot", "list")] == [4, 6]
