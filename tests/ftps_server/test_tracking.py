"""Every login and transfer recorded, on SQLite and PostgreSQL; a delivery counts once every byte went."""

from __future__ import annotations

import contextlib
import ftplib
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select
from tests.conftest import run_cli
from tests.ftps_server.conftest import PW, client, deliveries_of, publish_two_subscribers

from mutapub.ftps_server.certs import selfsigned
from mutapub.ftps_server.tracking import Recorder, covered, new_id, write_records
from mutapub.mutations import db
from mutapub.mutations.models import Delivery, Login, Transfer
from mutapub.mutations.workspace import Workspace


def _retr(f: ftplib.FTP, path: str, rest: int | None = None) -> bytes:
    buf = bytearray()
    f.retrbinary("RETR " + path, buf.extend, rest=rest)
    return bytes(buf)


def _delivery(ws: Workspace, seq: int = 1) -> Delivery:
    return next(d for d in deliveries_of(ws, "gent") if d.seq == seq)


def test_covered() -> None:
    assert covered([(0, 10)], 10)
    assert covered([(5, 5), (0, 5)], 10)
    assert covered([(0, 7), (3, 7)], 10)
    assert not covered([(0, 4), (5, 5)], 10)
    assert not covered([(5, 5)], 10)
    assert not covered([], 10)
    assert covered([], 0)


