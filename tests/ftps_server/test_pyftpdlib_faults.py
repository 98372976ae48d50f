"""What stock pyftpdlib gets wrong for us, shown on the stock library, and that our server does not."""

from __future__ import annotations

import ftplib
import os
import socket
import threading
from pathlib import Path

import pytest
from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler, TLS_FTPHandler
from pyftpdlib.ioloop import IOLoop
from pyftpdlib.servers import FTPServer, ThreadedFTPServer
from tests.ftps_server.conftest import CLIENT_CTX, PW, client

from mutapub.ftps_server.server import SessionServer
from mutapub.mutations.workspace import Workspace

SECRET = b"op;insz;secret-row\n" * 50


def _stock_server(certs: tuple[Path, Path], home: Path) -> tuple[FTPServer, threading.Event, int]:
    auth = DummyAuthorizer()
    auth.add_user("u", "p", str(home), perm="elr")

    class Stock(TLS_FTPHandler):
        certfile, keyfile = str(certs[0]), str(certs[1])
        tls_control_required = True
        tls_data_required = True
        authorizer = auth
        ssl_context = None

    server = FTPServer(("127.0.0.1", 0), Stock, ioloop=IOLoop())
    halt = threading.Event()

    def loop() -> None:
        while not halt.is_set():
            server.ioloop.loop(timeout=0.1, blocking=False)

    threading.Thread(target=loop, daemon=True).start()
    return server, halt, server.address[1]


def _prot_c_after_pasv(port: int, path: str, user: str, password: str) -> tuple[str, bytes]:
    """PROT P, PASV, then PROT C, then a plain data connection and RETR: what comes out in clear?"""
    f = ftplib.FTP_TLS(context=CLIENT_CTX)
    f.connect("127.0.0.1", port, timeout=10)
    f.login(user, password)
    f.prot_p()
    f.voidcmd("TYPE I")
    reply = f.sendcmd("EPSV")
    data_port = int(reply.split("|")[3])
    try:
        prot = f.sendcmd("PROT C")
    except ftplib.error_perm as exc:
        prot = str(exc)
    raw = socket.create_connection(("127.0.0.1", data_port), timeout=5)
    raw.settimeout(3)
    got = b""
    try:
        f.sendcmd("RETR " + path)
        while chunk := raw.recv(65536):
            got += chunk
    except (TimeoutError, ConnectionResetError, ftplib.Error):
        pass
    raw.close()
    f.close()
    return prot, got


def test_stock_pyftpdlib_sends_a_file_in_clear_after_prot_c(certs, tmp_path: Path) -> None:
    (tmp_path / "f.csv").write_bytes(SECRET)
    server, halt, port = _stock_server(certs, tmp_path)
    try:
        prot, got = _prot_c_after_pasv(port, "/f.csv", "u", "p")
    finally:
        halt.set()
        server.close_all()
    assert prot.startswith("200") and got == SECRET  # the fault: tls_data_required checked at PASV only


def test_our_server_never_sends_a_byte_in_clear(published: Workspace, start_server) -> None:
    srv = start_server(published)
    d = next(iter(published.publish_dir.glob("gent/outbox/persons/*.csv")))
    prot, got = _prot_c_after_pasv(srv.port, "/outbox/persons/" + d.name, "gent", PW)
    assert prot.startswith("536") and b"op;" not in got


def test_stock_pyftpdlib_answers_a_plaintext_user_with_550(certs, tmp_path: Path) -> None:
    server, halt, port = _stock_server(certs, tmp_path)
    try:
        p = ftplib.FTP()
        p.connect("127.0.0.1", port, timeout=10)
        with pytest.raises(ftplib.error_perm, match="550"):
            p.sendcmd("USER u")  # RFC 4217 clients expect 530 (login refused), not a file error
        p.close()
    finally:
        halt.set()
        server.close_all()


def test_stock_threaded_servers_share_their_stop_event() -> None:
    assert ThreadedFTPServer._exit is ThreadedFTPServer._exit  # a class attribute: one for the process
    a = SessionServer(("127.0.0.1", 0), FTPHandler, ioloop=IOLoop())
    b = SessionServer(("127.0.0.1", 0), FTPHandler, ioloop=IOLoop())
    try:
        assert a._exit is not b._exit and a._exit is not ThreadedFTPServer._exit
    finally:
        a.close_all()
        b.close_all()


def test_empty_listings_and_empty_files_end_cleanly(published: Workspace, start_server) -> None:
    # stock pyftpdlib closes an empty TLS data connection before its handshake ends:
    # Python's ftplib then fails with "shutdown while in init"
    (published.publish_dir / "gent" / "outbox" / "empty.csv").write_bytes(b"")
    srv = start_server(published)
    for _ in range(10):
        f = client(srv.port)
        assert f.nlst("/inbox/persons") == []
        buf = bytearray()
        f.retrbinary("RETR /outbox/empty.csv", buf.extend)
        assert buf == b""
        f.quit()


def test_a_session_directory_is_not_the_process_directory(published: Workspace, start_server) -> None:
    srv = start_server(published)
    before = os.getcwd()
    f = client(srv.port)
    f.cwd("/outbox/persons")
    assert os.getcwd() == before  # stock AbstractedFS.chdir calls os.chdir, shared by every thread
    f.quit()


def test_mlsd_unix_mode_is_octal_as_clients_read_it(published: Workspace, start_server) -> None:
    """Stock pyftpdlib answers "unix.mode=0o644" (Python's oct()); lftp's mirror then makes mode-0 files."""
    srv = start_server(published)
    with client(srv.port) as ftp:
        ftp.sendcmd("OPTS MLST type;size;modify;unix.mode;perm;")
        modes = [facts["unix.mode"] for _name, facts in ftp.mlsd("/outbox") if "unix.mode" in facts]
    assert modes and all(m.startswith("0") and not m.startswith("0o") and int(m, 8) for m in modes)
