"""A real SFTP server for the tests: paramiko's server interfaces serving one directory on loopback."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import paramiko
from paramiko.sftp import SFTP_NO_SUCH_FILE, SFTP_PERMISSION_DENIED


class _Server(paramiko.ServerInterface):
    def __init__(self, user: str, key: paramiko.PKey) -> None:
        self.user, self.key = user, key

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        ok = username == self.user and key.get_base64() == self.key.get_base64()
        return paramiko.AUTH_SUCCESSFUL if ok else paramiko.AUTH_FAILED

    def get_allowed_auths(self, username: str) -> str:
        return "publickey"

    def check_channel_request(self, kind: str, chanid: int) -> int:
        return (
            paramiko.OPEN_SUCCEEDED if kind == "session" else paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED
        )


class _Handle(paramiko.SFTPHandle):
    def stat(self) -> paramiko.SFTPAttributes | int:
        return paramiko.SFTPAttributes.from_stat(os.fstat(self.readfile.fileno()))  # type: ignore[attr-defined]


class _Sftp(paramiko.SFTPServerInterface):
    """Read-only access to the root directory (what a source offers)."""

    ROOT: Path

    def _real(self, path: str) -> Path:
        return self.ROOT / path.lstrip("/")

    def list_folder(self, path: str) -> list[paramiko.SFTPAttributes] | int:
        folder = self._real(path)
        if not folder.is_dir():
            return SFTP_NO_SUCH_FILE
        out = []
        for name in sorted(os.listdir(folder)):
            attr = paramiko.SFTPAttributes.from_stat(os.stat(folder / name))
            attr.filename = name
            out.append(attr)
        return out

    def stat(self, path: str) -> paramiko.SFTPAttributes | int:
        real = self._real(path)
        return paramiko.SFTPAttributes.from_stat(os.stat(real)) if real.exists() else SFTP_NO_SUCH_FILE

    lstat = stat

    def open(self, path: str, flags: int, attr: paramiko.SFTPAttributes) -> paramiko.SFTPHandle | int:
        if flags & (os.O_WRONLY | os.O_RDWR):
            return SFTP_PERMISSION_DENIED
        real = self._real(path)
        if not real.is_file():
            return SFTP_NO_SUCH_FILE
        handle = _Handle(flags)
        handle.readfile = open(real, "rb")  # type: ignore[attr-defined]  # noqa: SIM115
        handle.filename = str(real)  # type: ignore[attr-defined]
        return handle

    def canonicalize(self, path: str) -> str:
        return "/" + path.strip("/")

    def session_ended(self) -> None:
        return None


@dataclass
class SftpServer:
    """A running test server: where it listens and the files a client needs."""

    host: str
    port: int
    host_key: paramiko.PKey
    user: str
    client_key_file: Path
    known_hosts: Path


@contextmanager
def sftp_server(root: Path, workdir: Path, user: str = "mutapub") -> Iterator[SftpServer]:
    """Serve `root` over SFTP on 127.0.0.1 (a random port) until the block ends; writes the client key
    and a known_hosts file that holds the server's key in `workdir`."""
    host_key = paramiko.Ed25519Key.from_private_key_file(str(_key(workdir / "host_key")))
    client_key_file = _key(workdir / "client_key")
    client_key = paramiko.Ed25519Key.from_private_key_file(str(client_key_file))
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.2)  # here, not in the thread: a block that ends at once closes it first
    port = listener.getsockname()[1]
    known = workdir / "known_hosts"
    known.write_text(f"[127.0.0.1]:{port} {host_key.get_name()} {host_key.get_base64()}\n")
    sftp_class = type("RootedSftp", (_Sftp,), {"ROOT": root})
    stop = threading.Event()
    transports: list[paramiko.Transport] = []

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            t = paramiko.Transport(conn)
            t.add_server_key(host_key)
            t.set_subsystem_handler("sftp", paramiko.SFTPServer, sftp_class)
            transports.append(t)
            try:
                t.start_server(server=_Server(user, client_key))
            except (paramiko.SSHException, OSError, EOFError):
                t.close()  # a client that refused our host key hangs up during the handshake

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield SftpServer("127.0.0.1", port, host_key, user, client_key_file, known)
    finally:
        stop.set()
        listener.close()
        thread.join(5)
        for t in transports:
            t.close()


def _key(path: Path) -> Path:
    """An Ed25519 private key file in OpenSSH format (made with `cryptography`)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    if not path.exists():
        key = Ed25519PrivateKey.generate()
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
            )
        )
        path.chmod(0o600)
    return path
