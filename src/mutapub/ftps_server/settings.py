"""The `[ftps]` configuration section, checked and typed."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from mutapub.mutations.errors import ConfigError

SESSION_REUSE = ("off", "required")
UPLOAD_TLS_CLOSE = ("required", "optional")


@dataclass(frozen=True)
class FtpsSettings:
    """Everything the server is built from; `with_` gives a copy with some values changed."""

    host: str = "0.0.0.0"
    port: int = 2121
    implicit_port: int | None = None
    passive_ports: range | None = range(60000, 60200)
    masquerade_address: str | None = None
    certfile: Path = Path("certs/server.pem")
    keyfile: Path = Path("certs/server.key")
    tls_session_reuse: str = "off"
    upload_tls_close: str = "required"
    max_connections: int = 256
    max_connections_per_ip: int = 16
    ban_after_failures: int = 5
    ban_seconds: int = 900
    idle_timeout: int = 300
    login_failure_delay: float = 3
    tracking_queue_size: int = 10000

    def with_(self, **changes: Any) -> FtpsSettings:
        """A copy with `changes` applied."""
        return replace(self, **changes)


def parse_port_range(text: str) -> range | None:
    """`"60000-60199"` → range(60000, 60200); empty → None (any free port)."""
    text = text.strip()
    if not text:
        return None
    try:
        low, _, high = text.partition("-")
        first, last = int(low), int(high or low)
    except ValueError as exc:
        raise ConfigError(f"ftps.passive_ports {text!r}: give a range like 60000-60199") from exc
    if not 1024 <= first <= last <= 65535:
        raise ConfigError(f"ftps.passive_ports {text!r}: ports must be 1024-65535, low to high")
    return range(first, last + 1)


def _choice(section: Mapping[str, Any], key: str, choices: tuple[str, ...]) -> str:
    """A setting that takes one of `choices` (the first is its default)."""
    value = str(section.get(key, choices[0]))
    if value not in choices:
        raise ConfigError(f"ftps.{key} {value!r} is not one of {', '.join(choices)}")
    return value


def from_section(section: Mapping[str, Any], home: Path) -> FtpsSettings:
    """The `[ftps]` section of a workspace; relative certificate paths are relative to `home`."""
    reuse = _choice(section, "tls_session_reuse", SESSION_REUSE)
    upload_close = _choice(section, "upload_tls_close", UPLOAD_TLS_CLOSE)
    masquerade = str(section.get("masquerade_address") or "").strip() or None
    if masquerade is not None:
        try:
            ipaddress.IPv4Address(masquerade)
        except ValueError as exc:
            # PASV replies carry four numbers: only an IPv4 address can be announced.
            raise ConfigError(f"ftps.masquerade_address {masquerade!r} is not an IPv4 address") from exc
    for key in ("port", "implicit_port"):
        if not 0 <= int(section.get(key, 0)) <= 65535:
            raise ConfigError(f"ftps.{key} {section[key]!r} is not a TCP port")
    for key in ("max_connections", "max_connections_per_ip", "ban_after_failures", "ban_seconds"):
        if int(section.get(key, 0)) < 0:
            raise ConfigError(f"ftps.{key} must not be negative")
    certfile = Path(section.get("certfile") or "certs/server.pem")
    keyfile = Path(section.get("keyfile") or "certs/server.key")
    implicit = int(section.get("implicit_port", 0))
    return FtpsSettings(
        host=str(section.get("host", "0.0.0.0")),
        port=int(section.get("port", 2121)),
        implicit_port=implicit or None,
        passive_ports=parse_port_range(str(section.get("passive_ports", ""))),
        masquerade_address=masquerade,
        certfile=certfile if certfile.is_absolute() else home / certfile,
        keyfile=keyfile if keyfile.is_absolute() else home / keyfile,
        tls_session_reuse=reuse,
        upload_tls_close=upload_close,
        max_connections=int(section.get("max_connections", 256)),
        max_connections_per_ip=int(section.get("max_connections_per_ip", 16)),
        ban_after_failures=int(section.get("ban_after_failures", 5)),
        ban_seconds=int(section.get("ban_seconds", 900)),
        idle_timeout=int(section.get("idle_timeout", 300)),
        login_failure_delay=float(section.get("login_failure_delay", 3)),
        tracking_queue_size=max(1, int(section.get("tracking_queue_size", 10000))),
    )
