"""The protocol role: a fresh pyftpdlib TLS handler class per server, built from the settings.

Where pyftpdlib does not do what a government FTPS server must, one overridden method fixes it:
`process_command` refuses a login and every data connection unless they are encrypted, whatever
order the commands come in (see tests/ftps_server/test_pyftpdlib_faults.py). Callbacks only queue
records; the writer thread in `tracking` puts them in the database.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from OpenSSL import SSL
from pyftpdlib.exceptions import FilesystemError
from pyftpdlib.handlers import TLS_DTPHandler, TLS_FTPHandler
from pyftpdlib.log import logger as ftp_logger
from pyftpdlib.utils import is_ssl_sock, strerror

from mutapub.ftps_server.authorizer import Guard, SubscriberAuthorizer, tls_info
from mutapub.ftps_server.filesystem import SubscriberFS
from mutapub.ftps_server.settings import FtpsSettings
from mutapub.ftps_server.tracking import Store, new_id, now
from mutapub.mutations.errors import ConfigError

_LS_OPTIONS = re.compile(r"^(?:-[A-Za-z]+\s+)+")

log = logging.getLogger(__name__)

# TLS 1.2 suites with forward secrecy and AEAD only; TLS 1.3 suites are all modern.
CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20:!aNULL:!eNULL:!MD5:!DSS"
# Commands that open or use a data connection: none of them without PROT P.
DATA_COMMANDS = {"PASV", "EPSV", "PORT", "EPRT", "LIST", "NLST", "MLSD", "RETR", "STOR", "APPE", "STOU"}
TRANSFER_COMMANDS = {"LIST", "NLST", "MLSD", "RETR", "STOR", "APPE", "STOU"}


def ssl_context(settings: FtpsSettings) -> SSL.Context:
    """The server's TLS context: TLS 1.2 or newer, modern suites, an optional client certificate."""
    for what, path in (("certificate", settings.certfile), ("key", settings.keyfile)):
        if not path.is_file():
            raise ConfigError(
                f"no TLS {what} at {path}: run `mutapub certs selfsigned` or set ftps.certfile/keyfile"
            )
    ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
    ctx.set_min_proto_version(SSL.TLS1_2_VERSION)
    ctx.set_cipher_list(CIPHERS.encode())
    options = SSL.OP_NO_COMPRESSION | SSL.OP_CIPHER_SERVER_PREFERENCE
    options |= getattr(SSL, "OP_NO_RENEGOTIATION", 0)
    ctx.set_options(options)
    try:
        ctx.use_certificate_chain_file(str(settings.certfile))
        ctx.use_privatekey_file(str(settings.keyfile))
        ctx.check_privatekey()
    except SSL.Error as exc:
        raise ConfigError(f"cannot use {settings.certfile} / {settings.keyfile}: {exc}") from exc
    # A client certificate is asked for but not required: subscribers with a registered fingerprint
    # must present theirs (the authorizer compares it); self-signed ones are the norm, so any chain
    # is accepted here.
    ctx.set_verify(SSL.VERIFY_PEER, lambda conn, cert, errnum, depth, ok: True)
    # Sessions must be resumable for data connections to reuse the control connection's session;
    # with VERIFY_PEER OpenSSL refuses resumption without a session id context.
    ctx.set_session_id(b"mutapub-ftps")
    ctx.set_session_cache_mode(SSL.SESS_CACHE_SERVER)
    return ctx


class _Empty:
    """A producer of nothing (asynchat's interface)."""

    def more(self) -> bytes:
        return b""


def session_reused(conn: Any) -> bool:
    """Whether a pyOpenSSL connection resumed an earlier TLS session."""
    from OpenSSL._util import lib  # pyOpenSSL has no public call for SSL_session_reused

    return bool(lib.SSL_session_reused(conn._ssl))


