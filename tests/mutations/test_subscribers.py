"""Subscribers: safe codes, preferences, credentials stored as hashes only, suspend/resume/remove."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import func, select

from mutapub.mutations import grants, subscribers
from mutapub.mutations.audit import AuditContext
from mutapub.mutations.db import transaction
from mutapub.mutations.errors import Conflict, InputError, NotFound
from mutapub.mutations.models import AuditEntry, Subscriber
from mutapub.mutations.workspace import Workspace

CTX = AuditContext("tester", "pytest")
PW = "S3cure-pass-123!"


def _add(ws: Workspace, code: str = "gent", **kw: Any) -> Subscriber:
    kw.setdefault("name", "Stad Gent")
    kw.setdefault("password", PW)
    with transaction(ws.sessions) as s:
        return subscribers.add(s, CTX, code, **kw)


def _count(ws: Workspace) -> int:
    with ws.sessions() as s:
        return s.scalar(select(func.count()).select_from(Subscriber)) or 0


@pytest.mark.parametrize("code", ["gent", "ocmw-gent", "a1", "x_y", "0" * 32])
def test_safe_codes(code: str) -> None:
    assert subscribers.check_code(code) == code


@pytest.mark.parametrize(
    "code", ["../evil", "Gent", "g", "-gent", "_gent", "gent/x", "gent x", "a" * 33, "gënt", ""]
)
def test_unsafe_codes_are_refused(code: str) -> None:
    with pytest.raises(InputError, match="not allowed"):
        subscribers.check_code(code)


def test_cidrs_are_normalised() -> None:
    assert subscribers.parse_cidrs(["10.0.0.0/8", "192.0.2.7", "2001:db8::/32", "10.0.0.0/8"]) == [
        "10.0.0.0/8",
        "192.0.2.7/32",
        "2001:db8::/32",
    ]
    with pytest.raises(InputError, match=r"did you mean 192\.168\.1\.0/24"):
        subscribers.parse_cidrs(["192.168.1.10/24"])


def test_password_hash_is_salted_scrypt_and_verifies() -> None:
    h1, h2 = subscribers.hash_password(PW, n=2**10), subscribers.hash_password(PW, n=2**10)
    assert h1 != h2 and h1.startswith("scrypt$1024$8$1$") and PW not in h1
    assert subscribers.verify_password(PW, h1)
    assert not subscribers.verify_password(PW + "x", h1)
    assert not subscribers.verify_password(PW, None)
    assert not subscribers.verify_password(PW, "md5$whatever")
    assert len(subscribers.generate_password()) >= 20


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{subscriber}_{date}_{seq}.{ext}", "unknown field"),
        ("{subscriber}_{dataset}.{ext}", "must contain {seq}"),
        ("../{seq}.{ext}", "plain file name"),
        ("{seq:06q}", "invalid"),
    ],
)
def test_bad_templates(template: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        subscribers.check_template(template)


def test_fingerprint_normalised() -> None:
    fp = ":".join(["AB"] * 32)
    assert subscribers.check_fingerprint(fp) == "ab" * 32
    with pytest.raises(InputError, match="not a SHA-256"):
        subscribers.check_fingerprint("abc")


def test_add_show_suspend_resume_passwd(workspace: Workspace) -> None:
    _add(workspace, allow_ip=["10.0.0.0/8"], compression="zip", password_expires=dt.date(2026, 1, 31))
    with workspace.sessions() as s:
        sub = subscribers.get(s, "gent")
        assert subscribers.summary(sub) == {
            "code": "gent",
            "name": "Stad Gent",
            "status": "active",
            "format": "csv",
            "compression": "zip",
            "allow_ip": ["10.0.0.0/8"],
        }
        assert sub.file_name_template == subscribers.DEFAULT_TEMPLATE
        assert subscribers.password_valid(sub, PW, dt.date(2026, 1, 31))
        assert not subscribers.password_valid(sub, PW, dt.date(2026, 2, 1))  # expired
        assert "password_hash" not in subscribers.as_dict(sub)
    with transaction(workspace.sessions) as s:
        assert subscribers.set_status(s, CTX, "gent", "suspended")
        assert not subscribers.set_status(s, CTX, "gent", "suspended")
    with transaction(workspace.sessions) as s:
        assert subscribers.set_status(s, CTX, "gent", "active")
        subscribers.set_password(s, CTX, "gent", "another-long-password")
    with workspace.sessions() as s:
        sub = subscribers.get(s, "gent")
        assert sub.status == "active" and sub.password_expires is None
        assert subscribers.verify_password("another-long-password", sub.password_hash)
        actions = [e.action for e in s.scalars(select(AuditEntry).order_by(AuditEntry.id))]
    assert actions == ["subscriber.add", "subscriber.suspend", "subscriber.resume", "subscriber.passwd"]


def test_remove_takes_grants_along_and_is_audited(workspace: Workspace) -> None:
    _add(workspace)
    with transaction(workspace.sessions) as s:
        grants.add(s, CTX, "gent", "persons", groups=["identity"], legal_basis="X")
    with transaction(workspace.sessions) as s:
        subscribers.remove(s, CTX, "gent")
    assert _count(workspace) == 0
    with pytest.raises(NotFound), transaction(workspace.sessions) as s:
        subscribers.remove(s, CTX, "gent")


def test_remove_refused_once_delivered(workspace: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    _add(workspace)
    monkeypatch.setattr(subscribers, "delivery_count", lambda session, sub: 3)
    with (
        pytest.raises(Conflict, match="has 3 deliveries .* suspend it instead"),
        transaction(workspace.sessions) as s,
    ):
        subscribers.remove(s, CTX, "gent")
    assert _count(workspace) == 1


BAD_SUBSCRIBERS = [
    ("unsafe code", {"code": "../evil"}, InputError, r"'\.\./evil' is not allowed"),
    ("duplicate code", {"code": "gent"}, Conflict, "'gent' already exists"),
    ("malformed CIDR", {"allow_ip": ["10.0.0.300/8"]}, InputError, "10.0.0.300/8"),
    ("unknown format", {"format": "xlsx"}, InputError, "'xlsx'"),
    ("short password", {"password": "short"}, InputError, "too short"),
    ("bad delimiter", {"csv_delimiter": ";;"}, InputError, "';;'"),
]


@pytest.mark.parametrize(
    ("case", "kwargs", "error", "message"), BAD_SUBSCRIBERS, ids=[c for c, *_ in BAD_SUBSCRIBERS]
)
def test_bad_subscriber_writes_nothing(
    workspace: Workspace, case: str, kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    _add(workspace)
    kwargs = dict(kwargs)  # the parameter is shared by the SQLite and PostgreSQL runs
    code = kwargs.pop("code", "brugge")
    with pytest.raises(error, match=message):
        _add(workspace, code, **kwargs)
    assert _count(workspace) == 1
    with workspace.sessions() as s:
        assert s.scalar(select(func.count()).select_from(AuditEntry)) == 1
