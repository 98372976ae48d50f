"""`mutapub serve`, `mutapub certs` and `mutapub downloads`: the FTPS server and its trail."""

from __future__ import annotations

import datetime as dt
import re

import click

from mutapub.mutations.cli import handle_errors, print_json, print_table


@click.command()
@click.option("--host", help="Address to listen on (default: ftps.host).")
@click.option("--port", type=click.IntRange(0, 65535), help="Port for explicit FTPS; 0 picks a free one.")
@click.option(
    "--implicit-port", type=click.IntRange(0, 65535), help="Also listen with implicit TLS on this port."
)
@handle_errors
def serve(host: str | None, port: int | None, implicit_port: int | None) -> None:
    """Serve each subscriber's outbox and inbox over FTPS until SIGTERM or SIGINT.

    Prints `listening on HOST:PORT` once listening. On SIGTERM it closes every session and writes
    every pending download record before it exits.

    \b
    Example:
      mutapub certs selfsigned --host ftps.example.org
      mutapub serve --host 0.0.0.0 --port 2121
    """
    import logging

    from mutapub.ftps_server.server import serve as run
    from mutapub.ftps_server.settings import from_section
    from mutapub.mutations.workspace import open_workspace

    ws = open_workspace()
    settings = from_section(ws.settings.section("ftps"), ws.home)
    changes: dict[str, object] = {}
    if host is not None:
        changes["host"] = host
    if port is not None:
        changes["port"] = port
    if implicit_port is not None:
        changes["implicit_port"] = implicit_port or None
    settings = settings.with_(**changes)
    level = str(ws.settings.section("log").get("level", "INFO")).upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    run(ws, settings, announce=lambda line: click.echo(line))


@click.group()
def certs() -> None:
    """The server's TLS certificate."""


@certs.command()
@click.option("--host", "hosts", multiple=True, help="A name or address clients connect to (repeatable).")
@handle_errors
def selfsigned(hosts: tuple[str, ...]) -> None:
    """Write a self-signed certificate and key to certs/ in the workspace; print its SHA-256 fingerprint.

    The certificate names the given hosts plus localhost and 127.0.0.1. `serve` uses it unless
    ftps.certfile and ftps.keyfile name another. For trials: subscribers must trust it by fingerprint.

    \b
    Example:
      mutapub certs selfsigned --host ftps.example.org --host 10.0.0.5
    """
    from mutapub.ftps_server.certs import selfsigned as make
    from mutapub.mutations.workspace import open_workspace

    ws = open_workspace(check_database=False)
    certfile, keyfile = ws.home / "certs" / "server.pem", ws.home / "certs" / "server.key"
    fingerprint = make(certfile, keyfile, list(hosts))
    click.echo(f"wrote {certfile} and {keyfile}")
    click.echo(f"SHA-256 fingerprint: {':'.join(re.findall('..', fingerprint.upper()))}")


@click.group()
def downloads() -> None:
    """Downloads recorded by the FTPS server."""


def _since(text: str) -> dt.datetime:
    m = re.fullmatch(r"(\d+)([dh])", text.strip())
    if m:
        n = int(m[1])
        return dt.datetime.now(dt.UTC) - (dt.timedelta(days=n) if m[2] == "d" else dt.timedelta(hours=n))
    try:
        value = dt.datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise click.BadParameter(
            f"{text!r}: give a date, a time (ISO 8601) or an age such as 2d or 12h"
        ) from exc
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


@downloads.command("list")
@click.option("--subscriber", help="Only this subscriber (code).")
@click.option("--since", help="Only downloads started since: a date, an ISO time (UTC) or an age (2d, 12h).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@handle_errors
def list_(subscriber: str | None, since: str | None, as_json: bool) -> None:
    """List downloads, complete or not, with their offset, bytes and the delivery they belong to.

    \b
    Example:
      mutapub downloads list --subscriber gent --since 2d --json
    """
    from mutapub.mutations.tracking import downloads as query
    from mutapub.mutations.workspace import open_workspace

    rows = query(open_workspace(), subscriber=subscriber, since=_since(since) if since else None)
    if as_json:
        print_json(rows)
        return
    print_table(
        rows,
        [
            "started",
            "subscriber",
            "path",
            "delivery_seq",
            "rest_offset",
            "bytes",
            "size",
            "complete",
            "remote",
        ],
    )
