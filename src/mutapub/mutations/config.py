"""Workspace configuration: `$MUTAPUB_HOME/mutapub.toml` with `MUTAPUB_<SECTION>_<KEY>` overrides."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mutapub.mutations.errors import ConfigError, WorkspaceMissing

CONFIG_FILE = "mutapub.toml"

# Every known setting with its default; the default's type is the setting's type.
# Packages that plug into mutapub read their own section through `Settings.section`.
DEFAULTS: dict[str, dict[str, Any]] = {
    "database": {"url": ""},
    "log": {"level": "INFO", "format": "text"},
    "publication": {"retention_days": 30},
    # The unattended job (`mutapub run`, `mutapub scheduler run`); see `mutapub.jobs`.
    "jobs": {
        "lock_ttl_seconds": 600,
        "catch_up_days": 31,
        "min_free_mb": 200,
        "inbox_settle_seconds": 10,
        "timezone": "Europe/Brussels",
    },
    # The FTPS server (`mutapub serve`); the README's "FTPS server" documents each setting.
    "ftps": {
        "host": "0.0.0.0",
        "port": 2121,
        "implicit_port": 0,
        "passive_ports": "60000-60199",
        "masquerade_address": "",
        "certfile": "",
        "keyfile": "",
        "tls_session_reuse": "off",
        "upload_tls_close": "required",
        "max_connections": 256,
        "max_connections_per_ip": 16,
        "ban_after_failures": 5,
        "ban_seconds": 900,
        "idle_timeout": 300,
        "login_failure_delay": 3,
        "tracking_queue_size": 10000,
    },
}

# Sections made of named tables (`[sources.persons]`, `[schedules.kbo]`): each table's keys and their
# typed defaults. Names are free; keys are checked like any setting. No environment overrides.
NAMED_TABLES: dict[str, dict[str, Any]] = {
    "sources": {
        "kind": "local",  # local | sftp
        "path": "",  # the drop directory, or the remote directory for sftp
        "glob": "*",
        "format": "csv",  # csv: one snapshot file per date; kbo: KBO Open Data full/update ZIPs
        "complete": ["marker", "checksum", "stable"],  # accepted proofs that a file is complete
        "stable_seconds": 30.0,
        "date_offset_days": 0,  # snapshot date = date in the file name + this
        "host": "",
        "port": 22,
        "user": "",
        "private_key": "",
        "known_hosts": "",
        "timeout_seconds": 30.0,
    },
    "schedules": {
        "cron": "30 2 * * *",
        "timezone": "",  # empty: jobs.timezone
        "date_offset_days": -1,  # business date = local date of the run + this (a night run does yesterday)
        "enabled": True,
    },
}

# Environment variables that are not settings, so they are never read as overrides.
_NOT_SETTINGS = {"MUTAPUB_HOME", "MUTAPUB_TEST_DATABASE_URL"}


@dataclass(frozen=True)
class Settings:
    """The effective configuration of one workspace."""

    home: Path
    values: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @property
    def config_file(self) -> Path:
        """Path of the workspace's `mutapub.toml`."""
        return self.home / CONFIG_FILE

    @property
    def database_url(self) -> str:
        """SQLAlchemy URL of the tracking database (SQLite in the workspace unless configured)."""
        url = str(self.values.get("database", {}).get("url") or "")
        return url or f"sqlite:///{self.home / 'mutapub.db'}"

    def section(self, name: str) -> Mapping[str, Any]:
        """One section's settings, defaults included."""
        return self.values.get(name, {})


def home_from_env(environ: Mapping[str, str] | None = None) -> Path:
    """The workspace directory: `$MUTAPUB_HOME`, or `./mutapub-data`."""
    environ = os.environ if environ is None else environ
    return Path(environ.get("MUTAPUB_HOME") or "mutapub-data").absolute()


def load_settings(
    home: Path | None = None, environ: Mapping[str, str] | None = None, *, require_workspace: bool = True
) -> Settings:
    """Read the workspace's configuration; raise WorkspaceMissing when it was never initialised."""
    environ = os.environ if environ is None else environ
    home = home_from_env(environ) if home is None else home
    path = home / CONFIG_FILE
    file_values: dict[str, Any] = {}
    if path.exists():
        try:
            file_values = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: {exc}") from exc
    elif require_workspace:
        raise WorkspaceMissing(f"no mutapub workspace at {home}: run `mutapub init` (or set MUTAPUB_HOME)")
    return Settings(home=home, values=merge_settings(file_values, environ, source=str(path)))


def merge_settings(file_values: Mapping[str, Any], environ: Mapping[str, str], *, source: str) -> dict:
    """Defaults, then the file, then `MUTAPUB_<SECTION>_<KEY>`; unknown names and wrong types are errors."""
    merged: dict[str, dict[str, Any]] = {section: dict(keys) for section, keys in DEFAULTS.items()}
    merged |= {section: {} for section in NAMED_TABLES}
    for section, keys in file_values.items():
        if section in NAMED_TABLES and isinstance(keys, dict):
            merged[section] = _named_tables(section, keys, source)
            continue
        if section not in DEFAULTS or not isinstance(keys, dict):
            known = ", ".join([*DEFAULTS, *NAMED_TABLES])
            raise ConfigError(f"{source}: unknown section [{section}] (known: {known})")
        for key, value in keys.items():
            merged[section][key] = _typed(section, key, value, source)
    for name, raw in environ.items():
        if not name.startswith("MUTAPUB_") or name in _NOT_SETTINGS:
            continue
        env_section, key = _split_env_name(name)
        if env_section is None:
            continue
        merged[env_section][key] = _typed(env_section, key, _parse_env(raw, DEFAULTS[env_section][key]), name)
    return merged


