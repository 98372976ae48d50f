"""A real FTPS server on loopback, on free ports, over a workspace with published deliveries."""

from __future__ import annotations

import datetime as dt
import ftplib
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tests.mutations.persons_rows import row, write

from mutapub.ftps_server import server as ftps
from mutapub.ftps_server.certs import selfsigned
from mutapub.ftps_server.settings import FtpsSettings
from mutapub.mutations import grants, publication, subscribers
from mutapub.mutations.audit import AuditContext
from mutapub.mutations.models import Delivery
from mutapub.mutations.snapshots import ingest_file
from mutapub.mutations.workspace import Workspace

PW = "S3cure-pass-123!"
CTX = AuditContext(actor="test", command="pytest")
GENT, LEUVEN = "44021", "24062"


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """One self-signed server certificate for the whole run."""
    d = tmp_path_factory.mktemp("certs")
    selfsigned(d / "server.pem", d / "server.key", ["localhost"])
    return d / "server.pem", d / "server.key"


def add_subscriber(ws: Workspace, code: str, password: str = PW, **values: Any) -> None:
    """A subscriber with a password; `values` are `subscribers.settings` arguments."""
    expires = values.pop("password_expires", None)
    with ws.sessions() as s, s.begin():
        subscribers.add(
            s,
            CTX,
            code,
            password=password,
            password_expires=expires,
            **subscribers.settings(name=code, **values),
        )


def publish_two_subscribers(ws: Workspace, tmp: Path, rows: int = 40) -> None:
    """gent (persons of Gent, uncompressed CSV) and leuven (persons of Leuven), two days published."""
    add_subscriber(ws, "gent", compression="none")
    add_subscriber(ws, "leuven")
    with ws.sessions() as s, s.begin():
        grants.add(s, CTX, "gent", "persons", groups=["identity", "address"], legal_basis="VTC/gent")
        grants.add(
            s,
            CTX,
            "leuven",
            "persons",
            groups=["identity"],
            where=[f"municipality_nis in ({LEUVEN})"],
            legal_basis="VTC/leuven",
        )
    day1 = [row(i, nis=GENT if i % 2 else LEUVEN) for i in range(1, rows + 1)]
    day2 = [
        row(i, nis=GENT if i % 2 else LEUVEN, street="Molenstraat" if i % 3 == 0 else "Kerkstraat")
        for i in range(1, rows + 1)
    ]
    ingest_file(ws, "persons", write(tmp / "p1.csv", day1), dt.date(2025, 10, 1))
    ingest_file(ws, "persons", write(tmp / "p2.csv", day2), dt.date(2025, 10, 2))
    publication.publish(ws)


def deliveries_of(ws: Workspace, code: str) -> list[Delivery]:
    """A subscriber's published deliveries by sequence number."""
    return [d for d, _code, _snap in publication.list_deliveries(ws, subscriber=code)]


@dataclass
class Server:
    """A started server and how to reach it."""

    ws: Workspace
    running: ftps.Running
    settings: FtpsSettings

    @property
    def port(self) -> int:
        return self.running.addresses[0][1]

    def stop(self) -> None:
        self.running.stop()


CLIENT_CTX = ssl.create_default_context()
CLIENT_CTX.check_hostname = False
CLIENT_CTX.verify_mode = ssl.CERT_NONE


def client(
    port: int,
    user: str = "gent",
    password: str = PW,
    *,
    prot_p: bool = True,
    ctx: ssl.SSLContext | None = None,
) -> ftplib.FTP_TLS:
    """A logged-in ftplib FTPS client (explicit TLS, PROT P)."""
    f = ftplib.FTP_TLS(context=ctx or CLIENT_CTX, encoding="utf-8")
    f.connect("127.0.0.1", port, timeout=10)
    f.login(user, password)
    if prot_p:
        f.prot_p()
    return f


@pytest.fixture
def start_server(certs: tuple[Path, Path]) -> Iterator[Callable[..., Server]]:
    """Start servers with test settings (changes as keywords); all are stopped at the end."""
    started: list[Server] = []

    def start(ws: Workspace, **changes: Any) -> Server:
        settings = FtpsSettings(
            host="127.0.0.1",
            port=0,
            passive_ports=None,
            certfile=certs[0],
            keyfile=certs[1],
            login_failure_delay=0,
            ban_after_failures=0,
            idle_timeout=30,
        ).with_(**changes)
        srv = Server(ws, ftps.start(ws, settings, background=True), settings)
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.running.stop()


@pytest.fixture
def published(sqlite_workspace: Workspace, tmp_path: Path) -> Workspace:
    """A SQLite workspace where gent and leuven have deliveries."""
    publish_two_subscribers(sqlite_workspace, tmp_path)
    return sqlite_workspace
