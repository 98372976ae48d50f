"""Where snapshots come from: a local drop directory or a remote SFTP directory, per configured source.

A source is `[sources.<name>]` in `mutapub.toml`; `<name>` is a dataset, or any name with
`format = "kbo"` for KBO Open Data ZIPs, which feed the seven `kbo_*` datasets at once. A file is
taken only when it is complete: a `<file>.done` marker, a `<file>.sha256` checksum file (verified
after the copy), or a size and modification time unchanged between two looks, as configured.
Fetched files are kept in the workspace under `incoming/<source>/`.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import hashlib
import logging
import os
import re
import shutil
import stat
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any, Protocol

from mutapub.mutations.config import Settings
from mutapub.mutations.errors import ConfigError, InputError, MutapubError
from mutapub.mutations.snapshots import date_from_name, file_sha256
from mutapub.mutations.workspace import Workspace
from mutapub.schemas import SchemaError, load_schema

log = logging.getLogger("mutapub.jobs.sources")

KBO_TABLES = ("enterprise", "establishment", "denomination", "address", "contact", "activity", "branch")
_KBO_NAME = re.compile(r"KboOpenData_(\d+)_(\d{4})_(\d{2})_(\d{2})_(Full|Update)\.zip$", re.IGNORECASE)
MARKER, CHECKSUM = ".done", ".sha256"
PROOFS = ("marker", "checksum", "stable")


class SourceError(MutapubError):
    """A source could not be reached or read: the run fails and the next one tries again."""


class SourceMissing(SourceError):
    """The source offers no complete file for the date asked."""


@dataclass(frozen=True)
class SourceConfig:
    """One `[sources.<name>]` table."""

    name: str
    kind: str
    path: str
    glob: str
    format: str
    complete: tuple[str, ...]
    stable_seconds: float
    date_offset_days: int
    host: str = ""
    port: int = 22
    user: str = ""
    private_key: str = ""
    known_hosts: str = ""
    timeout_seconds: float = 30.0

    @property
    def datasets(self) -> tuple[str, ...]:
        """The datasets this source feeds."""
        if self.format == "kbo":
            return tuple(f"kbo_{t}" for t in KBO_TABLES)
        return (self.name,)

    @property
    def where(self) -> str:
        """The source's location as shown in messages."""
        if self.kind == "sftp":
            return f"sftp://{self.user}@{self.host}:{self.port}{self.path}"
        return self.path


def load_sources(settings: Settings) -> dict[str, SourceConfig]:
    """The configured sources, checked: kinds, formats, completeness proofs, datasets, SFTP settings."""
    out = {}
    raw: Mapping[str, Any] = settings.section("sources")
    for name, v in raw.items():
        cfg = SourceConfig(
            name=name,
            kind=v["kind"],
            path=v["path"],
            glob=v["glob"],
            format=v["format"],
            complete=tuple(v["complete"]),
            stable_seconds=float(v["stable_seconds"]),
            date_offset_days=v["date_offset_days"],
            host=v["host"],
            port=v["port"],
            user=v["user"],
            private_key=v["private_key"],
            known_hosts=v["known_hosts"],
            timeout_seconds=float(v["timeout_seconds"]),
        )
        where = f"sources.{name}"
        if cfg.kind not in ("local", "sftp"):
            raise ConfigError(f"{where}.kind: {cfg.kind!r} is neither local nor sftp")
        if cfg.format not in ("csv", "kbo"):
            raise ConfigError(f"{where}.format: {cfg.format!r} is neither csv nor kbo")
        bad = [p for p in cfg.complete if p not in PROOFS]
        if bad or not cfg.complete:
            raise ConfigError(
                f"{where}.complete: give one or more of {', '.join(PROOFS)} (got {bad or 'none'})"
            )
        if not cfg.path:
            raise ConfigError(f"{where}.path: the directory to take files from is not set")
        if cfg.format == "csv":
            try:
                load_schema(name)
            except SchemaError as exc:
                raise ConfigError(f"{where}: {exc} (a csv source is named after its dataset)") from exc
        if cfg.kind == "sftp":
            missing = [k for k in ("host", "user", "private_key", "known_hosts") if not getattr(cfg, k)]
            if missing:
                raise ConfigError(f"{where}: an sftp source needs {', '.join(missing)}")
        out[name] = cfg
    return out


