"""The FTPS protocol with real clients on loopback: downloads byte-exact, features, and every refusal."""

from __future__ import annotations

import datetime as dt
import ftplib
import hashlib
import io
import os
import shutil
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import select, update
from tests.ftps_server.conftest import CLIENT_CTX, PW, add_subscriber, client, deliveries_of

from mutapub.ftps_server.authorizer import SubscriberAuthorizer
from mutapub.ftps_server.certs import selfsigned
from mutapub.mutations.errors import ConfigError
from mutapub.mutations.models import Subscriber, Transfer
from mutapub.mutations.workspace import Workspace


def _inner(ws: Workspace, code: str = "gent") -> tuple[str, bytes, str]:
    """The first delivery of `code` as the subscriber sees it, its bytes and SHA-256."""
    d = deliveries_of(ws, code)[0]
    data = (ws.publish_dir / d.path).read_bytes()
    assert hashlib.sha256(data).hexdigest() == d.sha256
    return "/" + d.path.split("/", 1)[1], data, d.sha256 or ""


def _retr(f: ftplib.FTP, path: str, rest: int | None = None) -> bytes:
    buf = bytearray()
    f.retrbinary("RETR " + path, buf.extend, rest=rest)
    return bytes(buf)


def _curl_get(port: int, path: str, out: Path) -> None:
    """Download `path` as gent with curl over explicit FTPS (certificate not checked: a test server)."""
    url = f"ftp://127.0.0.1:{port}/%2F{path[1:]}"
    subprocess.run(
        ["curl", "-s", "--ssl-reqd", "-k", "-u", f"gent:{PW}", url, "-o", out], check=True, timeout=30
    )


