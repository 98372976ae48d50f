"""Subscriber inboxes: followed-key lists uploaded to `/inbox/<dataset>/`, validated and applied.

`follow-add-*.csv` and `follow-remove-*.csv` hold one key per line (an optional header line). Each file
is judged on its own: valid lines are applied, each rejected line is reported with its reason, and a
file that cannot be read at all is rejected whole, never holding up the others. The file then moves to
`inbox-archive/<code>/<dataset>/` in the workspace (out of the subscriber's reach) and
`<name>.result.txt` is written to the subscriber's `/outbox/<dataset>/`.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import logging
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select

from mutapub.mutations import follows
from mutapub.mutations.audit import AuditContext
from mutapub.mutations.errors import MutapubError
from mutapub.mutations.models import Subscriber
from mutapub.mutations.workspace import Workspace

log = logging.getLogger("mutapub.jobs.inbox")

PATTERNS = {"follow-add-*.csv": "add", "follow-remove-*.csv": "remove"}
MAX_BYTES = 20 * 1024 * 1024  # a followed-key list is small; anything larger is refused unread
RESULT_SUFFIX = ".result.txt"


@dataclass
class FileResult:
    """What became of one uploaded file."""

    subscriber: str
    dataset: str
    name: str
    action: str
    accepted: int = 0
    unchanged: int = 0
    rejected: list[tuple[int, str, str]] = field(default_factory=list)  # (line, text, reason)
    refused: str | None = None  # the whole file was refused, and why

    def text(self, at: dt.datetime) -> str:
        """The result file a subscriber reads."""
        lines = [
            f"file: {self.name}",
            f"dataset: {self.dataset}",
            f"action: follow-{self.action}",
            f"processed: {at.astimezone(dt.UTC).isoformat(timespec='seconds').replace('+00:00', 'Z')}",
        ]
        if self.refused:
            lines += ["status: rejected", f"reason: {self.refused}", "accepted: 0"]
        else:
            status = "accepted" if not self.rejected else "partly accepted" if self.accepted else "rejected"
            lines += [
                f"status: {status}",
                f"accepted: {self.accepted}",
                f"already {'followed' if self.action == 'add' else 'not followed'}: {self.unchanged}",
                f"rejected: {len(self.rejected)}",
            ]
            lines += [f"line {n}: {text!r}: {reason}" for n, text, reason in self.rejected]
        return "\n".join(lines) + "\n"


@dataclass
class InboxReport:
    """Every file an inbox pass handled."""

    files: list[FileResult] = field(default_factory=list)

    @property
    def accepted(self) -> int:
        """Keys applied across all files."""
        return sum(f.accepted for f in self.files)

    @property
    def rejected(self) -> int:
        """Lines (or whole files, as one each) refused across all files."""
        return sum(len(f.rejected) + (1 if f.refused else 0) for f in self.files)


def _action(name: str) -> str | None:
    for pattern, action in PATTERNS.items():
        if fnmatch.fnmatch(name, pattern):
            return action
    return None


def pending(ws: Workspace, dataset: str, now: dt.datetime, settle: float) -> list[tuple[str, Path, str]]:
    """Uploaded files waiting in every subscriber's inbox for `dataset`: (code, path, action), by name.

    A file younger than `settle` seconds may still be arriving and is left for the next run.
    """
    out = []
    cutoff = now.timestamp() - settle
    for sub_dir in sorted(p for p in ws.publish_dir.glob("*") if p.is_dir()):
        folder = sub_dir / "inbox" / dataset
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            action = _action(path.name)
            if action is None or not path.is_file():
                continue
            if path.stat().st_mtime > cutoff:
                log.info("inbox %s: %s is still arriving; left for the next run", sub_dir.name, path.name)
                continue
            out.append((sub_dir.name, path, action))
    return out


def judge_lines(dataset: str, text: str) -> tuple[list[str], list[tuple[int, str, str]]]:
    """The valid keys of a file, normalised, and each rejected line with its reason (pure)."""
    lines: list[tuple[int, str, str]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip().lstrip("\ufeff")
        if not line or line.startswith("#"):
            continue
        value = line.split(",")[0].split(";")[0].strip().strip('"')
        if not lines and value and not any(ch.isdigit() for ch in value):
            continue  # a header such as "insz" or "EnterpriseNumber"
        lines.append((number, raw.strip(), value))
    if not lines:
        return [], []
    try:  # the common case, a clean list, in one validator call
        return follows.normalise(dataset, [v for _n, _r, v in lines]), []
    except MutapubError:
        pass
    keys: list[str] = []
    rejected: list[tuple[int, str, str]] = []
    for number, raw, value in lines:
        try:
            keys.extend(follows.normalise(dataset, [value]))
        except MutapubError as exc:
            rejected.append((number, raw, str(exc)))
    return list(dict.fromkeys(keys)), rejected


def process_file(ws: Workspace, code: str, dataset: str, path: Path, action: str) -> FileResult:
    """Validate and apply one uploaded file (valid lines in one transaction, audited)."""
    result = FileResult(code, dataset, path.name, action)
    size = path.stat().st_size
    if size > MAX_BYTES:
        result.refused = f"the file is {size} bytes; at most {MAX_BYTES} are read"
        return result
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        result.refused = f"not UTF-8 text (byte {exc.start}): save the list as UTF-8 CSV"
        return result
    keys, result.rejected = judge_lines(dataset, text)
    if not keys:
        if not result.rejected:
            result.refused = "the file holds no key"
        return result
    ctx = AuditContext(actor=f"inbox:{code}", command=f"mutapub run (inbox {dataset}/{path.name})")
    try:
        with ws.sessions() as session, session.begin():
            apply = follows.add if action == "add" else follows.remove
            done = apply(session, ctx, code, dataset, keys)
    except MutapubError as exc:
        result.refused = str(exc)
        return result
    result.accepted, result.unchanged = len(done.changed), len(done.unchanged)
    return result


def _write_result(ws: Workspace, result: FileResult, now: dt.datetime) -> Path:
    target = ws.publish_dir / result.subscriber / "outbox" / result.dataset
    target.mkdir(parents=True, exist_ok=True)
    final = target / (result.name + RESULT_SUFFIX)
    tmp = ws.staging_dir / f"inbox-{uuid.uuid4().hex}{RESULT_SUFFIX}"
    ws.staging_dir.mkdir(parents=True, exist_ok=True)
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(result.text(now))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    return final


def archive_dir(ws: Workspace, code: str, dataset: str) -> Path:
    """Where processed uploads are kept: in the workspace, outside the publish tree."""
    return ws.home / "inbox-archive" / code / dataset


def process(ws: Workspace, dataset: str, now: dt.datetime, settle: float = 10.0) -> InboxReport:
    """Handle every waiting upload for `dataset`: apply, write the result, archive the file."""
    report = InboxReport()
    with ws.sessions() as session:
        known = set(session.scalars(select(Subscriber.code)))
    for code, path, action in pending(ws, dataset, now, settle):
        if code not in known:
            log.warning("inbox: %s has no subscriber %s; left alone", path, code)
            continue
        result = process_file(ws, code, dataset, path, action)
        # the result is written before the upload moves away: a crash between the two re-applies the
        # file, which is harmless (adding a followed key twice changes nothing)
        _write_result(ws, result, now)
        folder = archive_dir(ws, code, dataset)
        folder.mkdir(parents=True, exist_ok=True)
        stamp = now.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        os.replace(path, folder / f"{stamp}-{path.name}")
        log.info(
            "inbox %s/%s: %s: %d accepted, %d rejected%s",
            code,
            dataset,
            path.name,
            result.accepted,
            len(result.rejected),
            f" (file refused: {result.refused})" if result.refused else "",
            extra={"event": "inbox-file", "subscriber": code, "file": path.name},
        )
        report.files.append(result)
    return report