def source_for(settings: Settings, name: str) -> SourceConfig:
    """The source named `name`, or a ConfigError listing the configured ones."""
    sources = load_sources(settings)
    if name not in sources:
        known = ", ".join(sources) or "none"
        raise ConfigError(f"no source [sources.{name}] in mutapub.toml (configured: {known})")
    return sources[name]


# --- connectors -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """A file in a source directory."""

    name: str
    size: int
    mtime: float


class Connector(Protocol):
    """Access to one source directory."""

    def listing(self) -> dict[str, Entry]:
        """The regular files of the directory, by name."""
        ...

    def read_text(self, name: str) -> str:
        """A small companion file (a checksum) as text."""
        ...

    def copy_to(self, name: str, out: IO[bytes]) -> None:
        """Copy a file's bytes into `out`."""
        ...


class LocalConnector:
    """A drop directory on this machine (or a mounted share)."""

    def __init__(self, cfg: SourceConfig) -> None:
        self.root = Path(cfg.path)
        if not self.root.is_dir():
            raise SourceError(f"source {cfg.name}: the drop directory {self.root} does not exist")

    def listing(self) -> dict[str, Entry]:
        out = {}
        with os.scandir(self.root) as it:
            for e in it:
                if e.is_file():
                    st = e.stat()
                    out[e.name] = Entry(e.name, st.st_size, st.st_mtime)
        return out

    def read_text(self, name: str) -> str:
        return (self.root / name).read_text(encoding="utf-8", errors="replace")

    def copy_to(self, name: str, out: IO[bytes]) -> None:
        with open(self.root / name, "rb") as fh:
            shutil.copyfileobj(fh, out, 1 << 20)


class SftpConnector:
    """A remote directory over SFTP (paramiko); the server's host key must be in the known-hosts file."""

    def __init__(self, cfg: SourceConfig) -> None:
        import paramiko

        self.cfg = cfg
        self.client = paramiko.SSHClient()
        known = Path(cfg.known_hosts).expanduser()
        if not known.is_file():
            raise ConfigError(f"sources.{cfg.name}.known_hosts: {known} does not exist")
        self.client.load_host_keys(str(known))
        # An unknown host is refused, never added: the operator puts its key in known_hosts first.
        self.client.set_missing_host_key_policy(paramiko.RejectPolicy())
        try:
            self.client.connect(
                cfg.host,
                port=cfg.port,
                username=cfg.user,
                key_filename=str(Path(cfg.private_key).expanduser()),
                look_for_keys=False,
                allow_agent=False,
                timeout=cfg.timeout_seconds,
                banner_timeout=cfg.timeout_seconds,
                auth_timeout=cfg.timeout_seconds,
            )
            self.sftp = self.client.open_sftp()
            self.sftp.get_channel().settimeout(cfg.timeout_seconds)  # type: ignore[union-attr]
        except paramiko.BadHostKeyException as exc:
            self.close()
            raise SourceError(
                f"source {cfg.name}: the host key of {cfg.host}:{cfg.port} CHANGED "
                f"(got {exc.key.get_name()} {exc.key.get_base64()[:16]}…, known_hosts has another); refused"
            ) from exc
        except paramiko.SSHException as exc:
            self.close()
            if "not found in known_hosts" in str(exc):
                raise SourceError(
                    f"source {cfg.name}: {cfg.host}:{cfg.port} is not in {known}: unknown host key refused "
                    "(add it with ssh-keyscan after checking its fingerprint)"
                ) from exc
            raise SourceError(f"source {cfg.name}: SFTP {cfg.where}: {exc}") from exc
        except OSError as exc:
            self.close()
            raise SourceError(f"source {cfg.name}: cannot reach SFTP {cfg.where}: {exc}") from exc

    def _path(self, name: str) -> str:
        return str(PurePosixPath(self.cfg.path) / name)

    def listing(self) -> dict[str, Entry]:
        try:
            attrs = self.sftp.listdir_attr(self.cfg.path)
        except OSError as exc:
            raise SourceError(f"source {self.cfg.name}: cannot list {self.cfg.where}: {exc}") from exc
        return {
            a.filename: Entry(a.filename, a.st_size or 0, float(a.st_mtime or 0))
            for a in attrs
            if a.st_mode is not None and stat.S_ISREG(a.st_mode)
        }

    def read_text(self, name: str) -> str:
        with self.sftp.open(self._path(name), "rb") as fh:
            return fh.read().decode("utf-8", errors="replace")

    def copy_to(self, name: str, out: IO[bytes]) -> None:
        self.sftp.getfo(self._path(name), out)

    def close(self) -> None:
        """Close the SFTP session and the SSH connection."""
        sftp = getattr(self, "sftp", None)
        if sftp is not None:
            sftp.close()
        self.client.close()