def _lftp(port: int, commands: str) -> str:
    """Run lftp commands as gent over explicit FTPS with encrypted data; its output. Fails the test on error."""
    script = (
        "set ssl:verify-certificate no; set ftp:ssl-force true; set ftp:ssl-protect-data true; "
        f"set net:max-retries 1; set net:timeout 10; {commands}; bye"
    )
    done = subprocess.run(
        ["lftp", "-u", f"gent,{PW}", "-e", script, f"127.0.0.1:{port}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_ftplib_downloads_byte_exact_and_sees_only_its_tree(published: Workspace, start_server) -> None:
    srv = start_server(published)
    path, data, sha = _inner(published)
    f = client(srv.port)
    assert _retr(f, path) == data
    assert sorted(f.nlst("/")) == ["inbox", "outbox"]
    outbox = [name for name, _facts in f.mlsd("/outbox")]
    assert outbox == ["persons"]
    entries = dict(f.mlsd(os.path.dirname(path)))
    name = os.path.basename(path)
    assert entries[name]["size"] == str(len(data)) and entries[name]["perm"] == "r"
    assert name + ".manifest.json" in entries
    assert f.size(path) == len(data)
    mtime = (published.publish_dir / deliveries_of(published, "gent")[0].path).stat().st_mtime
    assert f.voidcmd("MDTM " + path) == "213 " + dt.datetime.fromtimestamp(mtime, dt.UTC).strftime(
        "%Y%m%d%H%M%S"
    )
    assert f.sendcmd("HASH " + path) == f"213 SHA-256 0-{len(data) - 1} {sha} {path}"
    assert f.sendcmd("OPTS HASH SHA-256") == "200 SHA-256"
    with pytest.raises(ftplib.error_perm):
        f.sendcmd("OPTS HASH MD5")
    feat = f.sendcmd("FEAT")
    for feature in (
        "UTF8",
        "MLST ",
        "SIZE",
        "MDTM",
        "REST STREAM",
        "HASH SHA-256*",
        "AUTH TLS",
        "PROT",
        "EPSV",
    ):
        assert feature in feat
    assert "MFMT" not in feat
    f.cwd("/outbox/persons")
    assert f.pwd() == "/outbox/persons" and os.getcwd() != str(published.publish_dir / "gent/outbox/persons")
    assert _retr(f, name) == data
    f.quit()


def test_rest_resumes_in_binary_mode(published: Workspace, start_server) -> None:
    srv = start_server(published)
    path, data, _ = _inner(published)
    f = client(srv.port)
    half = len(data) // 2
    assert _retr(f, path, rest=half) == data[half:]
    f.voidcmd("TYPE A")
    with pytest.raises(ftplib.error_perm, match="501"):
        f.sendcmd("REST 10")
    # ASCII mode sends the bytes unchanged (no line-ending conversion that would break the SHA-256)
    assert f.sendcmd("SIZE " + path) == f"213 {len(data)}"
    with f.transfercmd("RETR " + path) as conn:
        buf = bytearray()
        while chunk := conn.recv(65536):
            buf.extend(chunk)
        conn.unwrap()
    f.voidresp()
    assert bytes(buf) == data
    f.quit()


def test_curl_and_lftp_download_byte_exact(published: Workspace, start_server, tmp_path: Path) -> None:
    if not (shutil.which("curl") and shutil.which("lftp")):
        pytest.skip("curl and lftp are installed by .ci/run")
    srv = start_server(published)
    path, data, _ = _inner(published)
    out = tmp_path / "c.bin"
    _curl_get(srv.port, path, out)
    assert out.read_bytes() == data
    out2 = tmp_path / "l.bin"
    _lftp(srv.port, f"get {path} -o {out2}")
    assert out2.read_bytes() == data


def test_plaintext_login_is_refused(published: Workspace, start_server) -> None:
    srv = start_server(published)
    p = ftplib.FTP()
    p.connect("127.0.0.1", srv.port, timeout=10)
    with pytest.raises(ftplib.error_perm, match="530"):
        p.login("gent", PW)
    with pytest.raises(ftplib.error_perm, match="530"):
        p.sendcmd("PASS " + PW)
    with pytest.raises(ftplib.error_perm, match="503"):
        p.sendcmd("PROT P")  # no PROT on a plaintext control connection either
    p.close()


@pytest.mark.parametrize(
    "case", ["wrong password", "unknown", "suspended", "expired", "allow-list", "no password"]
)
def test_refused_logins(published: Workspace, start_server, case: str) -> None:
    user, password = "gent", PW
    with published.sessions() as s, s.begin():
        q = update(Subscriber).where(Subscriber.code == "gent")
        if case == "suspended":
            s.execute(q.values(status="suspended"))
        elif case == "expired":
            s.execute(q.values(password_expires=dt.date(2020, 1, 1)))
        elif case == "allow-list":
            s.execute(q.values(allow_ip=["10.0.0.0/8"]))
        elif case == "no password":
            s.execute(q.values(password_hash=None))
    if case == "wrong password":
        password = "wrong-" + PW
    elif case == "unknown":
        user = "nobody"
    srv = start_server(published)
    with pytest.raises(ftplib.error_perm, match="530"):
        client(srv.port, user, password)


def test_allow_list_admits_the_listed_address(published: Workspace, start_server) -> None:
    with published.sessions() as s, s.begin():
        s.execute(update(Subscriber).where(Subscriber.code == "gent").values(allow_ip=["127.0.0.0/8"]))
    srv = start_server(published)
    client(srv.port).quit()


ESCAPES = [
    "../leuven/outbox",
    "/../leuven/outbox",
    "/" + "../" * 12 + "etc/passwd",
    "/etc/passwd",
    "../../mutapub.db",
    "/gent/outbox",
]


def test_path_escapes_and_other_subscribers_files_are_refused(published: Workspace, start_server) -> None:
    srv = start_server(published)
    other = deliveries_of(published, "leuven")[0].path  # leuven/outbox/persons/…
    f = client(srv.port)
    for path in [*ESCAPES, "/../" + other, "../" + other, "/" + other, "/../../" + other]:
        with pytest.raises(ftplib.error_perm):
            _retr(f, path)
        with pytest.raises(ftplib.error_perm):
            f.size(path)
        with pytest.raises(ftplib.error_perm):
            f.cwd(path)
    for path in ("/..", "../..", "/" + "../" * 12):
        assert sorted(f.nlst(path)) == ["inbox", "outbox"]
    f.quit()


def test_symlinks_lead_nowhere(published: Workspace, start_server) -> None:
    other = published.publish_dir / deliveries_of(published, "leuven")[0].path
    outbox = published.publish_dir / "gent" / "outbox"
    (outbox / "link-to-leuven").symlink_to(other)
    (outbox / "link-to-root").symlink_to("/")
    srv = start_server(published)
    f = client(srv.port)
    assert "link-to-leuven" not in f.nlst("/outbox")
    for path in ("/outbox/link-to-leuven", "/outbox/link-to-root/etc/passwd"):
        with pytest.raises(ftplib.error_perm):
            _retr(f, path)
    f.quit()


def test_outbox_is_read_only_and_nothing_is_deleted(published: Workspace, start_server) -> None:
    srv = start_server(published)
    path, data, _ = _inner(published)
    f = client(srv.port)
    for action in (
        lambda: f.storbinary("STOR " + path, io.BytesIO(b"x")),
        lambda: f.storbinary("STOR /outbox/new.txt", io.BytesIO(b"x")),
        lambda: f.storbinary("APPE " + path, io.BytesIO(b"x")),
        lambda: f.delete(path),
        lambda: f.rename(path, path + ".x"),
        lambda: f.mkd("/outbox/x"),
        lambda: f.rmd("/outbox/persons"),
        lambda: f.sendcmd("SITE CHMOD 777 " + path),
        lambda: f.storbinary("STOR /new.txt", io.BytesIO(b"x")),
    ):
        with pytest.raises(ftplib.error_perm):
            action()
    with pytest.raises(ftplib.error_perm, match="500"):
        f.sendcmd("STOU")
    assert (published.publish_dir / deliveries_of(published, "gent")[0].path).read_bytes() == data
    f.quit()


def test_inbox_takes_new_uploads_only_and_lists_only_them(published: Workspace, start_server) -> None:
    srv = start_server(published)
    inbox = published.publish_dir / "gent" / "inbox" / "persons"
    f = client(srv.port)
    # one folder per dataset the subscriber has a grant on, made at login; nothing goes in /inbox itself
    assert [n.rsplit("/", 1)[-1] for n in f.nlst("/inbox")] == ["persons"]
    assert f.nlst("/inbox/persons") == []
    with pytest.raises(ftplib.error_perm):
        f.storbinary("STOR /inbox/follow-add-root.csv", io.BytesIO(b"insz\n"))
    with pytest.raises(ftplib.error_perm):
        f.mkd("/inbox/vehicles")
    f.storbinary("STOR /inbox/persons/volgers-één.csv", io.BytesIO(b"insz\n85073003328\n"))
    assert (inbox / "volgers-één.csv").read_bytes() == b"insz\n85073003328\n"
    assert [n.rsplit("/", 1)[-1] for n in f.nlst("/inbox/persons")] == ["volgers-één.csv"]
    assert [p.name for p in inbox.iterdir()] == ["volgers-één.csv"]  # no temporary file left
    for action in (
        lambda: f.storbinary("STOR /inbox/persons/volgers-één.csv", io.BytesIO(b"other")),
        lambda: f.storbinary("APPE /inbox/persons/volgers-één.csv", io.BytesIO(b"more")),
        lambda: f.storbinary("STOR /inbox/persons/volgers-één.csv", io.BytesIO(b"more"), rest=3),
        lambda: f.delete("/inbox/persons/volgers-één.csv"),
        lambda: f.rename("/inbox/persons/volgers-één.csv", "/inbox/persons/x.csv"),
        lambda: _retr(f, "/inbox/persons/volgers-één.csv"),
    ):
        with pytest.raises(ftplib.error_perm):
            action()
    assert (inbox / "volgers-één.csv").read_bytes() == b"insz\n85073003328\n"
    (inbox / ".hidden").write_text("x")
    names = [name for name, _ in f.mlsd("/inbox/persons")]
    assert names == ["volgers-één.csv"]  # hidden and temporary files are never listed
    f.quit()


def _start_upload(ws: Workspace, port: int, name: str) -> tuple[ftplib.FTP_TLS, socket.socket, Path]:
    """Log in as gent and open the data connection of `STOR /inbox/persons/<name>`; the inbox folder."""
    f = client(port)
    f.voidcmd("TYPE I")
    return f, f.transfercmd(f"STOR /inbox/persons/{name}"), ws.publish_dir / "gent" / "inbox" / "persons"


def test_an_upload_appears_under_its_name_only_when_complete(published: Workspace, start_server) -> None:
    srv = start_server(published)
    f, conn, inbox = _start_upload(published, srv.port, "big.csv")
    conn.sendall(b"x" * 100_000)
    deadline = time.time() + 5
    while not [p for p in inbox.iterdir() if p.name.startswith(".big.csv.")] and time.time() < deadline:
        time.sleep(0.05)
    assert not (inbox / "big.csv").exists()
    assert "big.csv" not in [n.rsplit("/", 1)[-1] for n in client(srv.port).nlst("/inbox/persons")]
    conn.unwrap()
    conn.close()  # the upload completes when the data connection closes
    f.voidresp()
    assert (inbox / "big.csv").stat().st_size == 100_000
    assert [p.name for p in inbox.iterdir()] == ["big.csv"]
    f.quit()


def test_curl_and_lftp_uploads_are_kept(published: Workspace, start_server, tmp_path: Path) -> None:
    if not (shutil.which("curl") and shutil.which("lftp")):
        pytest.skip("curl and lftp are installed by .ci/run")
    srv = start_server(published)
    inbox = published.publish_dir / "gent" / "inbox" / "persons"
    keys = tmp_path / "keys.csv"
    keys.write_bytes(b"insz\n" + b"85073003328\n" * 20_000)
    url = f"ftp://127.0.0.1:{srv.port}/%2Finbox/persons/by-curl.csv"
    subprocess.run(
        ["curl", "-s", "--ssl-reqd", "-k", "-u", f"gent:{PW}", "-T", keys, url], check=True, timeout=30
    )
    _lftp(srv.port, f"cd /inbox/persons; put {keys} -o by-lftp.csv")
    assert (inbox / "by-curl.csv").read_bytes() == keys.read_bytes()
    assert (inbox / "by-lftp.csv").read_bytes() == keys.read_bytes()


def test_an_upload_cut_without_tls_close_is_not_kept(published: Workspace, start_server) -> None:
    srv = start_server(published)
    f, conn, inbox = _start_upload(published, srv.port, "cut.csv")
    conn.sendall(b"insz\n" + b"85073003328\n" * 10_000)
    conn.shutdown(socket.SHUT_RDWR)  # the connection drops: no TLS close_notify
    conn.close()
    with pytest.raises(ftplib.error_temp, match="426.*not kept"):
        f.voidresp()
    assert list(inbox.iterdir()) == []
    f.quit()
    srv.stop()  # flushes every record
    with published.sessions() as s:
        uploads = s.scalars(select(Transfer).where(Transfer.direction == "upload")).all()
    assert [(t.path, t.complete) for t in uploads] == [("/inbox/persons/cut.csv", False)]


def test_an_upload_without_tls_close_is_kept_when_the_close_is_optional(
    published: Workspace, start_server, caplog: pytest.LogCaptureFixture
) -> None:
    srv = start_server(published, upload_tls_close="optional")
    data = b"insz\n" + b"85073003328\n" * 10_000
    f, conn, inbox = _start_upload(published, srv.port, "no-close.csv")
    conn.sendall(data)
    conn.shutdown(socket.SHUT_RDWR)  # a client that never sends close_notify
    conn.close()
    assert f.voidresp().startswith("226")
    assert (inbox / "no-close.csv").read_bytes() == data
    assert any(
        "ended without a TLS close" in r.getMessage() and "kept" in r.getMessage() for r in caplog.records
    )
    f.quit()


@pytest.mark.parametrize(
    "section, message",
    [
        ({"upload_tls_close": "no"}, "ftps.upload_tls_close 'no' is not one of required, optional"),
        ({"tls_session_reuse": "yes"}, "ftps.tls_session_reuse 'yes' is not one of off, required"),
        ({"masquerade_address": "ftp.example.org"}, "not an IPv4 address"),
        ({"passive_ports": "60100-60000"}, "low to high"),
        ({"port": 70000}, "ftps.port 70000 is not a TCP port"),
    ],
)
def test_bad_ftps_settings_are_named(published: Workspace, section: dict, message: str) -> None:
    from mutapub.ftps_server.settings import from_section

    with pytest.raises(ConfigError, match=message):
        from_section(section, published.home)


def _pasv_port(f: ftplib.FTP) -> int:
    reply = f.sendcmd("EPSV")
    return int(reply.split("|")[3])


def test_data_connections_are_always_encrypted_whatever_the_order(published: Workspace, start_server) -> None:
    srv = start_server(published)
    path, data, _ = _inner(published)
    f = ftplib.FTP_TLS(context=CLIENT_CTX)
    f.connect("127.0.0.1", srv.port, timeout=10)
    f.auth()
    f.voidcmd("PBSZ 0")
    with pytest.raises(ftplib.error_perm, match="536"):
        f.voidcmd("PROT C")
    f.login("gent", PW)  # PBSZ/PROT before login are fine
    f.voidcmd("TYPE I")
    for cmd in (
        "EPSV",
        "PASV",
        "PORT 127,0,0,1,200,10",
        "RETR " + path,
        "LIST",
        "MLSD",
        "NLST",
        "STOR /inbox/persons/x",
    ):
        with pytest.raises(ftplib.error_perm, match="521"):
            f.sendcmd(cmd)
    f.voidcmd("PROT P")
    port = _pasv_port(f)
    with pytest.raises(ftplib.error_perm, match="536"):
        f.voidcmd("PROT C")  # changing protection between PASV and RETR is refused
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    f.sendcmd("RETR " + path)
    tls = CLIENT_CTX.wrap_socket(raw)
    got = bytearray()
    while chunk := tls.recv(65536):
        got.extend(chunk)
    tls.close()
    f.voidresp()
    assert bytes(got) == data
    f.quit()


def test_a_plaintext_data_connection_gets_no_byte(published: Workspace, start_server) -> None:
    srv = start_server(published)
    path, _data, _ = _inner(published)
    f = client(srv.port)
    f.voidcmd("TYPE I")
    port = _pasv_port(f)
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    f.sendcmd("RETR " + path)
    raw.settimeout(3)
    try:
        first = raw.recv(5)
    except TimeoutError:
        first = b""  # the server waits for a TLS handshake and sends nothing
    assert not first.startswith(b"op;")  # never the CSV in clear
    raw.close()
    f.close()


def test_data_connection_from_another_address_is_refused(published: Workspace, start_server) -> None:
    srv = start_server(published)
    path, _data, _ = _inner(published)
    f = client(srv.port)
    f.voidcmd("TYPE I")
    port = _pasv_port(f)
    raw = socket.socket()
    raw.bind(("127.0.0.2", 0))
    raw.settimeout(5)
    raw.connect(("127.0.0.1", port))
    resp = f.getresp() if False else None
    assert resp is None
    with pytest.raises(ftplib.error_temp, match="425"):
        f.voidresp()
    raw.close()
    f.close()


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")  # on purpose: an old client
def test_tls_below_1_2_is_refused(published: Workspace, start_server) -> None:
    srv = start_server(published)
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.check_hostname = False
    old.verify_mode = ssl.CERT_NONE
    old.minimum_version = ssl.TLSVersion.TLSv1
    old.maximum_version = ssl.TLSVersion.TLSv1_1
    old.set_ciphers("ALL:@SECLEVEL=0")
    f = ftplib.FTP_TLS(context=old)
    f.connect("127.0.0.1", srv.port, timeout=10)
    with pytest.raises((ssl.SSLError, OSError, EOFError)):
        f.auth()
    f.close()
    g = client(srv.port)
    assert g.sock.version() in ("TLSv1.2", "TLSv1.3")
    g.quit()


class ReusingFTP_TLS(ftplib.FTP_TLS):
    """ftplib with TLS session reuse on data connections (stock ftplib does not reuse sessions)."""

    def ntransfercmd(self, cmd, rest=None):  # type: ignore[no-untyped-def]
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
        if self._prot_p:
            conn = self.context.wrap_socket(conn, server_hostname=self.host, session=self.sock.session)
        return conn, size


def test_tls_session_reuse_required(published: Workspace, start_server, tmp_path: Path) -> None:
    srv = start_server(published, tls_session_reuse="required")
    path, data, _ = _inner(published)
    f = client(srv.port)
    with pytest.raises((ftplib.error_temp, ftplib.error_perm, ssl.SSLError, OSError, EOFError)):
        _retr(f, path)
    f.close()
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2  # Python reuses TLS 1.2 sessions; 1.3 tickets arrive late
    g = ReusingFTP_TLS(context=ctx)
    g.connect("127.0.0.1", srv.port, timeout=10)
    g.login("gent", PW)
    g.prot_p()
    assert _retr(g, path) == data
    g.quit()
    if shutil.which("curl"):
        out = tmp_path / "c.bin"
        _curl_get(srv.port, path, out)
        assert out.read_bytes() == data
    if shutil.which("lftp"):
        out2 = tmp_path / "l.bin"
        _lftp(srv.port, f"get {path} -o {out2}")
        assert out2.read_bytes() == data


def test_implicit_tls_listener(published: Workspace, start_server, tmp_path: Path) -> None:
    if not shutil.which("curl"):
        pytest.skip("curl is installed by .ci/run")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    srv = start_server(published, implicit_port=free)
    implicit = srv.running.addresses[1][1]
    path, data, _ = _inner(published)
    out = tmp_path / "i.bin"
    subprocess.run(
        ["curl", "-s", "-k", "-u", f"gent:{PW}", f"ftps://127.0.0.1:{implicit}/%2F{path[1:]}", "-o", out],
        check=True,
        timeout=30,
    )
    assert out.read_bytes() == data
    raw = socket.create_connection(("127.0.0.1", implicit), timeout=5)
    raw.sendall(b"USER gent\r\n")  # plaintext on the implicit port: no FTP reply ever comes back in clear
    raw.settimeout(3)
    try:
        reply = raw.recv(100)
    except (TimeoutError, ConnectionResetError):
        reply = b""  # the server waits for a TLS handshake, or drops what is not one
    assert not reply.startswith(b"2") and not reply.startswith(b"3")
    raw.close()


def test_client_certificate_must_match_the_registered_fingerprint(
    published: Workspace, start_server, tmp_path: Path
) -> None:
    fp = selfsigned(tmp_path / "client.pem", tmp_path / "client.key", ["gent-client"])
    selfsigned(tmp_path / "other.pem", tmp_path / "other.key", ["someone"])
    with published.sessions() as s, s.begin():
        s.execute(update(Subscriber).where(Subscriber.code == "gent").values(cert_fingerprint=fp))
    srv = start_server(published)
    with pytest.raises(ftplib.error_perm, match="530"):
        client(srv.port)
    for name, ok in (("client", True), ("other", False)):
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        ctx.load_cert_chain(tmp_path / f"{name}.pem", tmp_path / f"{name}.key")
        if ok:
            client(srv.port, ctx=ctx).quit()
        else:
            with pytest.raises(ftplib.error_perm, match="530"):
                client(srv.port, ctx=ctx)


def test_passive_port_range_and_masquerade_address(published: Workspace, start_server) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        base = s.getsockname()[1]
    ports = range(base, base + 3)
    srv = start_server(published, passive_ports=ports, masquerade_address="192.0.2.7")
    f = client(srv.port)
    reply = f.sendcmd("PASV")
    numbers = [int(n) for n in reply[reply.index("(") + 1 : reply.index(")")].split(",")]
    assert numbers[:4] == [192, 0, 2, 7] and numbers[4] * 256 + numbers[5] in ports
    f.close()


def test_connection_limits_ban_and_idle_timeout(published: Workspace, start_server) -> None:
    srv = start_server(published, max_connections_per_ip=1, ban_after_failures=2, idle_timeout=1)
    first = client(srv.port)
    second = ftplib.FTP()
    with pytest.raises(ftplib.error_temp, match="421"):
        second.connect("127.0.0.1", srv.port, timeout=10)
    second.close()
    time.sleep(1.5)  # the idle first session is closed by the server
    with pytest.raises((ftplib.error_temp, OSError, EOFError)):
        first.voidcmd("NOOP")
    first.close()
    time.sleep(0.2)
    for _ in range(2):
        with pytest.raises(ftplib.error_perm, match="530"):
            client(srv.port, password="wrong-" + PW)
        time.sleep(0.2)
    banned = ftplib.FTP()
    with pytest.raises(ftplib.error_temp, match="421"):
        banned.connect("127.0.0.1", srv.port, timeout=10)
    banned.close()


def test_a_banned_address_is_refused_many_times_without_a_dying_session_thread(
    published: Workspace, start_server
) -> None:
    died: list[str] = []
    hook = threading.excepthook
    threading.excepthook = lambda args: died.append(repr(args.exc_value))
    try:
        srv = start_server(published, ban_after_failures=1)
        with pytest.raises(ftplib.error_perm, match="530"):
            client(srv.port, password="wrong-" + PW)
        for _ in range(40):  # each answered with 421 and closed before its session thread starts
            refused = ftplib.FTP()
            with pytest.raises(ftplib.error_temp, match="421"):
                refused.connect("127.0.0.1", srv.port, timeout=10)
            refused.close()
        srv.stop()  # joins every session thread
    finally:
        threading.excepthook = hook
    assert died == []


def test_total_connection_limit(published: Workspace, start_server) -> None:
    srv = start_server(published, max_connections=2, max_connections_per_ip=0)
    held = [client(srv.port) for _ in range(2)]
    time.sleep(0.2)
    extra = ftplib.FTP()
    with pytest.raises(ftplib.error_temp, match="421"):
        extra.connect("127.0.0.1", srv.port, timeout=10)
    for f in held:
        f.quit()


def test_a_slow_password_check_does_not_stall_other_sessions(
    published: Workspace, start_server, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = SubscriberAuthorizer.refusal

    def slow(self, username, password, handler):  # type: ignore[no-untyped-def]
        if username == "leuven":
            time.sleep(3)
        return real(self, username, password, handler)

    monkeypatch.setattr(SubscriberAuthorizer, "refusal", slow)
    srv = start_server(published)
    add_subscriber(published, "brugge")

    def slow_login() -> None:
        with pytest.raises(ftplib.error_perm):
            client(srv.port, "leuven", PW + "-x")

    t = threading.Thread(target=slow_login, daemon=True)
    t.start()
    time.sleep(0.3)
    began = time.monotonic()
    f = client(srv.port, "brugge")
    f.nlst("/outbox")
    f.quit()
    assert time.monotonic() - began < 2
    t.join(10)


def test_listings_ignore_ls_options(published: Workspace, start_server) -> None:
    """lftp's `ls -R /outbox` sends "LIST -R /outbox": the options are dropped, the folder listed."""
    srv = start_server(published)
    path, _data, _ = _inner(published)
    folder, name = path.rsplit("/", 1)
    with client(srv.port) as ftp:
        lines: list[str] = []
        ftp.retrlines(f"LIST -la {folder}", lines.append)
        assert any(line.endswith(name) for line in lines)
        assert name in [n.rsplit("/", 1)[-1] for n in ftp.nlst(f"-R {folder}")]
    if shutil.which("lftp"):
        assert name in _lftp(srv.port, f"ls -R {folder}")


def test_list_r_lists_the_whole_tree_as_ls_does(published: Workspace, start_server) -> None:
    srv = start_server(published)
    path, _data, _ = _inner(published)
    folder, name = path.rsplit("/", 1)  # /outbox/persons, the delivery
    with client(srv.port) as ftp:
        lines: list[str] = []
        ftp.retrlines("LIST -R /outbox", lines.append)
    assert lines[0] == "/outbox:" and lines[1].endswith(" persons") and lines[1].startswith("d")
    at = lines.index(f"{folder}:")
    assert lines[at - 1] == "" and any(line.endswith(" " + name) for line in lines[at + 1 :])
    assert not any("leuven" in line or ".part" in line for line in lines)
    if shutil.which("lftp"):  # .ci/run installs it
        assert f"{folder}:" in _lftp(srv.port, "ls -R /outbox").splitlines()
