"""What a subscriber sees: `/outbox` (its files, read-only) and `/inbox` (its uploads), nothing else.

The home is `publish/<code>`. Paths are checked on their real location (symlinks resolved), so `..`,
absolute paths and links lead nowhere outside the two areas. Dot files are never shown nor reachable:
uploads are written as `.<name>.<random>.part` and renamed to their name only when complete.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from typing import Any

from pyftpdlib.exceptions import FilesystemError
from pyftpdlib.filesystems import AbstractedFS

AREAS = ("inbox", "outbox")


class SubscriberFS(AbstractedFS):
    """pyftpdlib's filesystem role for one subscriber session."""

    def __init__(self, root: str, cmd_channel: Any) -> None:
        super().__init__(os.path.realpath(root), cmd_channel)
        self.uploads: dict[str, str] = {}  # temporary path -> final path

    # --- where a path may lead

    def area(self, path: str) -> str | None:
        """`"inbox"` or `"outbox"` for a real path inside one of them, `""` for the home itself, else None."""
        real = os.path.realpath(path)
        if real == self.root:
            return ""
        rel = os.path.relpath(real, self.root)
        parts = rel.split(os.sep)
        if parts[0] not in AREAS or any(p.startswith(".") for p in parts):
            return None
        return parts[0]

    def validpath(self, path: str) -> bool:
        """Whether `path` resolves to the home, or to a visible entry of its inbox or outbox."""
        return self.area(path) is not None

    def chdir(self, path: str) -> None:
        """Change the session's directory. pyftpdlib's os.chdir changes the whole process's directory,
        which a threaded server shares between sessions; a session's directory is only `cwd` here."""
        if not self.validpath(path) or not os.path.isdir(path):
            raise FilesystemError("No such directory")
        self.cwd = self.fs2ftp(path)

    def listdir(self, path: str) -> list[str]:
        """The visible names in a directory: `inbox` and `outbox` at home; no dot files or links."""
        if self.area(path) is None:
            raise FilesystemError("No such directory")
        if os.path.realpath(path) == self.root:
            return [a for a in AREAS if os.path.isdir(os.path.join(path, a))]
        return [
            name
            for name in os.listdir(path)
            if not name.startswith(".") and not os.path.islink(os.path.join(path, name))
        ]

    listdirinfo = listdir

    def format_mlsx(self, basedir: str, listing: Any, perms: str, facts: Any, ignore_err: bool = True) -> Any:
        """MLSD/MLST facts with the permissions of the directory listed, not the session's union."""
        perms = self.cmd_channel.authorizer.perms_for(self.cmd_channel.username, basedir)
        for line in super().format_mlsx(basedir, listing, perms, facts, ignore_err):
            # pyftpdlib writes Python 3's oct(): "unix.mode=0o644", which clients (lftp's mirror) read
            # as no permission at all; RFC 3659 implementations write "0644".
            if isinstance(line, bytes):
                yield line.replace(b"unix.mode=0o", b"unix.mode=0")
            else:
                yield line.replace("unix.mode=0o", "unix.mode=0")

    def get_user_by_uid(self, uid: int) -> str:
        """Listings name no server account."""
        return "mutapub"

    def get_group_by_gid(self, gid: int) -> str:
        """Listings name no server group."""
        return "mutapub"

    # --- reading and uploading

    def open(self, filename: str, mode: str) -> Any:
        """Read anything visible; write only new files in the inbox, under a temporary name."""
        if mode == "rb":
            return open(filename, "rb")
        if mode != "wb" or self.area(os.path.dirname(filename)) != "inbox":
            raise FilesystemError("Not allowed: uploads go to /inbox as new files, never appended or resumed")
        if os.path.lexists(filename):
            raise FilesystemError("File exists: an upload never replaces a file")
        directory, name = os.path.split(filename)
        tmp = os.path.join(directory, f".{name}.{secrets.token_hex(6)}.part")
        fh = open(tmp, "xb")  # noqa: SIM115 - the data channel closes it when the upload ends
        self.uploads[tmp] = filename
        return fh

    def finish_upload(self, tmp: str) -> tuple[str, bool]:
        """Give a completed upload its name (never replacing a file); the final path and whether it did."""
        final = self.uploads.pop(tmp, tmp)
        try:
            # link() fails if the name exists, where rename() would silently replace it.
            os.link(tmp, final)
        except FileExistsError:
            os.unlink(tmp)
            return final, False
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV):
                raise
            if os.path.lexists(final):
                os.unlink(tmp)
                return final, False
            os.rename(tmp, final)
            return final, True
        os.unlink(tmp)
        return final, True

    def discard_upload(self, tmp: str) -> str:
        """Remove an incomplete upload; its final path."""
        final = self.uploads.pop(tmp, tmp)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        return final

    # Nothing is ever created, removed or changed any other way (the authorizer grants none of it
    # either; this is the second lock on the same door).
    def _refuse(self, *args: Any, **kwargs: Any) -> Any:
        raise FilesystemError("Not allowed")

    mkstemp = mkdir = rmdir = remove = rename = chmod = utime = _refuse
