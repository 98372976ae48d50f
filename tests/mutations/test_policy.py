"""Policy files: apply creates, changes and revokes; twice changes nothing; export round-trips."""

from __future__ import annotations

import io

import pytest
from sqlalchemy import func, select

from mutapub.mutations import grants, policy, subscribers
from mutapub.mutations.audit import AuditContext
from mutapub.mutations.errors import InputError
from mutapub.mutations.models import AuditEntry, Grant, Subscriber
from mutapub.mutations.workspace import Workspace

CTX = AuditContext("tester", "pytest")

POLICY = """
subscribers:
  gent:
    name: Stad Gent
    compression: zip
    allow_ip: [10.0.0.0/8]
    grants:
      - dataset: persons
        groups: [identity, address]
        where: ["municipality_nis in (44021)"]
        legal_basis: VTC/2019/042
        purpose: Bevolkingsregister
      - dataset: kbo_denomination
        fields: Denomination
        where: ["kbo_address[TypeOfAddress = 'REGO'].Zipcode between '9000' and '9999'"]
        legal_basis: BS-2024
        valid_to: 2030-12-31
  leuven:
    name: Stad Leuven
    grants:
      - dataset: persons
        groups: identity
        followed_only: true
        legal_basis: VTC/2019/043
"""


def _apply(ws: Workspace, text: str, dry_run: bool = False) -> list[str]:
    doc = policy.load(io.StringIO(text))
    with ws.sessions() as s:
        s.begin()
        try:
            changes = policy.apply(s, CTX, doc)
        except BaseException:
            s.rollback()
            raise
        if dry_run:
            s.rollback()
        else:
            s.commit()
    return changes


def _counts(ws: Workspace) -> tuple[int, int, int]:
    with ws.sessions() as s:
        return (
            s.scalar(select(func.count()).select_from(Subscriber)) or 0,
            s.scalar(select(func.count()).select_from(Grant).where(Grant.revoked_at.is_(None))) or 0,
            s.scalar(select(func.count()).select_from(AuditEntry)) or 0,
        )


def test_apply_twice_changes_nothing(workspace: Workspace) -> None:
    first = _apply(workspace, POLICY)
    assert [c.split(":")[0].split(" (")[0] for c in first] == [
        "create subscriber gent",
        "create grant 1",
        "create grant 2",
        "create subscriber leuven",
        "create grant 3",
    ]
    assert _counts(workspace) == (2, 3, 5)
    assert _apply(workspace, POLICY) == []
    assert _counts(workspace) == (2, 3, 5)
    with workspace.sessions() as s:
        gent = subscribers.get(s, "gent")
        assert (gent.compression, gent.allow_ip, gent.password_hash) == ("zip", ["10.0.0.0/8"], None)


def test_dry_run_writes_nothing(workspace: Workspace) -> None:
    changes = _apply(workspace, POLICY, dry_run=True)
    assert len(changes) == 5
    assert _counts(workspace) == (0, 0, 0)


def test_change_and_revoke(workspace: Workspace) -> None:
    _apply(workspace, POLICY)
    changed = POLICY.replace("compression: zip", "compression: none").replace("VTC/2019/043", "VTC/2020/001")
    changes = _apply(workspace, changed)
    assert changes[0] == "change subscriber gent: compression 'zip' → 'none'"
    assert changes[1].startswith("create grant 4: leuven persons")
    assert changes[2].startswith("revoke grant 3: leuven persons") and "VTC/2019/043" in changes[2]
    assert _apply(workspace, changed) == []
    # A subscriber without a `grants` key keeps its grants; one left out of the file is left alone.
    assert _apply(workspace, "subscribers:\n  gent:\n    name: Stad Gent\n") == []
    assert _counts(workspace)[:2] == (2, 3)


def test_numbers_in_yaml_are_read_as_text(workspace: Workspace) -> None:
    _apply(workspace, "subscribers:\n  ocmw-2000:\n    name: 2000\n    allow_ip: 10.0.0.0/8\n")
    with workspace.sessions() as s:
        sub = subscribers.get(s, "ocmw-2000")
        assert (sub.name, sub.allow_ip) == ("2000", ["10.0.0.0/8"])


def test_export_round_trips(workspace: Workspace) -> None:
    _apply(workspace, POLICY)
    with workspace.sessions() as s:
        text = policy.dump(policy.export(s))
    assert "password" not in text.replace("passwords are not part of it", "")
    assert "VTC/2019/042" in text and "2030-12-31" in text
    assert _apply(workspace, text) == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("subscribers: [gent]", "'subscribers' must map"),
        ("subscriber: {}", "only 'subscribers'"),
        ("subscribers:\n  gent:\n    name: G\n    colour: red\n", "unknown key.*colour"),
        ("subscribers:\n  ../evil:\n    name: G\n", "not allowed"),
        ("subscribers:\n  gent: {}\n", "needs a 'name'"),
        (
            "subscribers:\n  gent:\n    name: G\n    grants:\n      - dataset: persons\n        groups: identity\n",
            "'dataset' and 'legal_basis' are required",
        ),
        ("subscribers:\n  gent:\n    name: G\n    allow_ip: [10.0.0.300/8]\n", "10.0.0.300/8"),
        ("subscribers: {gent: {name: G}}\n  bad: [", "not valid YAML"),
    ],
)
def test_bad_files_write_nothing(workspace: Workspace, text: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        _apply(workspace, text)
    assert _counts(workspace) == (0, 0, 0)


def test_a_bad_grant_late_in_the_file_rolls_everything_back(workspace: Workspace) -> None:
    bad = POLICY.replace("groups: identity\n", "groups: no_such_group\n")
    with pytest.raises(InputError, match="no_such_group"):
        _apply(workspace, bad)
    assert _counts(workspace) == (0, 0, 0)
    with workspace.sessions() as s:
        assert grants.list_all(s, include_revoked=True) == []
