"""Who you are and what you may do: subscribers from the database, bans of guessing addresses."""

from __future__ import annotations

import datetime as dt
import functools
import ipaddress
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from OpenSSL import SSL
from pyftpdlib.exceptions import AuthenticationFailed
from sqlalchemy import select

from mutapub.ftps_server.tracking import Store, now
from mutapub.mutations.models import Grant, Subscriber
from mutapub.mutations.subscribers import hash_password, verify_password

log = logging.getLogger(__name__)

# pyftpdlib permission letters: e CWD, l list, r RETR, w STOR; nothing else is ever granted.
ROOT_PERMS = "el"
OUTBOX_PERMS = "elr"
INBOX_PERMS = "elw"


@functools.cache
def _dummy_hash() -> str:
    # Unknown users are checked against this hash too, so that timing does not tell which names exist.
    return hash_password("not the password of anyone")


class Guard:
    """Failed logins per source address; `ban_after` failures within `ban_seconds` ban the address."""

    def __init__(
        self, ban_after: int, ban_seconds: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ban_after = ban_after
        self.ban_seconds = ban_seconds
        self.clock = clock
        self._failures: dict[str, list[float]] = {}
        self._banned: dict[str, float] = {}
        self._lock = threading.Lock()

    def banned(self, ip: str) -> bool:
        """Whether `ip` is banned now."""
        with self._lock:
            until = self._banned.get(ip)
            if until is None:
                return False
            if self.clock() >= until:
                del self._banned[ip]
                return False
            return True

    def failed(self, ip: str) -> bool:
        """Count a failure of `ip`; whether this failure banned it."""
        if not self.ban_after:
            return False
        with self._lock:
            t = self.clock()
            recent = [f for f in self._failures.get(ip, []) if t - f < self.ban_seconds] + [t]
            if len(recent) >= self.ban_after:
                self._banned[ip] = t + self.ban_seconds
                self._failures.pop(ip, None)
                return True
            self._failures[ip] = recent
            return False

    def succeeded(self, ip: str) -> None:
        """Forget the failures of `ip` after a good login."""
        with self._lock:
            self._failures.pop(ip, None)


def tls_info(conn: Any) -> tuple[str | None, str | None]:
    """The TLS version and cipher of a pyOpenSSL connection, or (None, None) for a plain socket."""
    if not isinstance(conn, SSL.Connection):
        return None, None
    try:
        return conn.get_protocol_version_name(), conn.get_cipher_name()
    except SSL.Error:
        return None, None


def client_fingerprint(conn: Any) -> str | None:
    """The SHA-256 fingerprint of the TLS client certificate on `conn`, if the client sent one."""
    if not isinstance(conn, SSL.Connection):
        return None
    cert = conn.get_peer_certificate(as_cryptography=True)
    return cert.fingerprint(hashes.SHA256()).hex() if cert is not None else None


def address_allowed(remote: str, allow: list[str]) -> bool:
    """Whether `remote` is in one of the CIDRs of `allow` (an empty list allows every address)."""
    if not allow:
        return True
    ip = ipaddress.ip_address(remote.removeprefix("::ffff:") if "." in remote else remote)
    return any(ip in ipaddress.ip_network(net) for net in allow)


class SubscriberAuthorizer:
    """pyftpdlib's authorizer role backed by the subscribers table; homes are `publish/<code>`."""

    def __init__(self, store: Store, guard: Guard, today: Callable[[], dt.date] | None = None) -> None:
        self.store = store
        self.guard = guard
        self.today = today or (lambda: dt.datetime.now(dt.UTC).date())
        # scrypt is slow and memory-hard on purpose: a hundred logins at once would each hold its working
        # memory while sharing the cores. At most one check per core runs; the others wait their turn.
        self._hashing = threading.BoundedSemaphore(os.cpu_count() or 2)

    def refusal(self, username: str, password: str, handler: Any) -> str | None:
        """Why `username` may not log in with `password` over `handler`'s connection, or None."""
        with self.store.sessions() as session:
            sub = session.scalars(select(Subscriber).where(Subscriber.code == username)).one_or_none()
        # The password is checked first, whatever the account's state, so refusals take equal time.
        with self._hashing:
            good = verify_password(
                password, sub.password_hash if sub and sub.password_hash else _dummy_hash()
            )
        if sub is None:
            return "unknown subscriber"
        if not good:
            return "wrong password"
        if sub.status != "active":
            return f"subscriber {sub.status}"
        if sub.password_expires is not None and self.today() > sub.password_expires:
            return f"password expired on {sub.password_expires.isoformat()}"
        if not address_allowed(handler.remote_ip, list(sub.allow_ip or [])):
            return f"address {handler.remote_ip} not in the allow-list"
        if sub.cert_fingerprint:
            presented = client_fingerprint(handler.socket)
            if presented is None:
                return "client certificate required"
            if presented != sub.cert_fingerprint:
                return "client certificate does not match"
        return None

    # --- pyftpdlib's authorizer interface

    def validate_authentication(self, username: str, password: str, handler: Any) -> None:
        """Raise AuthenticationFailed (the client sees only "Authentication failed") and record why."""
        try:
            reason = self.refusal(username, password, handler)
        except Exception:
            log.exception("authorizer: could not check %r", username)
            reason = "internal error"
        if reason is None:
            self.guard.succeeded(handler.remote_ip)
            self.prepare_home(username)
            return
        version, cipher = tls_info(handler.socket)
        banned = self.guard.failed(handler.remote_ip)
        log.warning("login refused: %r from %s: %s", username, handler.remote_ip, reason)
        self.store.record(
            "login",
            session=handler.session_id,
            at=now(),
            username=username,
            remote=handler.remote_ip,
            ok=False,
            reason=reason + ("; address banned" if banned else ""),
            tls_version=version,
            tls_cipher=cipher,
        )
        raise AuthenticationFailed("")

    def prepare_home(self, username: str) -> None:
        """Make `outbox`, `inbox` and one `inbox/<dataset>` per dataset the subscriber has a grant on:
        uploads go into those (subscribers cannot make folders), never into the inbox itself."""
        home = self.store.publish_dir / username
        with self.store.sessions() as session:
            datasets = session.scalars(
                select(Grant.dataset)
                .join(Subscriber, Subscriber.id == Grant.subscriber_id)
                .where(Subscriber.code == username, Grant.revoked_at.is_(None))
                .distinct()
            ).all()
        for sub in ("outbox", "inbox", *(f"inbox/{d}" for d in datasets)):
            (home / sub).mkdir(parents=True, exist_ok=True)

    def get_home_dir(self, username: str) -> str:
        """`publish/<code>` (made at login by `prepare_home`)."""
        return os.path.realpath(self.store.publish_dir / username)

    def perms_for(self, username: str, path: str | None) -> str:
        """The permissions on a real path: list everywhere, download in /outbox, upload in /inbox."""
        if path is None:
            return ROOT_PERMS
        home = Path(self.get_home_dir(username))
        real = Path(os.path.realpath(path))
        if real == home / "inbox" or (real.parent == home / "inbox" and not real.is_dir()):
            return ROOT_PERMS  # listed and entered, but uploads go into /inbox/<dataset>/
        for area, perms in (("outbox", OUTBOX_PERMS), ("inbox", INBOX_PERMS)):
            if real == home / area or (home / area) in real.parents:
                return perms
        return ROOT_PERMS

    def has_perm(self, username: str, perm: str, path: str | None = None) -> bool:
        """Whether `username` may do `perm` on `path`."""
        return perm in self.perms_for(username, path)

    def get_perms(self, username: str) -> str:
        """Every permission the subscriber has somewhere (pyftpdlib's MLSx "perm" fact is refined per
        directory by the filesystem)."""
        return "elrw"

    def has_user(self, username: str) -> bool:
        """Whether a subscriber with this code exists."""
        with self.store.sessions() as session:
            return session.scalar(select(Subscriber.id).where(Subscriber.code == username)) is not None

    def get_msg_login(self, username: str) -> str:
        """The 230 reply text."""
        return f"Welcome {username}: /outbox has your files, /inbox takes your uploads."

    def get_msg_quit(self, username: str) -> str:
        """The 221 reply text."""
        return "Goodbye."

    def impersonate_user(self, username: str, password: str) -> None:
        """No OS users: files are served as the server's own user."""

    def terminate_impersonation(self, username: str) -> None:
        """No OS users."""
