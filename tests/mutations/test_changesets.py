"""Change sets through the store and the CLI: computed once, same bytes, stable JSON contracts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tests.conftest import KBO_FULL, KBO_UPDATE, run_cli
from tests.mutations.persons_rows import insz, row, write

from mutapub.mutations import catalog, changesets
from mutapub.mutations.errors import NotFound
from mutapub.mutations.snapshots import ingest_file
from mutapub.mutations.workspace import Workspace


@pytest.fixture
def two_days(workspace: Workspace, tmp_path: Path) -> Workspace:
    """persons on 2025-10-01 and 2025-10-02: one insert, one update, one delete."""
    day1 = write(tmp_path / "d1.csv", [row(1), row(2), row(3)])
    day2 = write(tmp_path / "d2.csv", [row(4), row(2, street="Molenstraat"), row(1)])
    assert run_cli("snapshot", "ingest", "persons", str(day1), "--date", "2025-10-01").returncode == 0
    assert run_cli("snapshot", "ingest", "persons", str(day2), "--date", "2025-10-02").returncode == 0
    return workspace


def test_diff_json_contract_and_recompute_is_a_no_op(two_days: Workspace) -> None:
    first = run_cli("diff", "persons", "--json")
    assert first.returncode == 0, first.stderr
    doc = json.loads(first.stdout)
    assert doc == {"id": 1, "dataset": "persons", "from": 1, "to": 2, "counts": {"I": 1, "U": 1, "D": 1}}
    stored = changesets.get(two_days, 1)
    before = two_days.path_in(stored.path).read_bytes()
    again = run_cli("diff", "persons", "--from", "1", "--to", "2", "--json")
    assert json.loads(again.stdout) == doc
    assert two_days.path_in(stored.path).read_bytes() == before
    assert len(changesets.list_all(two_days)) == 1


def test_diff_computes_a_change_set_not_computed_at_ingest(workspace: Workspace, tmp_path: Path) -> None:
    day1 = write(tmp_path / "d1.csv", [row(1), row(2)])
    day2 = write(tmp_path / "d2.csv", [row(2, street="Molenstraat"), row(3)])
    run_cli("snapshot", "ingest", "persons", str(day1), "--date", "2025-10-01")
    ingested = run_cli("snapshot", "ingest", "persons", str(day2), "--date", "2025-10-02", "--no-diff")
    assert ingested.returncode == 0 and "change set" not in ingested.stdout
    assert catalog.stored_change_set(workspace, "persons") is None
    first = run_cli("diff", "persons")
    assert first.returncode == 0, first.stderr
    assert (
        "change set 1 of persons (computed): snapshots 1 → 2, 1 inserts, 1 updates, 1 deletes" in first.stdout
    )
    assert "(already computed)" in run_cli("diff", "persons").stdout


def test_a_stored_change_set_is_found_without_the_orm(two_days: Workspace) -> None:
    """What `mutapub diff` mostly does, with SQLAlchemy Core alone: the same change set as the ORM's."""
    stored = changesets.get(two_days, 1)
    found = catalog.stored_change_set(two_days, "persons")
    assert found is not None
    assert (found.id, found.from_snapshot_id, found.to_snapshot_id, found.counts) == (
        stored.id,
        stored.from_snapshot_id,
        stored.to_snapshot_id,
        stored.counts,
    )
    assert catalog.stored_change_set(two_days, "persons", 1, 2) == found
    assert catalog.stored_change_set(two_days, "persons", 2, 1) is None  # compute says what is wrong
    assert catalog.stored_change_set(two_days, "vehicles", 1, 2) is None
    assert catalog.stored_change_set(two_days, "persons", 1, None) is None
    probe = (
        "import sys; from mutapub.mutations.cli import main; main(['diff', 'persons'], standalone_mode=False); "
        "print('orm imported' if 'sqlalchemy.orm' in sys.modules else 'core only')"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=dict(os.environ))
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "change set 1 of persons (already computed): snapshots 1 → 2, 1 inserts, 1 updates, 1 deletes",
        "core only",
    ]


def test_changes_show_json_contract(two_days: Workspace) -> None:
    run_cli("diff", "persons")
    shown = run_cli("changes", "show", "1", "--json")
    assert shown.returncode == 0, shown.stderr
    records = json.loads(shown.stdout)
    assert [r["op"] for r in records] == ["U", "D", "I"]  # ordered by key
    update, delete, insert = records
    assert update == {
        "op": "U",
        "key": {"insz": insz(2)},
        "changes": {"street": ["Kerkstraat", "Molenstraat"]},
    }
    assert delete["key"] == {"insz": insz(3)} and delete["row"]["insz"] == insz(3)
    assert insert["row"]["box"] is None and insert["row"]["street"] == "Kerkstraat"
    assert len(json.loads(run_cli("changes", "show", "1", "--json", "--limit", "1").stdout)) == 1
    listed = json.loads(run_cli("changes", "list", "--json").stdout)
    assert listed == [{"id": 1, "dataset": "persons", "from": 1, "to": 2, "counts": {"I": 1, "U": 1, "D": 1}}]


