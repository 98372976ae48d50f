"""`mutapub subscriber`: register agencies, their delivery preferences and credentials."""

from __future__ import annotations

import datetime as dt
import sys

import click

from mutapub.mutations.cli import handle_errors, print_json, print_table
from mutapub.mutations.commands.audit import actor_option

FORMATS = ("csv", "jsonl", "xml")
COMPRESSIONS = ("gzip", "zip", "none")


def _read_password() -> str:
    """The first line of stdin, so `echo "$PW" | mutapub …` works and the password never is an argument."""
    line = sys.stdin.readline()
    return line.rstrip("\r\n")


@click.group()
def subscriber() -> None:
    """Subscribers: agencies receiving mutation files over FTPS."""


@subscriber.command()
@click.argument("code")
@click.option("--name", required=True, help="The agency's name.")
@click.option("--email", help="Contact e-mail address.")
@click.option(
    "--format",
    "format_",
    type=click.Choice(FORMATS),
    default="csv",
    show_default=True,
    help="Data file format.",
)
@click.option(
    "--compression",
    type=click.Choice(COMPRESSIONS),
    default="gzip",
    show_default=True,
    help="Compression of the data files.",
)
@click.option("--delimiter", "csv_delimiter", default=";", show_default=True, help="CSV delimiter.")
@click.option("--template", "file_name_template", help="File-name template (default MAGDA-like, see docs).")
@click.option("--allow-ip", multiple=True, metavar="CIDR", help="Allowed client network; repeatable.")
@click.option("--cert-fingerprint", help="SHA-256 fingerprint of the client certificate.")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin (else one is generated).")
@click.option("--password-expires", type=click.DateTime(["%Y-%m-%d"]), help="Last day the password is valid.")
@actor_option
@handle_errors
def add(
    code: str,
    name: str,
    email: str | None,
    format_: str,
    compression: str,
    csv_delimiter: str,
    file_name_template: str | None,
    allow_ip: tuple[str, ...],
    cert_fingerprint: str | None,
    password_stdin: bool,
    password_expires: dt.datetime | None,
    actor: str | None,
) -> None:
    """Register subscriber CODE (its FTPS user name and file-name prefix).

    Without --password-stdin a strong password is generated and printed once.

    \b
    Example:
      echo "$PASSWORD" | mutapub subscriber add gent --name "Stad Gent" --password-stdin
      mutapub subscriber add leuven --name "Stad Leuven" --compression zip --allow-ip 193.190.0.0/16
    """
    from mutapub.mutations import subscribers
    from mutapub.mutations.audit import AuditContext
    from mutapub.mutations.db import transaction
    from mutapub.mutations.workspace import open_workspace

    generated = None
    password = _read_password() if password_stdin else None
    if password is None:
        password = generated = subscribers.generate_password()
    with transaction(open_workspace().sessions) as session:
        subscribers.add(
            session,
            AuditContext.current(actor),
            code,
            password=password,
            password_expires=password_expires.date() if password_expires else None,
            name=name,
            email=email,
            format=format_,
            compression=compression,
            csv_delimiter=csv_delimiter,
            file_name_template=file_name_template or subscribers.DEFAULT_TEMPLATE,
            allow_ip=allow_ip,
            cert_fingerprint=cert_fingerprint,
        )
    click.echo(f"subscriber {code} added")
    if generated:
        click.echo(f"password (shown once, store it now): {generated}")


@subscriber.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@handle_errors
def list_(as_json: bool) -> None:
    """List subscribers.

    \b
    Example:
      mutapub subscriber list --json
    """
    from mutapub.mutations import subscribers
    from mutapub.mutations.workspace import open_workspace

    with open_workspace().sessions() as session:
        rows = [subscribers.summary(s) for s in subscribers.list_all(session)]
    if as_json:
        print_json(rows)
        return
    print_table(
        [{**r, "allow_ip": ",".join(r["allow_ip"])} for r in rows],
        ["code", "name", "status", "format", "compression", "allow_ip"],
    )


@subscriber.command()
@click.argument("code")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@handle_errors
def show(code: str, as_json: bool) -> None:
    """Show one subscriber's settings (never its password).

    \b
    Example:
      mutapub subscriber show gent --json
    """
    from mutapub.mutations import subscribers
    from mutapub.mutations.workspace import open_workspace

    with open_workspace().sessions() as session:
        row = subscribers.as_dict(subscribers.get(session, code))
    if as_json:
        print_json(row)
        return
    for key, value in row.items():
        click.echo(f"{key}: {','.join(value) if isinstance(value, list) else value}")