@contextmanager
def connect(cfg: SourceConfig) -> Iterator[Connector]:
    """An open connector to the source, closed after the block."""
    if cfg.kind == "local":
        yield LocalConnector(cfg)
        return
    conn = SftpConnector(cfg)
    try:
        yield conn
    finally:
        conn.close()


# --- what a source offers -------------------------------------------------------------------------


@dataclass(frozen=True)
class Offer:
    """A file of the source for one snapshot date, with how it was found complete (or why not)."""

    name: str
    size: int
    date: dt.date
    extract: int | None = None  # KBO extract number
    kbo_kind: str | None = None  # "full" or "update"
    sha256: str | None = None  # from a checksum file
    proof: str | None = None  # marker | checksum | stable; None: not complete
    why_not: str = ""

    @property
    def complete(self) -> bool:
        """Whether the file may be taken."""
        return self.proof is not None


def _kbo_parts(name: str) -> tuple[int, dt.date, str] | None:
    m = _KBO_NAME.search(name)
    if not m:
        return None
    try:
        return int(m[1]), dt.date(int(m[2]), int(m[3]), int(m[4])), m[5].lower()
    except ValueError:
        return None


def _checksum(text: str, name: str) -> str | None:
    """The SHA-256 a checksum file gives (`<hex>` or `<hex>  <name>` as sha256sum writes)."""
    for line in text.splitlines():
        parts = line.strip().split()
        named = len(parts) == 1 or (len(parts) > 1 and parts[-1].lstrip("*") == name)
        if parts and named and re.fullmatch(r"[0-9a-fA-F]{64}", parts[0]):
            return parts[0].lower()
    return None


def offers(cfg: SourceConfig, conn: Connector, *, sleep: Callable[[float], None] = time.sleep) -> list[Offer]:
    """Every file matching the source's glob, with its date and completeness, in processing order
    (KBO: by extract number, a full before an update of the same extract; otherwise by date)."""
    first = conn.listing()
    candidates = sorted(
        n for n in first if fnmatch.fnmatch(n, cfg.glob) and not n.endswith((MARKER, CHECKSUM))
    )
    if "stable" in cfg.complete and any(
        not _proven(cfg, first, n) for n in candidates
    ):  # one second look for every file that has no marker or checksum
        sleep(cfg.stable_seconds)
        second = conn.listing()
    else:
        second = first
    out = []
    for name in candidates:
        entry = first[name]
        extract = kind = None
        if cfg.format == "kbo":
            parts = _kbo_parts(name)
            if parts is None:
                log.warning("source %s: %s is not named like a KBO Open Data ZIP; ignored", cfg.name, name)
                continue
            extract, day, kind = parts
        else:
            found = date_from_name(name)
            if found is None:
                log.warning("source %s: %s carries no date in its name; ignored", cfg.name, name)
                continue
            day = found
        date = day + dt.timedelta(days=cfg.date_offset_days)
        proof, sha, why = None, None, ""
        if "marker" in cfg.complete and name + MARKER in first:
            proof = "marker"
        if "checksum" in cfg.complete and name + CHECKSUM in first:
            sha = _checksum(conn.read_text(name + CHECKSUM), name)
            if sha is None:
                raise SourceError(f"source {cfg.name}: {name}{CHECKSUM} holds no SHA-256 for {name}")
            proof = proof or "checksum"
        if proof is None and "stable" in cfg.complete:
            again = second.get(name)
            if again is not None and (again.size, again.mtime) == (entry.size, entry.mtime):
                proof = "stable"
            else:
                why = f"its size changed within {cfg.stable_seconds:g} s: still being written"
        if proof is None and not why:
            why = "no " + " or ".join(
                {"marker": f"{name}{MARKER} marker", "checksum": f"{name}{CHECKSUM} file"}[p]
                for p in cfg.complete
                if p != "stable"
            )
        out.append(Offer(name, entry.size, date, extract, kind, sha, proof, why))
    if cfg.format == "kbo":
        out.sort(key=lambda o: (o.extract or 0, o.kbo_kind != "full", o.name))
    else:
        out.sort(key=lambda o: (o.date, o.name))
    return out