def test_snapshot_list_json_contract(two_days: Workspace) -> None:
    listed = json.loads(run_cli("snapshot", "list", "--json").stdout)
    assert [set(s) for s in listed] == [{"id", "dataset", "date", "rows", "source", "sha256"}] * 2
    assert [(s["dataset"], s["date"], s["rows"]) for s in listed] == [
        ("persons", "2025-10-01", 3),
        ("persons", "2025-10-02", 3),
    ]


def test_diff_needs_two_snapshots(workspace: Workspace, tmp_path: Path) -> None:
    ingest_file(
        workspace, "persons", write(tmp_path / "d1.csv", [row(1)]), __import__("datetime").date(2025, 10, 1)
    )
    with pytest.raises(NotFound, match="only one snapshot"):
        changesets.compute(workspace, "persons")
    result = run_cli("diff", "persons")
    assert result.returncode == 1 and "only one snapshot (2025-10-01)" in result.stderr


def test_diff_refuses_backwards_or_foreign_snapshots(two_days: Workspace) -> None:
    assert "must be older" in run_cli("diff", "persons", "--from", "2", "--to", "1").stderr
    assert "no snapshot 9" in run_cli("diff", "persons", "--from", "1", "--to", "9").stderr
    assert "is of persons" in run_cli("diff", "vehicles", "--from", "1", "--to", "2").stderr


def test_kbo_full_then_update(workspace: Workspace) -> None:
    full = run_cli("snapshot", "ingest-kbo", str(KBO_FULL))
    assert full.returncode == 0, full.stderr
    update = run_cli("snapshot", "ingest-kbo", str(KBO_UPDATE))
    assert update.returncode == 0, update.stderr
    again = run_cli("snapshot", "ingest-kbo", str(KBO_UPDATE))
    assert again.returncode == 0 and "unchanged" in again.stdout
    expected = {  # independently: apply the update to the full extract with pandas and compare per table
        "kbo_enterprise": (24, 4, 158),
        "kbo_establishment": (22, 0, 14),
        "kbo_branch": (0, 0, 0),
        "kbo_denomination": (53, 0, 172),
        "kbo_address": (66, 2, 51),
        "kbo_contact": (40, 0, 13),
        "kbo_activity": (425, 0, 84),
    }
    for dataset, (i, u, d) in expected.items():
        out = run_cli("diff", dataset, "--json")
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["counts"] == {"I": i, "U": u, "D": d}, dataset
    listed = json.loads(run_cli("snapshot", "list", "kbo_enterprise", "--json").stdout)
    assert [s["date"] for s in listed] == ["2025-10-10", "2025-10-11"]


def test_kbo_update_without_a_full_extract_is_refused(workspace: Workspace) -> None:
    result = run_cli("snapshot", "ingest-kbo", str(KBO_UPDATE))
    assert result.returncode != 0 and "ingest a full extract first" in result.stderr
    assert json.loads(run_cli("snapshot", "list", "--json").stdout) == []


def test_kbo_update_out_of_sequence_needs_force(workspace: Workspace, tmp_path: Path) -> None:
    import zipfile

    assert run_cli("snapshot", "ingest-kbo", str(KBO_FULL)).returncode == 0
    skipped = tmp_path / "KboOpenData_0149_2025_10_12_Update.zip"
    with zipfile.ZipFile(KBO_UPDATE) as src, zipfile.ZipFile(skipped, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == "meta.csv":
                data = data.replace(b'"ExtractNumber","147"', b'"ExtractNumber","149"')
            dst.writestr(item, data)
    refused = run_cli("snapshot", "ingest-kbo", str(skipped))
    assert refused.returncode != 0 and "does not follow" in refused.stderr and "--force" in refused.stderr
    assert len(json.loads(run_cli("snapshot", "list", "--json").stdout)) == 7
    assert run_cli("snapshot", "ingest-kbo", str(skipped), "--force").returncode == 0
    assert len(json.loads(run_cli("snapshot", "list", "--json").stdout)) == 14


def test_change_sets_are_byte_identical_across_workspaces(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import datetime as dt

    from mutapub.mutations.workspace import init_workspace

    monkeypatch.delenv("MUTAPUB_DATABASE_URL", raising=False)
    day1 = write(tmp_path / "d1.csv", [row(i) for i in range(1, 200)])
    day2 = write(
        tmp_path / "d2.csv",
        [row(i, street="Molenstraat" if i % 5 == 0 else "Kerkstraat") for i in range(300, 2, -1)],
    )
    digests = []
    for name, at_ingest in (("one", True), ("two", False)):  # computed at ingest, or by `diff`
        ws, _ = init_workspace(tmp_path / name)
        ingest_file(ws, "persons", day1, dt.date(2025, 10, 1))
        ingest_file(ws, "persons", day2, dt.date(2025, 10, 2), diff=at_ingest)
        result = changesets.compute(ws, "persons")
        assert result.created is not at_ingest
        digests.append(result.change_set.sha256)
        ws.engine.dispose()
    assert digests[0] == digests[1]