@subscriber.command("set")
@click.argument("code")
@click.option("--name", help="The agency's name.")
@click.option("--email", help="Contact e-mail address.")
@click.option("--format", "format_", type=click.Choice(FORMATS), help="Data file format.")
@click.option("--compression", type=click.Choice(COMPRESSIONS), help="Compression of the data files.")
@click.option("--delimiter", "csv_delimiter", help="CSV delimiter.")
@click.option("--template", "file_name_template", help="File-name template.")
@click.option("--allow-ip", multiple=True, metavar="CIDR", help="Allowed client networks (replace the list).")
@click.option("--no-allow-ip", is_flag=True, help="Clear the IP allow-list.")
@click.option("--cert-fingerprint", help="SHA-256 fingerprint of the client certificate ('' to clear).")
@actor_option
@handle_errors
def set_(
    code: str,
    name: str | None,
    email: str | None,
    format_: str | None,
    compression: str | None,
    csv_delimiter: str | None,
    file_name_template: str | None,
    allow_ip: tuple[str, ...],
    no_allow_ip: bool,
    cert_fingerprint: str | None,
    actor: str | None,
) -> None:
    """Change delivery preferences or access settings of CODE; options not given are kept.

    \b
    Example:
      mutapub subscriber set gent --compression zip --allow-ip 193.190.0.0/16 --allow-ip 10.1.0.0/16
    """
    from mutapub.mutations import subscribers
    from mutapub.mutations.audit import AuditContext
    from mutapub.mutations.db import transaction
    from mutapub.mutations.workspace import open_workspace

    given = {
        "name": name,
        "email": email,
        "format": format_,
        "compression": compression,
        "csv_delimiter": csv_delimiter,
        "file_name_template": file_name_template,
        "cert_fingerprint": cert_fingerprint,
    }
    values: dict[str, object] = {k: v for k, v in given.items() if v is not None}
    if allow_ip or no_allow_ip:
        values["allow_ip"] = list(allow_ip)
    if not values:
        raise click.UsageError("nothing to change: give at least one option")
    with transaction(open_workspace().sessions) as session:
        changed = subscribers.update(session, AuditContext.current(actor), code, **values)
    click.echo(f"subscriber {code} " + ("changed" if changed else "unchanged"))


def _set_status(code: str, status: str, actor: str | None) -> None:
    from mutapub.mutations import subscribers
    from mutapub.mutations.audit import AuditContext
    from mutapub.mutations.db import transaction
    from mutapub.mutations.workspace import open_workspace

    with transaction(open_workspace().sessions) as session:
        changed = subscribers.set_status(session, AuditContext.current(actor), code, status)
    click.echo(f"subscriber {code} {status}" + ("" if changed else " (already)"))


@subscriber.command()
@click.argument("code")
@actor_option
@handle_errors
def suspend(code: str, actor: str | None) -> None:
    """Suspend CODE: it cannot log in; its files keep being produced so its sequence has no gap.

    \b
    Example:
      mutapub subscriber suspend gent
    """
    _set_status(code, "suspended", actor)


@subscriber.command()
@click.argument("code")
@actor_option
@handle_errors
def resume(code: str, actor: str | None) -> None:
    """Resume a suspended subscriber.

    \b
    Example:
      mutapub subscriber resume gent
    """
    _set_status(code, "active", actor)


@subscriber.command()
@click.argument("code")
@click.option(
    "--password-stdin", is_flag=True, help="Read the new password from stdin (else one is generated)."
)
@click.option("--expires", type=click.DateTime(["%Y-%m-%d"]), help="Last day the password is valid.")
@actor_option
@handle_errors
def passwd(code: str, password_stdin: bool, expires: dt.datetime | None, actor: str | None) -> None:
    """Set a new password for CODE.

    \b
    Example:
      mutapub subscriber passwd gent --expires 2026-12-31
      echo "$PASSWORD" | mutapub subscriber passwd gent --password-stdin
    """
    from mutapub.mutations import subscribers
    from mutapub.mutations.audit import AuditContext
    from mutapub.mutations.db import transaction
    from mutapub.mutations.workspace import open_workspace

    password = _read_password() if password_stdin else subscribers.generate_password()
    with transaction(open_workspace().sessions) as session:
        subscribers.set_password(
            session, AuditContext.current(actor), code, password, expires.date() if expires else None
        )
    click.echo(f"password of {code} changed" + (f", valid until {expires.date()}" if expires else ""))
    if not password_stdin:
        click.echo(f"password (shown once, store it now): {password}")


@subscriber.command()
@click.argument("code")
@actor_option
@handle_errors
def remove(code: str, actor: str | None) -> None:
    """Remove CODE with its grants and followed keys; refused once it has received deliveries.

    \b
    Example:
      mutapub subscriber remove test-agency
    """
    from mutapub.mutations import subscribers
    from mutapub.mutations.audit import AuditContext
    from mutapub.mutations.db import transaction
    from mutapub.mutations.workspace import open_workspace

    with transaction(open_workspace().sessions) as session:
        subscribers.remove(session, AuditContext.current(actor), code)
    click.echo(f"subscriber {code} removed")