def _named_tables(section: str, tables: Mapping[str, Any], source: str) -> dict[str, dict[str, Any]]:
    """`[section.<name>]` tables, each with its keys checked and defaults filled in."""
    defaults = NAMED_TABLES[section]
    out: dict[str, dict[str, Any]] = {}
    for name, keys in tables.items():
        if not isinstance(keys, dict):
            raise ConfigError(f"{source}: {section}.{name} must be a table [{section}.{name}]")
        entry = dict(defaults)
        for key, value in keys.items():
            if key not in defaults:
                raise ConfigError(
                    f"{source}: unknown setting {section}.{name}.{key} (known: {', '.join(defaults)})"
                )
            expected = type(defaults[key])
            if expected is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
                raise ConfigError(
                    f"{source}: {section}.{name}.{key} must be {expected.__name__}, got {value!r}"
                )
            entry[key] = value
        out[name] = entry
    return out


def _split_env_name(name: str) -> tuple[str | None, str]:
    rest = name.removeprefix("MUTAPUB_").lower()
    for section in sorted(DEFAULTS, key=len, reverse=True):
        if rest.startswith(section + "_") and rest[len(section) + 1 :] in DEFAULTS[section]:
            return section, rest[len(section) + 1 :]
    return None, rest


def _parse_env(raw: str, default: Any) -> Any:
    if isinstance(default, bool):
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        return raw
    if isinstance(default, int):
        try:
            return int(raw)
        except ValueError:
            return raw
    return raw


def _typed(section: str, key: str, value: Any, source: str) -> Any:
    if key not in DEFAULTS[section]:
        known = ", ".join(DEFAULTS[section])
        raise ConfigError(f"{source}: unknown setting {section}.{key} (known: {known})")
    expected = type(DEFAULTS[section][key])
    if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
        raise ConfigError(f"{source}: {section}.{key} must be {expected.__name__}, got {value!r}")
    return value


def default_config_text() -> str:
    """The commented `mutapub.toml` that `mutapub init` writes."""
    return """\
# mutapub workspace configuration. Every setting can be overridden by MUTAPUB_<SECTION>_<KEY>,
# e.g. MUTAPUB_DATABASE_URL=postgresql+psycopg://mutapub@db/mutapub

[database]
# Empty: SQLite in this workspace (mutapub.db).
url = ""

[log]
level = "INFO"
# text | json (one JSON object per line)
format = "text"

[publication]
retention_days = 30

[jobs]
# The nightly job (`mutapub run`) and its scheduler (`mutapub scheduler run`).
lock_ttl_seconds = 600       # a lock left by a crashed run is taken over after this long
catch_up_days = 31           # at start-up the scheduler catches up missed dates this far back
min_free_mb = 200            # a run fails before publishing when the workspace has less free space
inbox_settle_seconds = 10    # inbox uploads younger than this are left for the next run
timezone = "Europe/Brussels"

[ftps]
# The FTPS server (`mutapub serve`): explicit FTPS (AUTH TLS) on host:port; 0 = implicit TLS off.
host = "0.0.0.0"
port = 2121
implicit_port = 0
passive_ports = "60000-60199"
masquerade_address = ""        # the address PASV announces behind NAT; empty: the local address
certfile = ""                  # empty: certs/server.pem of this workspace (`mutapub certs selfsigned`)
keyfile = ""                   # empty: certs/server.key
tls_session_reuse = "off"      # off | required: data connections must resume the control's TLS session
upload_tls_close = "required"  # required | optional: keep an upload that ends without the client's TLS close
max_connections = 256
max_connections_per_ip = 16
ban_after_failures = 5         # failed logins from one address within ban_seconds before it is banned
ban_seconds = 900
idle_timeout = 300
login_failure_delay = 3        # seconds before a failed login is answered
tracking_queue_size = 10000    # records held in memory before they spill to the journal file

# Where each dataset's snapshots come from (see README, "Running unattended"):
# [sources.persons]
# kind = "local"                  # or "sftp" (host, port, user, private_key, known_hosts)
# path = "/srv/drop/persons"
# glob = "persons_*.csv"
# complete = ["marker", "checksum", "stable"]
#
# [sources.kbo]                   # the seven kbo_* datasets from KBO Open Data ZIPs
# kind = "local"
# path = "/srv/drop/kbo"
# glob = "KboOpenData_*.zip"
# format = "kbo"
# date_offset_days = -1           # the file of the 12th holds the snapshot of the 11th
#
# When the scheduler runs them (cron in the time zone; the night of the 12th does the 11th):
# [schedules.persons]
# cron = "30 2 * * *"
# timezone = "Europe/Brussels"
"""