def test_downloads_logins_and_coverage_are_recorded(
    workspace: Workspace, tmp_path: Path, start_server
) -> None:
    publish_two_subscribers(workspace, tmp_path)
    srv = start_server(workspace)
    d = _delivery(workspace)
    path = "/" + d.path.split("/", 1)[1]
    size = d.size or 0
    half = size // 2
    f = client(srv.port)
    assert len(_retr(f, path, rest=half)) == size - half  # only the tail: not downloaded yet
    f.quit()
    with pytest.raises(ftplib.error_perm):
        client(srv.port, password="wrong-" + PW)
    srv.stop()  # flushes every record
    assert _delivery(workspace).first_downloaded_at is None
    with workspace.sessions() as s:
        (t,) = s.scalars(select(Transfer)).all()
        assert (t.subscriber, t.path, t.rest_offset, t.bytes, t.size, t.complete, t.direction) == (
            "gent",
            path,
            half,
            size - half,
            size,
            True,  # the transfer itself ran to the end of the file it was asked for
            "download",
        )
        assert t.delivery_id == d.id and t.remote == "127.0.0.1" and t.tls_version in ("TLSv1.2", "TLSv1.3")
        assert t.tls_cipher and t.started_at <= t.ended_at
        logins = s.scalars(select(Login).order_by(Login.id)).all()
        assert [(lg.username, lg.ok, lg.reason) for lg in logins] == [
            ("gent", True, ""),
            ("gent", False, "wrong password"),
        ]
    # the head, in a new server run: together the transfers cover the file
    srv = start_server(workspace)
    f = client(srv.port)
    f.voidcmd("TYPE I")
    with f.transfercmd("RETR " + path) as conn:
        head = conn.recv(half)
    f.close()
    time.sleep(0.3)
    srv.stop()
    with workspace.sessions() as s:
        pieces = s.execute(
            select(Transfer.rest_offset, Transfer.bytes, Transfer.complete).order_by(Transfer.id)
        ).all()
    assert len(head) > 0 and pieces[1][0] == 0  # small files fit in socket buffers: sent in full
    downloaded = _delivery(workspace).first_downloaded_at is not None
    assert downloaded == covered([(a, b) for a, b, _ in pieces], size)
    # a full download always counts
    srv = start_server(workspace)
    f = client(srv.port)
    _retr(f, path)
    f.quit()
    srv.stop()
    got = _delivery(workspace)
    assert got.first_downloaded_at is not None and got.last_downloaded_at is not None

    listed = run_cli("downloads", "list", "--subscriber", "gent", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [r["rest_offset"] for r in rows] == [half, 0, 0]
    assert rows[-1] | {"started": None, "ended": None} == rows[-1] | {
        "subscriber": "gent",
        "path": path,
        "delivery_seq": 1,
        "bytes": size,
        "size": size,
        "complete": True,
        "remote": "127.0.0.1",
        "started": None,
        "ended": None,
    }
    assert json.loads(run_cli("downloads", "list", "--subscriber", "leuven", "--json").stdout) == []
    assert json.loads(run_cli("downloads", "list", "--since", "1d", "--json").stdout) == rows
    assert json.loads(run_cli("downloads", "list", "--since", "2999-01-01", "--json").stdout) == []
    text = run_cli("downloads", "list")
    assert text.returncode == 0 and "gent" in text.stdout

    pending = json.loads(run_cli("deliveries", "list", "--not-downloaded", "--json").stdout)
    assert ("gent", 1) not in {(p["subscriber"], p["seq"]) for p in pending}
    assert ("gent", 2) in {(p["subscriber"], p["seq"]) for p in pending}
    assert {p["subscriber"] for p in pending} == {"gent", "leuven"}
    older = json.loads(
        run_cli("deliveries", "list", "--not-downloaded", "--older-than", "2d", "--json").stdout
    )
    assert older == []
    bad = run_cli("deliveries", "list", "--older-than", "2d")
    assert bad.returncode != 0


def test_uploads_and_aborted_downloads_are_recorded_as_what_they_were(
    workspace: Workspace, tmp_path: Path, start_server
) -> None:
    publish_two_subscribers(workspace, tmp_path)
    big = workspace.publish_dir / "gent" / "outbox" / "big.bin"
    big.write_bytes(os.urandom(8 << 20))
    srv = start_server(workspace)
    f = client(srv.port)
    f.storbinary("STOR /inbox/persons/keys.csv", io.BytesIO(b"insz\n"))
    f.voidcmd("TYPE I")
    conn = f.transfercmd("RETR /outbox/big.bin")
    conn.recv(1000)
    conn.close()  # abort: the server sees the connection drop
    with contextlib.suppress(*ftplib.all_errors):
        f.voidresp()
    f.close()
    time.sleep(0.5)
    srv.stop()
    with workspace.sessions() as s:
        rows = {t.direction: t for t in s.scalars(select(Transfer))}
    up, down = rows["upload"], rows["download"]
    assert (up.path, up.bytes, up.size, up.complete) == ("/inbox/persons/keys.csv", 5, 5, True)
    assert down.path == "/outbox/big.bin" and down.delivery_id is None
    assert not down.complete and 0 < down.bytes < 8 << 20 and down.size == 8 << 20


def test_records_spill_to_the_journal_and_nothing_is_lost(workspace: Workspace, tmp_path: Path) -> None:
    journal = tmp_path / "journal"
    rec = Recorder(workspace.sessions, journal, maxsize=2)
    for i in range(7):
        rec.record(
            "login", session="s", at=time.time(), username=f"u{i}", remote="127.0.0.1", ok=False, reason="x"
        )
    assert rec.queue.qsize() == 2 and len(journal.read_text().splitlines()) == 5
    rec.start()
    rec.stop()
    with workspace.sessions() as s:
        assert sorted(s.scalars(select(Login.username))) == [f"u{i}" for i in range(7)]
    assert not journal.exists()


def test_an_unreachable_database_keeps_records_for_the_next_run(workspace: Workspace, tmp_path: Path) -> None:
    journal = tmp_path / "journal"
    broken = db.session_factory(create_engine(f"sqlite:///{tmp_path / 'missing' / 'x.db'}"))
    rec = Recorder(broken, journal, maxsize=100)
    rec.start()
    rec.record("login", session="s", at=time.time(), username="gent", remote="127.0.0.1", ok=True, reason="")
    rec.stop()
    assert journal.exists() or journal.with_name("journal.draining").exists()
    again = Recorder(workspace.sessions, journal, maxsize=100)
    again.start()
    again.stop()
    with workspace.sessions() as s:
        assert list(s.scalars(select(Login.username))) == ["gent"]


def test_a_replayed_record_is_written_once(workspace: Workspace) -> None:
    records = [
        {
            "id": new_id(),
            "kind": "login",
            "session": "s",
            "at": time.time(),
            "username": "x",
            "remote": "::1",
            "ok": False,
            "reason": "unknown subscriber",
        }
    ]
    write_records(workspace.sessions, records)
    write_records(workspace.sessions, records)
    with workspace.sessions() as s:
        assert len(s.scalars(select(Login)).all()) == 1


def test_serve_command_flushes_records_on_sigterm(workspace: Workspace, tmp_path: Path) -> None:
    publish_two_subscribers(workspace, tmp_path)
    out = run_cli("certs", "selfsigned", "--host", "ftps.example.org")
    assert out.returncode == 0 and "SHA-256 fingerprint" in out.stdout
    assert (workspace.home / "certs" / "server.pem").exists()
    assert oct((workspace.home / "certs" / "server.key").stat().st_mode & 0o777) == "0o600"
    proc = subprocess.Popen(
        [sys.executable, "-m", "mutapub.mutations.cli", "serve", "--host", "127.0.0.1", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "MUTAPUB_FTPS_PASSIVE_PORTS": ""},
    )
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert line.startswith("listening on 127.0.0.1:"), line
        port = int(line.strip().rsplit(":", 1)[1])
        d = _delivery(workspace)
        f = client(port)
        data = _retr(f, "/" + d.path.split("/", 1)[1])
        f.quit()
        assert len(data) == d.size
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    rows = json.loads(run_cli("downloads", "list", "--json").stdout)
    assert [(r["complete"], r["delivery_seq"]) for r in rows] == [(True, 1)]


def test_certificate_file_missing_is_a_clear_error(workspace: Workspace) -> None:
    out = run_cli("serve", "--port", "0")
    assert out.returncode == 2 and "mutapub certs selfsigned" in out.stderr
    selfsigned(workspace.home / "certs" / "server.pem", workspace.home / "certs" / "server.key", [])


def test_a_delivery_is_downloaded_once_its_pieces_cover_every_byte(
    workspace: Workspace, tmp_path: Path
) -> None:
    publish_two_subscribers(workspace, tmp_path)
    d = _delivery(workspace)
    size = d.size or 0
    half = size // 2

    def piece(rest: int, sent: int, at: float) -> dict:
        return {
            "id": new_id(),
            "kind": "transfer",
            "session": "s",
            "subscriber": "gent",
            "remote": "127.0.0.1",
            "direction": "download",
            "path": "/x",
            "publish_path": d.path,
            "started": at,
            "ended": at + 1,
            "rest_offset": rest,
            "bytes": sent,
            "size": size,
            "complete": rest + sent == size,
        }

    write_records(workspace.sessions, [piece(half, size - half, 1000.0)])  # the tail only
    write_records(workspace.sessions, [piece(0, half - 1, 2000.0)])  # one byte short
    assert _delivery(workspace).first_downloaded_at is None
    write_records(workspace.sessions, [piece(half - 1, size - half + 1, 3000.0)])  # the gap closed
    got = _delivery(workspace)
    assert got.first_downloaded_at is not None and got.first_downloaded_at.timestamp() == 3001.0
    write_records(workspace.sessions, [piece(0, size, 5000.0)])
    again = _delivery(workspace)
    assert (
        again.first_downloaded_at == got.first_downloaded_at
        and again.last_downloaded_at.timestamp() == 5001.0
    )
    # leuven's transfers of a file never count for gent
    other = deliveries_of(workspace, "leuven")[0]
    assert other.first_downloaded_at is None
