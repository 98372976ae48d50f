"""The subscriber, grant, follow, policy and audit commands, run as the real CLI on both databases."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import pytest
from tests.conftest import run_cli

from mutapub.mutations import audit as audit_trail
from mutapub.mutations import follows, grants, subscribers
from mutapub.mutations.commands.audit import audit
from mutapub.mutations.commands.follows import follow
from mutapub.mutations.commands.grants import grant
from mutapub.mutations.commands.policy import policy
from mutapub.mutations.commands.subscribers import subscriber
from mutapub.mutations.workspace import Workspace

PW = "S3cure-pass-123!"


def ok(*args: str, input: str | None = None) -> str:
    result = run_cli(*args, input=input)
    assert result.returncode == 0, result.stderr
    return result.stdout


def as_json(*args: str) -> Any:
    return json.loads(ok(*args, "--json"))


@pytest.fixture
def gent(workspace: Workspace) -> Workspace:
    ok("subscriber", "add", "gent", "--name", "Stad Gent", "--password-stdin", input=PW + "\n")
    return workspace


def test_json_shapes(gent: Workspace) -> None:
    ok(
        "grant",
        "add",
        "gent",
        "persons",
        "--groups",
        "identity,address",
        "--where",
        "municipality_nis in (44021)",
        "--where",
        "sex = 'F'",
        "--legal-basis",
        "VTC/2019/042",
        "--purpose",
        "Bevolking",
        "--valid-to",
        "2030-12-31",
    )
    assert as_json("subscriber", "list") == [
        {
            "code": "gent",
            "name": "Stad Gent",
            "status": "active",
            "format": "csv",
            "compression": "gzip",
            "allow_ip": [],
        }
    ]
    (g,) = as_json("grant", "list")
    assert list(g) == [
        "id",
        "subscriber",
        "dataset",
        "groups",
        "fields",
        "where",
        "followed_only",
        "legal_basis",
        "purpose",
        "valid_from",
        "valid_to",
    ]
    assert g["subscriber"] == "gent" and g["groups"] == ["identity", "address"]
    assert g["fields"][0] == "insz" and "street" in g["fields"] and "civil_status" not in g["fields"]
    assert g["where"] == ["municipality_nis in (44021)", "sex = 'F'"]
    assert (g["valid_from"], g["valid_to"]) == (None, "2030-12-31")
    assert as_json("grant", "list", "--subscriber", "gent") == [g]
    shown = as_json("subscriber", "show", "gent")
    assert shown["password_set"] is True and not any("hash" in k for k in shown)


def test_generated_password_is_printed_once_and_works(workspace: Workspace) -> None:
    out = ok("subscriber", "add", "brugge", "--name", "Brugge")
    password = out.split("store it now): ")[1].strip()
    with workspace.sessions() as s:
        assert subscribers.verify_password(password, subscribers.get(s, "brugge").password_hash)
    assert password not in ok("subscriber", "show", "brugge")


def test_suspend_resume_passwd_remove_and_audit(gent: Workspace) -> None:
    ok("subscriber", "suspend", "gent", "--actor", "alice")
    assert as_json("subscriber", "list")[0]["status"] == "suspended"
    ok("subscriber", "resume", "gent")
    ok(
        "subscriber",
        "passwd",
        "gent",
        "--password-stdin",
        "--expires",
        "2026-06-30",
        input="another-long-secret\n",
    )
    ok("follow", "add", "gent", "persons", "85073100130")
    assert [k["key"] for k in as_json("follow", "list", "gent", "persons")] == ["85073100130"]
    ok("follow", "remove", "gent", "persons", "85073100130")
    assert as_json("follow", "list", "gent", "persons") == []
    ok("subscriber", "remove", "gent")
    entries = as_json("audit", "list")
    assert [e["action"] for e in entries] == [
        "subscriber.add",
        "subscriber.suspend",
        "subscriber.resume",
        "subscriber.passwd",
        "follow.add",
        "follow.remove",
        "subscriber.remove",
    ]
    assert (
        entries[1]["actor"] == "alice"
        and entries[1]["command"] == "mutapub subscriber suspend gent --actor alice"
    )
    assert entries[0]["command"] == "mutapub subscriber add gent --name 'Stad Gent' --password-stdin"
    assert as_json("audit", "list", "--since", "2999-01-01") == []
    text = json.dumps(entries)
    assert PW not in text and "another-long-secret" not in text and "scrypt$" not in text


def test_subscriber_set_changes_only_what_is_given(gent: Workspace) -> None:
    ok("subscriber", "set", "gent", "--compression", "zip", "--allow-ip", "10.1.0.0/16")
    (row,) = as_json("subscriber", "list")
    assert (row["compression"], row["allow_ip"], row["format"]) == ("zip", ["10.1.0.0/16"], "csv")
    bad = run_cli("subscriber", "set", "gent", "--allow-ip", "10.1.0.0/33")
    assert bad.returncode != 0 and "10.1.0.0/33" in bad.stderr
    assert ok("subscriber", "set", "gent", "--compression", "zip").strip() == "subscriber gent unchanged"
    assert as_json("subscriber", "list")[0]["allow_ip"] == ["10.1.0.0/16"]


def test_follow_from_file(gent: Workspace, tmp_path: Path) -> None:
    keys = tmp_path / "keys.csv"
    keys.write_text("EnterpriseNumber\n0403170701\n0403.170.701\n", encoding="utf-8")
    ok("follow", "add", "gent", "kbo_enterprise", "--file", str(keys))
    assert [k["key"] for k in as_json("follow", "list", "gent", "kbo_enterprise")] == ["0403.170.701"]


def test_policy_apply_and_export(gent: Workspace, tmp_path: Path) -> None:
    file = tmp_path / "policy.yaml"
    file.write_text(
        "subscribers:\n  gent:\n    name: Stad Gent\n    grants:\n      - dataset: persons\n"
        "        groups: [identity]\n        legal_basis: VTC/2019/042\n",
        encoding="utf-8",
    )
    assert ok("policy", "apply", str(file), "--dry-run").startswith("would create grant 1")
    assert as_json("grant", "list") == []
    assert ok("policy", "apply", str(file)).startswith("create grant")
    assert ok("policy", "apply", str(file)).strip() == "nothing to change"
    exported = tmp_path / "export.yaml"
    ok("policy", "export", "-o", str(exported))
    assert ok("policy", "apply", str(exported)).strip() == "nothing to change"


# One refused input per kind: message naming the value, non-zero exit, nothing written.
BAD = [
    ("unsafe code", ["subscriber", "add", "../evil", "--name", "x", "--password-stdin"], "'../evil'"),
    (
        "duplicate code",
        ["subscriber", "add", "gent", "--name", "dup", "--password-stdin"],
        "'gent' already exists",
    ),
    (
        "malformed CIDR",
        ["subscriber", "add", "brugge", "--name", "x", "--allow-ip", "10.0.0.300/8", "--password-stdin"],
        "10.0.0.300/8",
    ),
    (
        "unknown column",
        ["grant", "add", "gent", "persons", "--fields", "no_such_column", "--legal-basis", "X"],
        "'no_such_column'",
    ),
    (
        "unknown dataset",
        ["grant", "add", "gent", "no_such_dataset", "--groups", "identity", "--legal-basis", "X"],
        "'no_such_dataset'",
    ),
    (
        "unknown group",
        ["grant", "add", "gent", "persons", "--groups", "no_such_group", "--legal-basis", "X"],
        "'no_such_group'",
    ),
    (
        "unparsable where",
        [
            "grant",
            "add",
            "gent",
            "persons",
            "--groups",
            "identity",
            "--where",
            "municipality_nis in (",
            "--legal-basis",
            "X",
        ],
        "'municipality_nis in ('",
    ),
    (
        "unknown column in where",
        [
            "grant",
            "add",
            "gent",
            "persons",
            "--groups",
            "identity",
            "--where",
            "shoe = '4'",
            "--legal-basis",
            "X",
        ],
        "'shoe'",
    ),
    (
        "valid-to before valid-from",
        [
            "grant",
            "add",
            "gent",
            "persons",
            "--groups",
            "identity",
            "--legal-basis",
            "X",
            "--valid-from",
            "2026-01-01",
            "--valid-to",
            "2025-01-01",
        ],
        "2025-01-01",
    ),
    (
        "followed key failing its validator",
        ["follow", "add", "gent", "persons", "85073100130", "12345678901"],
        "'12345678901'",
    ),
]


@pytest.mark.parametrize(("case", "args", "message"), BAD, ids=[c for c, _, _ in BAD])
def test_bad_input_is_refused_and_writes_nothing(
    gent: Workspace, case: str, args: list[str], message: str
) -> None:
    result = run_cli(*args, input=PW + "\n")
    assert result.returncode != 0
    assert message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    with gent.sessions() as s:  # read in-process: one subprocess per case keeps the suite quick
        assert [sub.code for sub in subscribers.list_all(s)] == ["gent"]
        assert grants.list_all(s, include_revoked=True) == []
        assert follows.list_keys(s, "gent", "persons", history=True) == []
        assert [e.action for e in audit_trail.list_entries(s)] == ["subscriber.add"]


def _commands(group: click.Group, prefix: str) -> list[tuple[str, click.Command]]:
    out: list[tuple[str, click.Command]] = []
    for name, cmd in group.commands.items():
        if isinstance(cmd, click.Group):
            out += _commands(cmd, f"{prefix} {name}")
        else:
            out.append((f"{prefix} {name}", cmd))
    return out


@pytest.mark.parametrize(
    ("name", "cmd"),
    [c for g in (subscriber, grant, follow, policy, audit) for c in _commands(g, g.name or "")],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_every_command_has_help_and_an_example(name: str, cmd: click.Command) -> None:
    assert cmd.help and "Example:" in cmd.help and "\b" in cmd.help, name
    if name.split()[-1] in ("list", "show"):
        assert any("--json" in p.opts for p in cmd.params), name
    if name.split()[-1] in ("add", "set", "remove", "suspend", "resume", "passwd", "revoke", "apply"):
        assert any("--actor" in p.opts for p in cmd.params), name
