"""Declarative policy files: subscribers and their grants in one YAML document.

    subscribers:
      gent:
        name: Stad Gent
        compression: zip
        grants:
          - dataset: persons
            groups: [identity, address]
            where: ["municipality_nis in (44021)"]
            legal_basis: VTC/2019/042

`apply` brings the database to the file: it creates missing subscribers, changes the settings the file
names, creates the grants the file lists and revokes the unrevoked grants it does not. What the file
leaves out is left alone: a subscriber not in the file, a setting not given, the grants of a
subscriber without a `grants` key. Passwords are never in the file (`mutapub subscriber passwd`).
Applying the same file twice changes nothing; `export` writes the current state in this format.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import IO, Any

from sqlalchemy.orm import Session

from mutapub.mutations import grants as grants_store
from mutapub.mutations import subscribers as subscribers_store
from mutapub.mutations.audit import AuditContext
from mutapub.mutations.errors import InputError, NotFound
from mutapub.mutations.models import Grant

SUBSCRIBER_KEYS = (
    "name",
    "email",
    "status",
    "format",
    "compression",
    "csv_delimiter",
    "file_name_template",
    "allow_ip",
    "cert_fingerprint",
)
GRANT_KEYS = (
    "dataset",
    "groups",
    "fields",
    "where",
    "followed_only",
    "legal_basis",
    "purpose",
    "valid_from",
    "valid_to",
)


def load(fh: IO[str], origin: str = "<policy>") -> dict[str, dict[str, Any]]:
    """Parse a policy document into {code: subscriber mapping}; InputError names what is malformed."""
    import yaml

    try:
        doc = yaml.safe_load(fh)
    except yaml.YAMLError as exc:
        raise InputError(f"{origin}: not valid YAML: {exc}") from exc
    if doc is None:
        doc = {"subscribers": {}}
    if not isinstance(doc, dict) or set(doc) - {"subscribers"}:
        extra = sorted(set(doc) - {"subscribers"}) if isinstance(doc, dict) else []
        raise InputError(
            f"{origin}: expected a mapping with only 'subscribers'" + (f", got {extra}" if extra else "")
        )
    subs = doc.get("subscribers") or {}
    if not isinstance(subs, dict):
        raise InputError(f"{origin}: 'subscribers' must map subscriber codes to their settings")
    out: dict[str, dict[str, Any]] = {}
    for code, body in subs.items():
        code = str(code)
        body = body or {}
        if not isinstance(body, dict):
            raise InputError(f"{origin}: subscriber {code}: expected a mapping of settings")
        unknown = set(body) - set(SUBSCRIBER_KEYS) - {"grants"}
        if unknown:
            raise InputError(f"{origin}: subscriber {code}: unknown key(s) {', '.join(sorted(unknown))}")
        if "grants" in body:
            grants = body["grants"] or []
            if not isinstance(grants, list):
                raise InputError(f"{origin}: subscriber {code}: 'grants' must be a list")
            for i, g in enumerate(grants, 1):
                if not isinstance(g, dict):
                    raise InputError(f"{origin}: subscriber {code}: grant {i} must be a mapping")
                bad = set(g) - set(GRANT_KEYS)
                if bad:
                    raise InputError(
                        f"{origin}: subscriber {code}: grant {i}: unknown key(s) {', '.join(sorted(bad))}"
                    )
            body = {**body, "grants": grants}
        out[code] = body
    return out


def _list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


def _date(value: Any, what: str) -> dt.date | None:
    if value is None or value == "":
        return None
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError as exc:
        raise InputError(f"{what} {value!r} is not a date (YYYY-MM-DD)") from exc


def _identity(g: dict[str, Any]) -> tuple[Any, ...]:
    """What makes two grants the same grant: every attribute, lists compared as sets."""
    return (
        g["dataset"],
        tuple(sorted(g["groups"])),
        tuple(sorted(g["fields"])),
        tuple(sorted(g["where"])),
        bool(g["followed_only"]),
        g["legal_basis"],
        g["purpose"] or "",
        g["valid_from"],
        g["valid_to"],
    )


def _stored(grant: Grant) -> dict[str, Any]:
    return {
        "dataset": grant.dataset,
        "groups": list(grant.groups),
        "fields": list(grant.fields),
        "where": list(grant.where),
        "followed_only": grant.followed_only,
        "legal_basis": grant.legal_basis,
        "purpose": grant.purpose,
        "valid_from": grant.valid_from,
        "valid_to": grant.valid_to,
    }


def _wanted(code: str, raw: dict[str, Any], i: int) -> dict[str, Any]:
    what = f"subscriber {code}: grant {i}"
    if "dataset" not in raw or "legal_basis" not in raw:
        raise InputError(f"{what}: 'dataset' and 'legal_basis' are required")
    rule = grants_store.build_rule(
        code,
        str(raw["dataset"]),
        legal_basis=str(raw["legal_basis"]),
        groups=_list(raw.get("groups")),
        columns=_list(raw.get("fields")),
        where=_list(raw.get("where")),
        followed_only=bool(raw.get("followed_only", False)),
        valid_from=_date(raw.get("valid_from"), f"{what}: valid_from"),
        valid_to=_date(raw.get("valid_to"), f"{what}: valid_to"),
        purpose=str(raw.get("purpose") or ""),
    )
    return {
        "dataset": rule.dataset,
        "groups": list(rule.groups),
        "fields": list(rule.columns),
        "where": list(rule.where),
        "followed_only": rule.followed_only,
        "legal_basis": rule.legal_basis,
        "purpose": rule.purpose,
        "valid_from": rule.valid_from,
        "valid_to": rule.valid_to,
    }


def _describe(code: str, g: dict[str, Any]) -> str:
    parts = [f"{code} {g['dataset']}"]
    if g["groups"]:
        parts.append("groups " + ",".join(g["groups"]))
    if g["fields"]:
        parts.append("fields " + ",".join(g["fields"]))
    parts += [f"where {w}" for w in g["where"]]
    if g["followed_only"]:
        parts.append("followed only")
    parts.append(f"legal basis {g['legal_basis']}")
    return "; ".join(parts)


def apply(session: Session, ctx: AuditContext, doc: dict[str, dict[str, Any]]) -> list[str]:
    """Bring subscribers and grants to what `doc` declares, in `session`; the list of changes made.

    The caller commits, or rolls back for a dry run: every check runs either way.
    """
    changes: list[str] = []
    for code, body in doc.items():
        values = {k: body[k] for k in SUBSCRIBER_KEYS if k in body}
        for k, v in values.items():  # YAML reads `name: 2000` as a number; settings are text
            values[k] = _list(v) if k == "allow_ip" else (None if v is None else str(v))
        try:
            sub = subscribers_store.get(session, code)
        except NotFound:
            if "name" not in values:
                raise InputError(f"subscriber {code}: a new subscriber needs a 'name'") from None
            sub = subscribers_store.add(session, ctx, code, **values)
            changes.append(f"create subscriber {code} (no password yet: `mutapub subscriber passwd {code}`)")
        else:
            before = subscribers_store.as_dict(sub)
            if subscribers_store.update(session, ctx, code, **values):
                after = subscribers_store.as_dict(sub)
                diff = ", ".join(f"{k} {before[k]!r} → {after[k]!r}" for k in after if before[k] != after[k])
                changes.append(f"change subscriber {code}: {diff}")
        if "grants" not in body:
            continue
        wanted = [_wanted(code, g, i) for i, g in enumerate(body["grants"], 1)]
        existing = {g.id: g for g, _ in grants_store.list_all(session, code)}
        for w in wanted:
            match = next((gid for gid, g in existing.items() if _identity(_stored(g)) == _identity(w)), None)
            if match is not None:
                del existing[match]
                continue
            grant = grants_store.add(
                session,
                ctx,
                code,
                w["dataset"],
                legal_basis=w["legal_basis"],
                groups=w["groups"],
                columns=w["fields"],
                where=w["where"],
                followed_only=w["followed_only"],
                valid_from=w["valid_from"],
                valid_to=w["valid_to"],
                purpose=w["purpose"],
            )
            changes.append(f"create grant {grant.id}: {_describe(code, w)}")
        for gid, g in existing.items():
            grants_store.revoke(session, ctx, gid)
            changes.append(f"revoke grant {gid}: {_describe(code, _stored(g))}")
    return changes


def _clean(values: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    return {k: (v.isoformat() if isinstance(v, dt.date) else v) for k, v in values}


def export(session: Session) -> dict[str, Any]:
    """The current subscribers and unrevoked grants as a policy document."""
    out: dict[str, Any] = {}
    for sub in subscribers_store.list_all(session):
        body = _clean((k, getattr(sub, k)) for k in SUBSCRIBER_KEYS)
        body["allow_ip"] = list(sub.allow_ip or [])
        body["grants"] = [_clean(_stored(g).items()) for g, _ in grants_store.list_all(session, sub.code)]
        out[sub.code] = body
    return {"subscribers": out}


def dump(doc: dict[str, Any]) -> str:
    """A policy document as YAML text."""
    import yaml

    header = "# mutapub policy: apply with `mutapub policy apply FILE.yaml`; passwords are not part of it.\n"
    return header + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, default_flow_style=False)
