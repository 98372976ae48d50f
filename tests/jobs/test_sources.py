"""Sources: complete files only (marker, checksum, stable size), verified copies, KBO extract order, and
SFTP against a real paramiko server on loopback with known-hosts checking."""

from __future__ import annotations

import datetime as dt
import hashlib
import shutil
import socket
from pathlib import Path

import paramiko
import pytest
from tests.conftest import KBO_FULL, KBO_UPDATE
from tests.jobs.sftp_server import sftp_server

from mutapub.jobs import sources
from mutapub.mutations.config import Settings, merge_settings
from mutapub.mutations.errors import ConfigError, InputError
from mutapub.mutations.workspace import Workspace


def _cfg(where: Path, **kw: object) -> sources.SourceConfig:
    values = {"path": str(where), "glob": "persons_*.csv", "stable_seconds": 0.0, **kw}
    name = str(values.pop("name", "persons"))
    settings = Settings(Path("."), merge_settings({"sources": {name: values}}, {}, source="test"))
    return sources.load_sources(settings)[name]


def _offers(cfg: sources.SourceConfig, sleep=lambda _s: None) -> list[sources.Offer]:
    with sources.connect(cfg) as conn:
        return sources.offers(cfg, conn, sleep=sleep)


def test_a_file_with_a_done_marker_or_a_checksum_is_complete(tmp_path: Path) -> None:
    (tmp_path / "persons_2025-10-01.csv").write_text("a\n")
    (tmp_path / "persons_2025-10-01.csv.done").write_text("")
    (tmp_path / "persons_2025-10-02.csv").write_text("b\n")
    sha = hashlib.sha256(b"b\n").hexdigest()
    (tmp_path / "persons_2025-10-02.csv.sha256").write_text(f"{sha}  persons_2025-10-02.csv\n")
    (tmp_path / "persons_2025-10-03.csv").write_text("c\n")  # neither
    (tmp_path / "other.csv").write_text("x\n")  # not matching the glob
    found = _offers(_cfg(tmp_path, complete=["marker", "checksum"]))
    assert [(o.name, o.proof, o.sha256) for o in found] == [
        ("persons_2025-10-01.csv", "marker", None),
        ("persons_2025-10-02.csv", "checksum", sha),
        ("persons_2025-10-03.csv", None, None),
    ]
    assert "no persons_2025-10-03.csv.done marker or persons_2025-10-03.csv.sha256 file" in found[2].why_not
    with pytest.raises(sources.SourceMissing, match="no complete file for 2025-10-03 yet"):
        sources.pick(_cfg(tmp_path), found, dt.date(2025, 10, 3))
    with pytest.raises(sources.SourceMissing, match="no file for 2025-10-04 matching 'persons_\\*.csv'"):
        sources.pick(_cfg(tmp_path), found, dt.date(2025, 10, 4))


def test_a_file_still_growing_between_two_looks_is_not_taken(tmp_path: Path) -> None:
    growing = tmp_path / "persons_2025-10-01.csv"
    growing.write_text("a\n")
    (tmp_path / "persons_2025-10-02.csv").write_text("b\n")
    cfg = _cfg(tmp_path, complete=["stable"], stable_seconds=5.0)
    slept: list[float] = []

    def writer_keeps_writing(seconds: float) -> None:  # the injected pause between the two looks
        slept.append(seconds)
        with open(growing, "a") as fh:
            fh.write("more\n")

    found = _offers(cfg, sleep=writer_keeps_writing)
    assert slept == [5.0]
    assert [(o.name, o.proof) for o in found] == [
        ("persons_2025-10-01.csv", None),
        ("persons_2025-10-02.csv", "stable"),
    ]
    assert "still being written" in found[0].why_not
    # a marker spares the second look
    (tmp_path / "persons_2025-10-01.csv.done").write_text("")
    (tmp_path / "persons_2025-10-02.csv.done").write_text("")
    slept.clear()
    assert all(o.complete for o in _offers(_cfg(tmp_path), sleep=writer_keeps_writing))
    assert slept == []


def test_fetch_keeps_a_verified_copy_and_refuses_a_bad_checksum(
    sqlite_workspace: Workspace, tmp_path: Path
) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / "persons_2025-10-01.csv").write_bytes(b"rows\n")
    (drop / "persons_2025-10-01.csv.sha256").write_text(hashlib.sha256(b"rows\n").hexdigest() + "\n")
    cfg = _cfg(drop)
    with sources.connect(cfg) as conn:
        offer = sources.pick(cfg, sources.offers(cfg, conn), dt.date(2025, 10, 1))
        got = sources.fetch(sqlite_workspace, cfg, conn, offer)
        assert got.verified and not got.reused
        assert got.path == sqlite_workspace.home / "incoming" / "persons" / "persons_2025-10-01.csv"
        assert got.path.read_bytes() == b"rows\n"
        assert sources.fetch(sqlite_workspace, cfg, conn, offer).reused
    (drop / "persons_2025-10-01.csv.sha256").write_text("0" * 64 + "\n")
    got.path.unlink()
    with sources.connect(cfg) as conn:
        offer = sources.offers(cfg, conn)[0]
        with pytest.raises(InputError, match="fails its checksum"):
            sources.fetch(sqlite_workspace, cfg, conn, offer)
    assert not any((sqlite_workspace.home / "incoming" / "persons").iterdir())  # no partial file left


