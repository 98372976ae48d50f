"""The audit trail: actor, command line without secrets, before/after without passwords or hashes."""

from __future__ import annotations

import datetime as dt
import json

from mutapub.mutations import audit, grants, subscribers
from mutapub.mutations.audit import AuditContext
from mutapub.mutations.db import transaction
from mutapub.mutations.workspace import Workspace

PW = "S3cure-pass-123!"


def test_command_line_redacts_secret_options() -> None:
    assert audit.command_line(["subscriber", "add", "gent", "--name", "Stad Gent"]) == (
        "mutapub subscriber add gent --name 'Stad Gent'"
    )
    assert audit.command_line(["x", "--password", PW, "--password=" + PW, "--password-stdin"]) == (
        "mutapub x --password '***' '--password=***' --password-stdin"
    )


def test_context_defaults_to_the_os_user(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(audit.getpass, "getuser", lambda: "operator1")
    assert AuditContext.current(argv=["grant", "revoke", "1"]) == AuditContext(
        "operator1", "mutapub grant revoke 1"
    )
    assert AuditContext.current("alice", argv=[]).actor == "alice"


def test_every_change_is_recorded_without_secrets(workspace: Workspace) -> None:
    ctx = AuditContext("alice", "mutapub test")
    start = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    with transaction(workspace.sessions) as s:
        subscribers.add(s, ctx, "gent", name="Stad Gent", password=PW)
    with transaction(workspace.sessions) as s:
        g = grants.add(s, ctx, "gent", "persons", groups=["identity"], legal_basis="VTC/2019/042")
        subscribers.set_password(s, ctx, "gent", PW + "2", dt.date(2027, 1, 1))
        grants.revoke(s, ctx, g.id)
    with workspace.sessions() as s:
        entries = [audit.entry_as_dict(e) for e in audit.list_entries(s)]
        assert [e.action for e in audit.list_entries(s, entity="grant")] == ["grant.add", "grant.revoke"]
        assert audit.list_entries(s, since=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)) == []
        hashes = [sub.password_hash for sub in subscribers.list_all(s)]
    assert [e["action"] for e in entries] == [
        "subscriber.add",
        "grant.add",
        "subscriber.passwd",
        "grant.revoke",
    ]
    assert all(e["actor"] == "alice" and e["command"] == "mutapub test" for e in entries)
    assert all(dt.datetime.fromisoformat(e["at"]) >= start for e in entries)
    assert entries[0]["before"] is None and entries[0]["after"]["code"] == "gent"
    assert entries[1]["after"]["legal_basis"] == "VTC/2019/042"
    assert entries[2]["after"]["password_expires"] == "2027-01-01"
    text = json.dumps(entries)
    assert PW not in text and "scrypt$" not in text
    assert all(h and h not in text for h in hashes)


def test_secret_keys_are_scrubbed_whatever_the_caller_passes(workspace: Workspace) -> None:
    with transaction(workspace.sessions) as s:
        e = audit.record(
            s,
            AuditContext("a", "c"),
            "x",
            "subscriber",
            "gent",
            {"password": PW},
            {"nested": [{"password_hash": "h"}]},
        )
    assert e.before == {} and e.after == {"nested": [{}]}
