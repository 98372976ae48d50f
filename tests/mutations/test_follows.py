"""Followed keys: validated and normalised with the subject's validator, history kept."""

from __future__ import annotations

import io

import pytest
from sqlalchemy import func, select

from mutapub.mutations import follows, subscribers
from mutapub.mutations.audit import AuditContext
from mutapub.mutations.db import transaction
from mutapub.mutations.errors import InputError, NotFound
from mutapub.mutations.models import AuditEntry, FollowedKey
from mutapub.mutations.workspace import Workspace

CTX = AuditContext("tester", "pytest")


def insz(base9: str) -> str:
    """A valid INSZ (born before 2000) from its first nine digits."""
    return f"{base9}{97 - int(base9) % 97:02d}"


@pytest.fixture
def gent(workspace: Workspace) -> Workspace:
    with transaction(workspace.sessions) as s:
        subscribers.add(s, CTX, "gent", name="Stad Gent", password="S3cure-pass-123!")
    return workspace


def _rows(ws: Workspace) -> int:
    with ws.sessions() as s:
        return s.scalar(select(func.count()).select_from(FollowedKey)) or 0


def test_normalise_kbo_numbers_into_one_form() -> None:
    assert follows.normalise("kbo_enterprise", ["0403.170.701", "0403170701", " 0403 170 701 "]) == [
        "0403.170.701"
    ]


def test_normalise_names_the_keys_that_fail() -> None:
    with pytest.raises(InputError, match=r"1 key\(s\) fail the insz check of persons.insz: '12345678901'"):
        follows.normalise("persons", [insz("850731001"), "12345678901"])
    with pytest.raises(InputError, match="unknown dataset"):
        follows.normalise("nope", ["1"])
    with pytest.raises(InputError, match="no key given"):
        follows.normalise("persons", [" "])


def test_read_keys_from_csv_with_or_without_header() -> None:
    assert follows.read_keys(io.StringIO("insz;note\n85073100130;x\n\n85073100229;y\n")) == [
        "85073100130",
        "85073100229",
    ]
    assert follows.read_keys(io.StringIO("0403.170.701\n0403170701\n")) == ["0403.170.701", "0403170701"]


def test_add_remove_keep_history(gent: Workspace) -> None:
    key = insz("850731001")
    with transaction(gent.sessions) as s:
        assert follows.add(s, CTX, "gent", "persons", [key]).changed == [key]
    with transaction(gent.sessions) as s:
        assert follows.add(s, CTX, "gent", "persons", [key]).unchanged == [key]
        assert follows.followed(s, "gent", "persons") == [key]
    with transaction(gent.sessions) as s:
        assert follows.remove(s, CTX, "gent", "persons", [key, insz("850731002")]).changed == [key]
    with transaction(gent.sessions) as s:
        assert follows.followed(s, "gent", "persons") == []
        follows.add(s, CTX, "gent", "persons", [key])
    with gent.sessions() as s:
        history = [follows.as_dict(r) for r in follows.list_keys(s, "gent", "persons", history=True)]
        assert follows.followed(s, "gent", "persons") == [key]
        actions = [e.action for e in s.scalars(select(AuditEntry).where(AuditEntry.entity == "follow"))]
    assert len(history) == 2  # removal stamped the first row, re-adding made a second
    assert history[0]["removed_at"] is not None and history[1]["removed_at"] is None
    assert history[0]["added_at"].endswith("+00:00")
    assert actions == ["follow.add", "follow.remove", "follow.add"]


def test_kbo_keys_followed_in_either_form_are_one(gent: Workspace) -> None:
    with transaction(gent.sessions) as s:
        follows.add(s, CTX, "gent", "kbo_denomination", ["0403170701"])
        assert follows.add(s, CTX, "gent", "kbo_denomination", ["0403.170.701"]).changed == []
        assert follows.followed(s, "gent", "kbo_denomination") == ["0403.170.701"]


BAD_FOLLOWS = [
    ("INSZ failing mod-97", "persons", ["12345678901"], InputError, "12345678901"),
    ("KBO number failing mod-97", "kbo_enterprise", ["0403.170.702"], InputError, "0403.170.702"),
    ("unknown dataset", "no_such_dataset", ["1"], InputError, "no_such_dataset"),
]


@pytest.mark.parametrize(
    ("case", "dataset", "keys", "error", "message"), BAD_FOLLOWS, ids=[c for c, *_ in BAD_FOLLOWS]
)
def test_bad_keys_write_nothing(
    gent: Workspace, case: str, dataset: str, keys: list[str], error: type[Exception], message: str
) -> None:
    good = insz("850731001") if dataset == "persons" else "0403.170.701"
    with pytest.raises(error, match=message), transaction(gent.sessions) as s:
        follows.add(s, CTX, "gent", dataset, [good, *keys])
    assert _rows(gent) == 0


def test_unknown_subscriber(gent: Workspace) -> None:
    with pytest.raises(NotFound, match="no subscriber 'nobody'"), transaction(gent.sessions) as s:
        follows.add(s, CTX, "nobody", "persons", [insz("850731001")])