def test_kbo_files_in_extract_order_with_the_full_extract_preferred(tmp_path: Path) -> None:
    for name in (
        "KboOpenData_0148_2025_10_13_Update.zip",
        "KboOpenData_0147_2025_10_12_Update.zip",
        "KboOpenData_0146_2025_10_11_Update.zip",
        "KboOpenData_0146_2025_10_11_Full.zip",
        "notes.txt",
    ):
        (tmp_path / name).write_text("zip")
        (tmp_path / (name + ".done")).write_text("")
    cfg = _cfg(tmp_path, name="kbo", format="kbo", glob="KboOpenData_*.zip", date_offset_days=-1)
    found = _offers(cfg)
    assert [o.name for o in found] == [
        "KboOpenData_0146_2025_10_11_Full.zip",
        "KboOpenData_0146_2025_10_11_Update.zip",
        "KboOpenData_0147_2025_10_12_Update.zip",
        "KboOpenData_0148_2025_10_13_Update.zip",
    ]
    assert sources.dates_offered(found) == [
        dt.date(2025, 10, 10),
        dt.date(2025, 10, 11),
        dt.date(2025, 10, 12),
    ]
    assert sources.pick(cfg, found, dt.date(2025, 10, 10)).kbo_kind == "full"
    assert cfg.datasets[0] == "kbo_enterprise" and len(cfg.datasets) == 7


@pytest.mark.parametrize(
    "values, message",
    [
        ({"kind": "ftp"}, "neither local nor sftp"),
        ({"complete": ["magic"]}, "complete"),
        ({"path": ""}, "path"),
        ({"kind": "sftp", "host": "h"}, "needs user, private_key, known_hosts"),
        ({"colour": "red"}, "unknown setting sources.persons.colour"),
        ({"port": "22"}, "port must be int"),
    ],
)
def test_bad_source_configuration_is_named(tmp_path: Path, values: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _cfg(tmp_path, **values)


def test_a_csv_source_is_named_after_a_dataset(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="named after its dataset"):
        _cfg(tmp_path, name="people")


# --- SFTP ------------------------------------------------------------------------------------------


def _sftp_cfg(server, remote: str = "/drop", **kw: object) -> sources.SourceConfig:
    return _cfg(
        Path(remote),
        kind="sftp",
        host=server.host,
        port=server.port,
        user=server.user,
        private_key=str(server.client_key_file),
        known_hosts=str(server.known_hosts),
        timeout_seconds=5.0,
        **kw,
    )


def test_sftp_source_lists_checks_and_fetches(sqlite_workspace: Workspace, tmp_path: Path) -> None:
    root = tmp_path / "remote"
    (root / "kbo").mkdir(parents=True)
    shutil.copy(KBO_FULL, root / "kbo")
    shutil.copy(KBO_UPDATE, root / "kbo")
    sha = hashlib.sha256(KBO_UPDATE.read_bytes()).hexdigest()
    (root / "kbo" / (KBO_UPDATE.name + ".sha256")).write_text(f"{sha}  {KBO_UPDATE.name}\n")
    (root / "kbo" / (KBO_FULL.name + ".done")).write_text("")
    with sftp_server(root, tmp_path) as server:
        cfg = _sftp_cfg(
            server, "/kbo", name="kbo", format="kbo", glob="KboOpenData_*.zip", date_offset_days=-1
        )
        with sources.connect(cfg) as conn:
            found = sources.offers(cfg, conn)
            assert [(o.extract, o.kbo_kind, o.proof) for o in found] == [
                (146, "full", "marker"),
                (147, "update", "checksum"),
            ]
            got = sources.fetch(sqlite_workspace, cfg, conn, found[1])
    assert got.verified and got.sha256 == sha
    assert got.path.read_bytes() == KBO_UPDATE.read_bytes()


def test_sftp_unknown_host_key_is_refused(tmp_path: Path) -> None:
    (tmp_path / "remote").mkdir()
    with sftp_server(tmp_path / "remote", tmp_path) as server:
        server.known_hosts.write_text("")  # the operator never added this server
        with (
            pytest.raises(sources.SourceError, match="unknown host key refused"),
            sources.connect(_sftp_cfg(server, "/")),
        ):
            pass


def test_sftp_changed_host_key_is_refused(tmp_path: Path) -> None:
    (tmp_path / "remote").mkdir()
    with sftp_server(tmp_path / "remote", tmp_path) as server:
        impostor = paramiko.Ed25519Key.from_private_key_file(str(_other_key(tmp_path)))
        server.known_hosts.write_text(
            f"[{server.host}]:{server.port} {impostor.get_name()} {impostor.get_base64()}\n"
        )
        with pytest.raises(sources.SourceError, match="CHANGED"), sources.connect(_sftp_cfg(server, "/")):
            pass


def test_sftp_server_down_is_a_source_error(tmp_path: Path) -> None:
    (tmp_path / "remote").mkdir()
    with sftp_server(tmp_path / "remote", tmp_path) as server:
        cfg = _sftp_cfg(server, "/")
    with socket.socket() as probe:  # the port is free again: nothing listens there
        assert probe.connect_ex((server.host, server.port)) != 0
    with pytest.raises(sources.SourceError, match="cannot reach SFTP"), sources.connect(cfg):
        pass


def _other_key(tmp_path: Path) -> Path:
    from tests.jobs.sftp_server import _key

    return _key(tmp_path / "impostor_key")
