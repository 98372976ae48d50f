"""Subscribers: agencies with an FTPS account, delivery preferences and credentials.

Every function that changes something takes the caller's session and an AuditContext, records the
change in the audit trail in the same session, and leaves committing to the caller: a command is one
transaction, so a refused input writes nothing.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import hmac
import ipaddress
import re
import secrets
import string
from collections.abc import Iterable
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from mutapub.mutations import audit
from mutapub.mutations.audit import AuditContext
from mutapub.mutations.errors import Conflict, InputError, NotFound
from mutapub.mutations.models import Delivery, FollowedKey, Grant, Subscriber, utcnow

# The code is a file-name component and the FTPS user name: nothing a path or a shell could misread.
CODE = re.compile(r"[a-z0-9][a-z0-9_-]{1,31}")
STATUSES = ("active", "suspended")
FORMATS = ("csv", "jsonl", "xml")
COMPRESSIONS = ("gzip", "zip", "none")
DEFAULT_TEMPLATE = "{subscriber}_{dataset}-mutaties_{ts}_{seq:06d}.{ext}"
TEMPLATE_FIELDS = {"subscriber", "dataset", "ts", "seq", "ext"}
MIN_PASSWORD = 12

# scrypt cost: 2**15 × 8 × 128 bytes = 32 MiB and ~0.1 s per check, slow enough against guessing.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1


# --- checks (pure) -------------------------------------------------------------------------------


def check_code(code: str) -> str:
    """The code if it is a safe file name and user name (`[a-z0-9][a-z0-9_-]{1,31}`)."""
    if not CODE.fullmatch(code):
        raise InputError(
            f"subscriber code {code!r} is not allowed: use 2 to 32 of a-z, 0-9, '_' and '-', "
            "starting with a letter or digit"
        )
    return code


def check_choice(what: str, value: str, choices: Iterable[str]) -> str:
    """`value` if it is one of `choices`."""
    options = tuple(choices)
    if value not in options:
        raise InputError(f"{what} {value!r} is not one of {', '.join(options)}")
    return value


def parse_cidrs(values: Iterable[str]) -> list[str]:
    """CIDRs (or single addresses) normalised; a malformed one or one with host bits set is refused."""
    out: list[str] = []
    for value in values:
        try:
            net = ipaddress.ip_network(value.strip(), strict=True)
        except ValueError as exc:
            hint = ""
            with contextlib.suppress(ValueError):  # a network with host bits set: suggest the network
                hint = f" (did you mean {ipaddress.ip_network(value.strip(), strict=False)}?)"
            raise InputError(f"malformed IP allow-list entry {value!r}: {exc}{hint}") from exc
        if str(net) not in out:
            out.append(str(net))
    return out


def check_template(template: str) -> str:
    """A file-name template using only {subscriber}, {dataset}, {ts}, {seq} and {ext}, without '/'."""
    fields = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    unknown = {f.split(".")[0].split("[")[0] for f in fields} - TEMPLATE_FIELDS
    if unknown:
        raise InputError(
            f"file-name template {template!r} uses unknown field(s) {', '.join(sorted(unknown))} "
            f"(known: {', '.join(sorted(TEMPLATE_FIELDS))})"
        )
    if "seq" not in fields:
        raise InputError(
            f"file-name template {template!r} must contain {{seq}} so that every file name is unique"
        )
    try:
        sample = template.format(subscriber="s", dataset="d", ts="20250101000000000", seq=1, ext="csv")
    except (ValueError, IndexError, KeyError) as exc:
        raise InputError(f"file-name template {template!r} is invalid: {exc}") from exc
    if "/" in sample or "\\" in sample or sample.startswith("."):
        raise InputError(
            f"file-name template {template!r} must give a plain file name (no '/', no leading '.')"
        )
    return template


def check_delimiter(delimiter: str) -> str:
    """A CSV delimiter: one character, not a quote or a line break."""
    if len(delimiter) != 1 or delimiter in '"\r\n':
        raise InputError(f"CSV delimiter {delimiter!r} must be one character other than '\"' or a line break")
    return delimiter


def check_fingerprint(fingerprint: str) -> str:
    """A client-certificate SHA-256 fingerprint as 64 lower-case hex digits (colons allowed on input)."""
    fp = fingerprint.replace(":", "").strip().lower()
    if not re.fullmatch(r"[0-9a-f]{64}", fp):
        raise InputError(f"certificate fingerprint {fingerprint!r} is not a SHA-256 (64 hex digits)")
    return fp


def check_password(password: str) -> str:
    """A password long enough to resist guessing."""
    if len(password) < MIN_PASSWORD:
        raise InputError(f"the password is too short: at least {MIN_PASSWORD} characters")
    return password


# --- passwords -----------------------------------------------------------------------------------


def generate_password() -> str:
    """A strong random password (24 URL-safe characters, 144 bits)."""
    return secrets.token_urlsafe(18)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password(password: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    """`scrypt$n$r$p$salt$hash`: a salted scrypt hash carrying its own parameters."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=256 * n * r, dklen=32)
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str | None) -> bool:
    """Whether `password` matches the stored hash (constant-time comparison)."""
    if not stored:
        return False
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(
            password.encode("utf-8"),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            maxmem=256 * int(n) * int(r),
            dklen=len(expected),
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


def password_valid(subscriber: Subscriber, password: str, today: dt.date) -> bool:
    """Whether `password` logs `subscriber` in on `today` (matching hash, not expired)."""
    if subscriber.password_expires is not None and today > subscriber.password_expires:
        return False
    return verify_password(password, subscriber.password_hash)


# --- views ---------------------------------------------------------------------------------------


def summary(sub: Subscriber) -> dict[str, Any]:
    """The `subscriber list --json` object."""
    return {
        "code": sub.code,
        "name": sub.name,
        "status": sub.status,
        "format": sub.format,
        "compression": sub.compression,
        "allow_ip": list(sub.allow_ip or []),
    }


def as_dict(sub: Subscriber) -> dict[str, Any]:
    """Every setting of a subscriber, for `show` and the audit trail; the password hash never."""
    return {
        **summary(sub),
        "email": sub.email,
        "csv_delimiter": sub.csv_delimiter,
        "file_name_template": sub.file_name_template,
        "password_set": sub.password_hash is not None,
        "password_expires": sub.password_expires.isoformat() if sub.password_expires else None,
        "cert_fingerprint": sub.cert_fingerprint,
    }


# --- store ---------------------------------------------------------------------------------------


def get(session: Session, code: str) -> Subscriber:
    """The subscriber with `code`; NotFound otherwise."""
    sub = session.scalars(select(Subscriber).where(Subscriber.code == code)).one_or_none()
    if sub is None:
        raise NotFound(f"no subscriber {code!r}")
    return sub


def list_all(session: Session) -> list[Subscriber]:
    """Every subscriber, by code."""
    return list(session.scalars(select(Subscriber).order_by(Subscriber.code)))


def settings(
    *,
    name: str,
    email: str | None = None,
    format: str = "csv",
    compression: str = "gzip",
    csv_delimiter: str = ";",
    file_name_template: str = DEFAULT_TEMPLATE,
    allow_ip: Iterable[str] = (),
    cert_fingerprint: str | None = None,
    status: str = "active",
) -> dict[str, Any]:
    """Checked and normalised subscriber settings, as model attributes."""
    if not name.strip():
        raise InputError("a subscriber needs a non-empty --name")
    return {
        "name": name.strip(),
        "email": email or None,
        "format": check_choice("format", format, FORMATS),
        "compression": check_choice("compression", compression, COMPRESSIONS),
        "csv_delimiter": check_delimiter(csv_delimiter),
        "file_name_template": check_template(file_name_template),
        "allow_ip": parse_cidrs(allow_ip),
        "cert_fingerprint": check_fingerprint(cert_fingerprint) if cert_fingerprint else None,
        "status": check_choice("status", status, STATUSES),
    }


def add(
    session: Session,
    ctx: AuditContext,
    code: str,
    *,
    password: str | None = None,
    password_expires: dt.date | None = None,
    **values: Any,
) -> Subscriber:
    """Register a subscriber; Conflict if the code is taken. `values` are the arguments of `settings`."""
    check_code(code)
    checked = settings(**values)
    if session.scalars(select(Subscriber.id).where(Subscriber.code == code)).first() is not None:
        raise Conflict(f"subscriber {code!r} already exists")
    sub = Subscriber(
        code=code, **checked, password_expires=password_expires, created_at=utcnow(), updated_at=utcnow()
    )
    if password is not None:
        sub.password_hash = hash_password(check_password(password))
    session.add(sub)
    session.flush()
    audit.record(session, ctx, "subscriber.add", "subscriber", code, None, as_dict(sub))
    return sub


def update(session: Session, ctx: AuditContext, code: str, **values: Any) -> bool:
    """Change settings of a subscriber (all of `settings`' arguments); whether anything changed."""
    sub = get(session, code)
    current = {
        k: getattr(sub, k)
        for k in (
            "name",
            "email",
            "format",
            "compression",
            "csv_delimiter",
            "file_name_template",
            "allow_ip",
            "cert_fingerprint",
            "status",
        )
    }
    checked = settings(**{**current, **values})
    before = as_dict(sub)
    changed = {k: v for k, v in checked.items() if current[k] != v}
    if not changed:
        return False
    for k, v in changed.items():
        setattr(sub, k, v)
    sub.updated_at = utcnow()
    session.flush()
    audit.record(session, ctx, "subscriber.update", "subscriber", code, before, as_dict(sub))
    return True


def set_status(session: Session, ctx: AuditContext, code: str, status: str) -> bool:
    """Suspend or resume a subscriber; whether the status changed."""
    check_choice("status", status, STATUSES)
    sub = get(session, code)
    if sub.status == status:
        return False
    before = as_dict(sub)
    sub.status = status
    sub.updated_at = utcnow()
    action = "subscriber.suspend" if status == "suspended" else "subscriber.resume"
    audit.record(session, ctx, action, "subscriber", code, before, as_dict(sub))
    return True


def set_password(
    session: Session, ctx: AuditContext, code: str, password: str, expires: dt.date | None = None
) -> Subscriber:
    """Replace a subscriber's password (stored as a scrypt hash) and its expiry date."""
    sub = get(session, code)
    before = as_dict(sub)
    sub.password_hash = hash_password(check_password(password))
    sub.password_expires = expires
    sub.updated_at = utcnow()
    after = {**as_dict(sub), "password_changed": True}
    audit.record(session, ctx, "subscriber.passwd", "subscriber", code, before, after)
    return sub


def delivery_count(session: Session, sub: Subscriber) -> int:
    """How many deliveries `sub` has (planned ones included): a subscriber that received data can no
    longer be removed, because the disclosure log must keep naming it."""
    return int(session.scalar(select(func.count(Delivery.id)).where(Delivery.subscriber_id == sub.id)) or 0)


def remove(session: Session, ctx: AuditContext, code: str) -> None:
    """Remove a subscriber that never received a delivery, with its grants and followed keys."""
    sub = get(session, code)
    n = delivery_count(session, sub)
    if n:
        raise Conflict(f"subscriber {code!r} has {n} deliveries and cannot be removed: suspend it instead")
    grants = session.scalars(select(Grant).where(Grant.subscriber_id == sub.id)).all()
    before = {**as_dict(sub), "grants": [g.id for g in grants]}
    session.execute(delete(FollowedKey).where(FollowedKey.subscriber_id == sub.id))
    session.execute(delete(Grant).where(Grant.subscriber_id == sub.id))
    session.delete(sub)
    session.flush()
    audit.record(session, ctx, "subscriber.remove", "subscriber", code, before, None)
