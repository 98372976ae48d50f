"""Errors raised by the mutapub library; the CLI turns each into one line and a non-zero exit."""

from __future__ import annotations

from mutapub.schemas.loader import SchemaError

__all__ = [
    "Conflict",
    "ConfigError",
    "InputError",
    "MutapubError",
    "NotFound",
    "SchemaError",
    "WorkspaceMissing",
]


class MutapubError(Exception):
    """Base of every error mutapub reports to its user as a message rather than a traceback."""

    exit_code = 1


class ConfigError(MutapubError):
    """The workspace or its configuration is missing or invalid."""

    exit_code = 2


class WorkspaceMissing(ConfigError):
    """No workspace at MUTAPUB_HOME: the operator must run `mutapub init` first."""


class InputError(MutapubError):
    """An input file is refused; the message names the file and the line, column or key."""


class NotFound(MutapubError):
    """A snapshot, change set or other record asked for does not exist."""


class Conflict(MutapubError):
    """The request contradicts what is already registered (e.g. another file for the same date)."""