def build_handler(
    settings: FtpsSettings, store: Store, *, implicit: bool = False, guard: Guard | None = None
) -> type[TLS_FTPHandler]:
    """A new TLS handler class for one listener (explicit FTPS, or implicit when `implicit`)."""
    context = ssl_context(settings)
    bans: Guard = guard or Guard(settings.ban_after_failures, settings.ban_seconds)
    authorizer = SubscriberAuthorizer(store, bans)
    publish_root = os.path.realpath(store.publish_dir)
    reuse_required = settings.tls_session_reuse == "required"
    close_required = settings.upload_tls_close == "required"

    class DataHandler(TLS_DTPHandler):
        timeout = settings.idle_timeout
        tls: tuple[str | None, str | None] = (None, None)
        upload: tuple[str, bool] | None = None
        transfer_finished: bool  # set by pyftpdlib

        def close(self) -> None:
            # An upload is settled before the reply goes out (pyftpdlib replies first and calls
            # on_file_received or on_incomplete_file_received after), so a client that lists right
            # after the reply sees the complete file under its name, and no trace of a refused one.
            if not self._closed and self.receive and self.file_obj is not None:
                if self.transfer_finished and not self._peer_closed_tls():
                    # The connection ended without the client's TLS close_notify: it may have been cut
                    # (or truncated by someone in between), so the bytes received may not be the file.
                    ftp_logger.warning(
                        "upload by %s from %s ended without a TLS close (%s): %s",
                        self.cmd_channel.username,
                        self.cmd_channel.remote_ip,
                        self.tls[0] or "TLS version unknown",
                        "not kept" if close_required else "kept, as ftps.upload_tls_close is optional",
                    )
                    if close_required:
                        self.transfer_finished = False
                        self._resp = (
                            "426 Upload ended without a TLS close; it may be incomplete and was not kept.",
                            ftp_logger.warning,
                        )
                self.file_obj.close()
                fs = self.cmd_channel.fs
                if not self.transfer_finished:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(self.file_obj.name)  # on_incomplete_file_received records it after
                else:
                    self.upload = fs.finish_upload(self.file_obj.name) if fs else (self.file_obj.name, False)
                    if not self.upload[1]:
                        self._resp = ("553 File exists: the upload was not kept.", ftp_logger.warning)
            super().close()

        def _peer_closed_tls(self) -> bool:
            # Read before pyftpdlib's own shutdown, which marks the peer's close as received anyway.
            return isinstance(self.socket, SSL.Connection) and bool(
                self.socket.get_shutdown() & SSL.RECEIVED_SHUTDOWN
            )

        close_when_established = False

        def handle_ssl_established(self) -> None:
            self.tls = tls_info(self.socket)
            if reuse_required and not session_reused(self.socket):
                # As vsftpd's require_ssl_reuse: a data connection must prove it comes from the same
                # client by resuming the control connection's TLS session.
                self._resp = ("522 TLS session reuse required on the data connection.", ftp_logger.warning)
                self.close()
            elif self.close_when_established:
                self.handle_close()

        def handle_close(self) -> None:
            # pyftpdlib ends an empty transfer (an empty listing or file) before the TLS handshake is
            # over and drops the socket under the client ("shutdown while in init"); it ends after it.
            if self._ssl_accepting and not self._closed:
                self.close_when_established = True
                return
            super().handle_close()

    proto_cmds = {k: v for k, v in TLS_FTPHandler.proto_cmds.items() if k not in ("STOU", "MFMT")}
    proto_cmds["HASH"] = {
        "perm": "r",
        "auth": True,
        "arg": True,
        "help": "Syntax: HASH <SP> file-name (SHA-256 of a file, draft-bryan-ftpext-hash).",
    }

    class Handler(TLS_FTPHandler):
        banner = "mutapub FTPS ready." if implicit else "mutapub FTPS ready: AUTH TLS first."
        tls_control_required = True
        tls_data_required = True
        permit_foreign_addresses = False
        permit_privileged_ports = False
        use_gmt_times = True
        use_sendfile = False
        max_login_attempts = 3
        encoding = "utf8"

        def __init__(self, conn: Any, server: Any, ioloop: Any = None) -> None:
            self.session_id = new_id()
            self._transfer: dict[str, Any] | None = None
            super().__init__(conn, server, ioloop)
            if self.connected:
                self._extra_feats.append("HASH SHA-256*")

        # --- connection

        def handle(self) -> None:
            if bans.banned(self.remote_ip):
                self._record_login("", ok=False, reason="address banned")
                self.respond("421 Too many failed logins from your address; try again later.")
                self.close_when_done()
                return
            if implicit:
                # Implicit FTPS: TLS from the first byte; the 220 greeting follows the handshake.
                self.secure_connection(self.ssl_context)
                return
            super().handle()

        def handle_ssl_established(self) -> None:
            if implicit:
                TLS_FTPHandler.handle(self)

        # --- the one fix: encryption whatever the command order

        def process_command(self, cmd: str, *args: Any, **kwargs: Any) -> None:
            """pyftpdlib checks PROT only at PASV/PORT (so PROT C after PASV gives a plaintext data
            connection) and answers a plaintext USER with 550; here no login happens and no data
            connection is opened or used without TLS, whatever order the client sends commands in."""
            if cmd in ("USER", "PASS") and not (is_ssl_sock(self.socket) and self._ssl_established):
                if cmd == "USER":
                    self._record_login(
                        args[0] if args else "", ok=False, reason="plaintext login (no AUTH TLS)"
                    )
                    bans.failed(self.remote_ip)
                self.respond("530 TLS required: send AUTH TLS before USER.")
                return
            if cmd == "PROT" and args and args[0].strip().upper() != "P":
                self.respond("536 Only PROT P: every data connection is encrypted.")
                return
            if cmd in DATA_COMMANDS and not self._prot:
                self.respond("521 Data connections must be encrypted: send PBSZ 0 and PROT P first.")
                return
            if (
                cmd in TRANSFER_COMMANDS
                and self.data_channel is not None
                and not is_ssl_sock(self.data_channel.socket)
            ):
                self.respond("521 The data connection is not encrypted.")
                return
            super().process_command(cmd, *args, **kwargs)

        def pre_process_command(self, line: str, cmd: str, arg: str) -> None:
            # Clients send ls options with LIST/NLST (lftp's `ls -R /outbox` sends "LIST -R /outbox");
            # pyftpdlib knows only a bare "-a"/"-l"/"-al"/"-la" and reads the rest as a path. Listings
            # always have one format here, so leading options are dropped, as vsftpd does.
            self._recursive = False
            if cmd in ("LIST", "NLST") and arg.startswith("-"):
                options = _LS_OPTIONS.match(arg + " ")
                self._recursive = cmd == "LIST" and options is not None and "R" in options.group(0)
                arg = _LS_OPTIONS.sub("", arg + " ").strip()
            super().pre_process_command(line, cmd, arg)

        def push_dtp_data(
            self, data: Any, isproducer: bool = False, file: Any = None, cmd: Any = None
        ) -> None:
            # An empty listing pushed as b"" makes asynchat send() zero bytes, which pyOpenSSL reports
            # as an EOF while the handshake runs: the data connection dropped before TLS was up.
            # As a producer that yields nothing, it ends after the handshake like an empty file.
            if not isproducer and not data:
                data, isproducer = _Empty(), True
            super().push_dtp_data(data, isproducer, file, cmd)

        # --- commands

        _recursive = False

        def ftp_LIST(self, path: str) -> str | None:
            """A directory listing; with `-R` (see `pre_process_command`) the whole tree below it."""
            if not (self._recursive and self.fs.isdir(path)):
                return super().ftp_LIST(path)
            # `LIST -R`, as `ls -lR` prints it: each directory's path, its entries, a blank line.
            try:
                listing = b"".join(self._list_tree(path))
            except (OSError, FilesystemError) as err:
                self.respond(f"550 {strerror(err)}.")
                return None
            self.push_dtp_data(listing, cmd="LIST")
            return path

        def _list_tree(self, path: str) -> Iterator[bytes]:
            names = sorted(self.fs.listdir(path))
            yield f"{self.fs.fs2ftp(path)}:\r\n".encode(self.encoding, self.unicode_errors)
            yield from self.fs.format_list(path, names)
            for name in names:
                child = os.path.join(path, name)
                if self.fs.isdir(child) and not self.fs.islink(child):
                    yield b"\r\n"
                    yield from self._list_tree(child)

        def ftp_RETR(self, file: str) -> str | None:
            """Send a file byte for byte, even in ASCII mode (as vsftpd does): a line-ending
            conversion would break its SHA-256 and its size. The transfer is tracked from here."""
            self._transfer = {"direction": "download", "rest": self._restart_position, "started": now()}
            current: str = self._current_type  # type: ignore[has-type]
            self._current_type = "i"
            try:
                result = super().ftp_RETR(file)
            finally:
                self._current_type = current
            if result is None:
                self._transfer = None
            return result

        def ftp_SIZE(self, path: str) -> None:
            """A file's size in bytes, in either mode: files are sent unchanged in both."""
            current: str = self._current_type  # type: ignore[has-type]
            self._current_type = "i"
            try:
                super().ftp_SIZE(path)
            finally:
                self._current_type = current

        def ftp_STOR(self, file: str, mode: str = "w") -> str | None:
            """Receive an upload (the filesystem writes it under a part name); tracked from here."""
            self._transfer = {"direction": "upload", "rest": 0, "started": now()}
            result = super().ftp_STOR(file, mode)
            if result is None:
                self._transfer = None
            return result

        def ftp_HASH(self, path: str) -> None:
            """SHA-256 of a whole file: `213 SHA-256 0-<last byte> <hex> <path>`."""
            if not os.path.isfile(path):
                self.respond("550 Not a file.")
                return
            digest = hashlib.sha256()
            with open(path, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(chunk)
            size = os.path.getsize(path)
            self.respond(f"213 SHA-256 0-{max(size - 1, 0)} {digest.hexdigest()} {self.fs.fs2ftp(path)}")

        def ftp_OPTS(self, line: str) -> None:
            """`OPTS HASH [SHA-256]` selects the only algorithm `HASH` offers; other options as usual."""
            name, _, arg = line.partition(" ")
            if name.upper() != "HASH":
                super().ftp_OPTS(line)
            elif arg.strip().upper() in ("", "SHA-256"):
                self.respond("200 SHA-256")
            else:
                self.respond("501 Only SHA-256 is supported.")

        # --- callbacks: they only queue records

        def on_login(self, username: str) -> None:
            self._record_login(username, ok=True, reason="")

        def on_file_sent(self, file: str) -> None:
            self._transfer_ended(file, file, complete=True)

        def on_incomplete_file_sent(self, file: str) -> None:
            self._transfer_ended(file, file, complete=False)

        def on_file_received(self, file: str) -> None:
            final, ok = getattr(self.data_channel, "upload", None) or (file, False)
            if not ok:
                log.warning("upload %s not kept: the name was taken meanwhile", final)
            self._transfer_ended(final, final if ok else None, complete=ok)

        def on_incomplete_file_received(self, file: str) -> None:
            final = self.fs.discard_upload(file) if self.fs else file
            self._transfer_ended(final, None, complete=False)

        # --- records

        def _record_login(self, username: str, *, ok: bool, reason: str) -> None:
            version, cipher = tls_info(self.socket)
            store.record(
                "login",
                session=self.session_id,
                at=now(),
                username=username,
                remote=self.remote_ip,
                ok=ok,
                reason=reason,
                tls_version=version,
                tls_cipher=cipher,
            )

        def _transfer_ended(self, file: str, existing: str | None, *, complete: bool) -> None:
            started = self._transfer or {"direction": "download", "rest": 0, "started": now()}
            self._transfer = None
            dtp = self.data_channel
            sent = dtp.get_transmitted_bytes() if dtp is not None else 0
            version, cipher = getattr(dtp, "tls", (None, None))
            size = os.path.getsize(existing) if existing and os.path.isfile(existing) else None
            if started["direction"] == "download":
                complete = complete and size is not None and started["rest"] + sent == size
            store.record(
                "transfer",
                session=self.session_id,
                subscriber=self.username,
                remote=self.remote_ip,
                direction=started["direction"],
                path=self.fs.fs2ftp(file) if self.fs else file,
                publish_path=Path(os.path.relpath(os.path.realpath(file), publish_root)).as_posix(),
                started=started["started"],
                ended=now(),
                rest_offset=started["rest"],
                bytes=sent,
                size=size,
                complete=complete,
                tls_version=version,
                tls_cipher=cipher,
            )

    Handler.implicit = implicit
    Handler.authorizer = authorizer
    Handler.abstracted_fs = SubscriberFS
    Handler.dtp_handler = DataHandler
    Handler.proto_cmds = proto_cmds
    Handler.ssl_context = context
    Handler.passive_ports = settings.passive_ports
    Handler.masquerade_address = settings.masquerade_address
    Handler.timeout = settings.idle_timeout
    Handler.auth_failed_timeout = settings.login_failure_delay
    return Handler
