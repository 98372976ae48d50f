"""`mutapub grant`: authorise subscribers on datasets, list and revoke grants."""

from __future__ import annotations

import datetime as dt

import click

from mutapub.mutations.cli import handle_errors, print_json, print_table
from mutapub.mutations.commands.audit import actor_option


@click.group()
def grant() -> None:
    """Authorisations: which fields and rows of a dataset a subscriber may receive."""


@grant.command()
@click.argument("code")
@click.argument("dataset")
@click.option("--groups", multiple=True, help="Field groups of the dataset, comma-separated or repeated.")
@click.option(
    "--fields", multiple=True, help="Columns, comma-separated or repeated (key and subject always)."
)
@click.option("--where", "where", multiple=True, help="Population predicate; repeatable, all must hold.")
@click.option("--followed-only", is_flag=True, help="Only subjects the subscriber follows.")
@click.option("--legal-basis", required=True, help="Legal-basis reference, e.g. a deliberation number.")
@click.option("--purpose", default="", help="Purpose of the processing.")
@click.option(
    "--valid-from", type=click.DateTime(["%Y-%m-%d"]), help="First day the grant holds (YYYY-MM-DD)."
)
@click.option("--valid-to", type=click.DateTime(["%Y-%m-%d"]), help="Last day the grant holds (YYYY-MM-DD).")
@actor_option
@handle_errors
def add(
    code: str,
    dataset: str,
    groups: tuple[str, ...],
    fields: tuple[str, ...],
    where: tuple[str, ...],
    followed_only: bool,
    legal_basis: str,
    purpose: str,
    valid_from: dt.datetime | None,
    valid_to: dt.datetime | None,
    actor: str | None,
) -> None:
    """Authorise subscriber CODE on DATASET.

    \b
    Example:
      mutapub grant add gent persons --groups identity,address \\
        --where "municipality_nis in (44021)" --legal-basis VTC/2019/042
      mutapub grant add antwerpen kbo_denomination --fields Denomination \\
        --where "kbo_address[TypeOfAddress = 'REGO'].Zipcode between '2000' and '2999'" \\
        --legal-basis "BS 2024-05-01"
    """
    from mutapub.mutations import grants
    from mutapub.mutations.audit import AuditContext
    from mutapub.mutations.db import transaction
    from mutapub.mutations.workspace import open_workspace

    with transaction(open_workspace().sessions) as session:
        g = grants.add(
            session,
            AuditContext.current(actor),
            code,
            dataset,
            legal_basis=legal_basis,
            groups=groups,
            columns=fields,
            where=where,
            followed_only=followed_only,
            valid_from=valid_from.date() if valid_from else None,
            valid_to=valid_to.date() if valid_to else None,
            purpose=purpose,
        )
        fields_list = ", ".join(grants.resolved_fields(g))
    click.echo(f"grant {g.id}: {code} may receive {dataset} fields {fields_list}")


@grant.command("list")
@click.option("--subscriber", help="Only this subscriber's grants.")
@click.option("--dataset", help="Only grants on this dataset.")
@click.option("--revoked", is_flag=True, help="Include revoked grants.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@handle_errors
def list_(subscriber: str | None, dataset: str | None, revoked: bool, as_json: bool) -> None:
    """List grants.

    \b
    Example:
      mutapub grant list --subscriber gent --json
    """
    from mutapub.mutations import grants
    from mutapub.mutations.workspace import open_workspace

    with open_workspace().sessions() as session:
        pairs = grants.list_all(session, subscriber, dataset, include_revoked=revoked)
        rows = [grants.as_dict(g, s.code) for g, s in pairs]
        if revoked:
            for row, (g, _) in zip(rows, pairs, strict=True):
                row["revoked_at"] = g.revoked_at.isoformat() if g.revoked_at else None
    if as_json:
        print_json(rows)
        return
    table = [{**r, "fields": ",".join(r["fields"]), "where": " AND ".join(r["where"])} for r in rows]
    print_table(
        table, ["id", "subscriber", "dataset", "fields", "where", "legal_basis", "valid_from", "valid_to"]
    )


@grant.command()
@click.argument("grant_id", metavar="ID", type=int)
@actor_option
@handle_errors
def revoke(grant_id: int, actor: str | None) -> None:
    """Revoke grant ID; it stays on record, and takes effect at the next publication.

    \b
    Example:
      mutapub grant revoke 3
    """
    from mutapub.mutations import grants
    from mutapub.mutations.audit import AuditContext
    from mutapub.mutations.db import transaction
    from mutapub.mutations.workspace import open_workspace

    with transaction(open_workspace().sessions) as session:
        grants.revoke(session, AuditContext.current(actor), grant_id)
    click.echo(f"grant {grant_id} revoked")
