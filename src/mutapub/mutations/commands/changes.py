"""`mutapub diff` and `mutapub changes`: compute and inspect change sets."""

from __future__ import annotations

import click

from mutapub.mutations.cli import handle_errors, print_json, print_table


def _summary(cs) -> dict:  # type: ignore[no-untyped-def]
    return {
        "id": cs.id,
        "dataset": cs.dataset,
        "from": cs.from_snapshot_id,
        "to": cs.to_snapshot_id,
        "counts": cs.counts,
    }


@click.command()
@click.argument("dataset")
@click.option("--from", "from_id", type=int, help="Older snapshot id (default: the second latest).")
@click.option("--to", "to_id", type=int, help="Newer snapshot id (default: the latest).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@handle_errors
def diff(dataset: str, from_id: int | None, to_id: int | None, as_json: bool) -> None:
    """Compute the change set between two snapshots of DATASET (once; again is a no-op).

    \b
    Example:
      mutapub diff persons --json
      mutapub diff persons --from 1 --to 2
    """
    from mutapub.mutations.catalog import ChangeSetSummary, stored_change_set
    from mutapub.mutations.workspace import open_workspace

    ws = open_workspace()
    cs = stored_change_set(ws, dataset, from_id, to_id)  # the usual case, found without the ORM
    created = False
    if cs is None:
        from mutapub.mutations.changesets import compute

        result = compute(ws, dataset, from_id, to_id)
        cs, created = ChangeSetSummary.of(result.change_set), result.created
    if as_json:
        print_json(_summary(cs))
        return
    state = "computed" if created else "already computed"
    c = cs.counts
    click.echo(
        f"change set {cs.id} of {dataset} ({state}): snapshots {cs.from_snapshot_id} → {cs.to_snapshot_id}, "
        f"{c['I']} inserts, {c['U']} updates, {c['D']} deletes"
    )


@click.group()
def changes() -> None:
    """List and show stored change sets."""


@changes.command("list")
@click.option("--dataset", help="Only this dataset.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@handle_errors
def list_(dataset: str | None, as_json: bool) -> None:
    """List change sets.

    \b
    Example:
      mutapub changes list --json
    """
    from mutapub.mutations.changesets import list_all
    from mutapub.mutations.workspace import open_workspace

    rows = [_summary(cs) for cs in list_all(open_workspace(), dataset)]
    if as_json:
        print_json(rows)
        return
    print_table(
        [{**r, "I": r["counts"]["I"], "U": r["counts"]["U"], "D": r["counts"]["D"]} for r in rows],
        ["id", "dataset", "from", "to", "I", "U", "D"],
    )


@changes.command()
@click.argument("change_set_id", metavar="ID", type=int)
@click.option("--limit", type=click.IntRange(min=0), help="Show at most N changes.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@handle_errors
def show(change_set_id: int, limit: int | None, as_json: bool) -> None:
    """Show the changes of one change set, ordered by key.

    \b
    Example:
      mutapub changes show 1 --limit 20
    """
    from mutapub.mutations import changesets
    from mutapub.mutations.workspace import open_workspace
    from mutapub.schemas import load_schema

    ws = open_workspace()
    cs = changesets.get(ws, change_set_id)
    schema = load_schema(cs.dataset)
    records = changesets.as_records(changesets.read(ws, cs), schema, limit)
    if as_json:
        print_json(records)
        return
    for r in records:
        key = ", ".join(f"{k}={v}" for k, v in r["key"].items())
        if r["op"] == "U":
            detail = "; ".join(f"{f}: {b!r} → {a!r}" for f, (b, a) in r["changes"].items())
        else:
            detail = ", ".join(
                f"{f}={v!r}" for f, v in r["row"].items() if f not in r["key"] and v is not None
            )
        click.echo(f"{r['op']} {key}  {detail}")