def _proven(cfg: SourceConfig, listing: Mapping[str, Entry], name: str) -> bool:
    return ("marker" in cfg.complete and name + MARKER in listing) or (
        "checksum" in cfg.complete and name + CHECKSUM in listing
    )


def pick(cfg: SourceConfig, found: list[Offer], date: dt.date) -> Offer:
    """The one complete file for `date` (KBO: the full extract if there is one, else the update);
    SourceMissing says what was there instead."""
    same = [o for o in found if o.date == date]
    ready = [o for o in same if o.complete]
    if cfg.format == "kbo":
        ready.sort(key=lambda o: (o.kbo_kind != "full", o.extract or 0))
        ready = ready[:1]
    if len(ready) > 1:
        raise SourceError(
            f"source {cfg.name}: {len(ready)} files for {date} ({', '.join(o.name for o in ready)}): "
            "remove all but one"
        )
    if ready:
        return ready[0]
    if same:
        reasons = "; ".join(f"{o.name}: {o.why_not}" for o in same)
        raise SourceMissing(
            f"source {cfg.name} ({cfg.where}) has no complete file for {date} yet ({reasons})"
        )
    raise SourceMissing(f"source {cfg.name} ({cfg.where}) has no file for {date} matching {cfg.glob!r}")


def dates_offered(found: list[Offer]) -> list[dt.date]:
    """The snapshot dates of the offered files, in processing order, each once."""
    return list(dict.fromkeys(o.date for o in found))


# --- fetching -------------------------------------------------------------------------------------


def incoming_dir(ws: Workspace, source: str) -> Path:
    """Where fetched files of a source are kept in the workspace."""
    return ws.home / "incoming" / source


@dataclass
class Fetched:
    """A file copied into the workspace and verified."""

    path: Path
    size: int
    sha256: str
    verified: bool = False
    reused: bool = False
    notes: list[str] = field(default_factory=list)


def fetch(ws: Workspace, cfg: SourceConfig, conn: Connector, offer: Offer) -> Fetched:
    """Copy an offered file into `incoming/<source>/` (temp file, fsync, rename), checking its size and,
    when a checksum was given, its SHA-256."""
    folder = incoming_dir(ws, cfg.name)
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / offer.name
    # a copy kept from an earlier attempt is reused only when a checksum proves it the same file: a
    # source may replace a bad file by a corrected one of the same size
    same_size = final.exists() and final.stat().st_size == offer.size
    if offer.sha256 is not None and same_size and file_sha256(final) == offer.sha256:
        return Fetched(final, offer.size, offer.sha256, verified=True, reused=True)
    tmp = folder / f".{offer.name}.{uuid.uuid4().hex[:8]}.part"
    digest = hashlib.sha256()
    try:
        with open(tmp, "wb") as raw:
            out = _Hashing(raw, digest)
            conn.copy_to(offer.name, out)  # type: ignore[arg-type]
            raw.flush()
            os.fsync(raw.fileno())
        size = tmp.stat().st_size
        if size != offer.size:
            raise SourceError(
                f"source {cfg.name}: {offer.name} was {offer.size} bytes when listed, {size} when copied"
            )
        sha = digest.hexdigest()
        if offer.sha256 is not None and sha != offer.sha256:
            raise InputError(
                f"source {cfg.name}: {offer.name} fails its checksum: SHA-256 {sha}, "
                f"{offer.name}{CHECKSUM} says {offer.sha256}"
            )
        os.replace(tmp, final)
    except OSError as exc:
        raise SourceError(f"source {cfg.name}: cannot copy {offer.name} into {folder}: {exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)
    return Fetched(final, size, sha, verified=offer.sha256 is not None)


class _Hashing:
    """A writable file that hashes what passes through it."""

    def __init__(self, out: IO[bytes], digest: Any) -> None:
        self.out, self.digest = out, digest

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        return self.out.write(data)
