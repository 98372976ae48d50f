"""The server role: listeners, one thread per session, and a clean stop that loses no record.

A session runs in its own thread (pyftpdlib's ThreadedFTPServer), so a slow password hash or a
database look-up at login holds up that session only. The explicit listener and the optional
implicit-TLS one share one accepting loop, one ban list and one recorder.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from pyftpdlib.ioloop import IOLoop
from pyftpdlib.servers import ThreadedFTPServer

from mutapub.ftps_server.authorizer import Guard
from mutapub.ftps_server.handler import build_handler
from mutapub.ftps_server.settings import FtpsSettings
from mutapub.ftps_server.tracking import Recorder, Store
from mutapub.mutations.workspace import Workspace

log = logging.getLogger(__name__)


class SessionServer(ThreadedFTPServer):
    """A listener whose sessions each run in a thread."""

    def __init__(self, address: Any, handler: Any, ioloop: Any = None, backlog: int = 100) -> None:
        # pyftpdlib keeps the stop event and the lock as class attributes, shared by every server of
        # the process: stopping one would end the sessions of all. Each server gets its own.
        self._lock = threading.Lock()
        self._exit = threading.Event()
        super().__init__(address, handler, ioloop=ioloop, backlog=backlog)

    def _loop(self, handler: Any) -> None:
        """A session's thread. One already closed before its thread started (a banned address is
        answered with 421 at once) ends here: pyftpdlib would register its stale socket number with
        the thread's new poller, which may hold that very number, and the thread would die on EINVAL."""
        if handler._closed:
            return
        super()._loop(handler)

    def handle_accepted(self, sock: Any, addr: Any) -> Any:
        """Refuse a connection past `max_cons`: pyftpdlib's threaded server counts the running sessions
        without the new one, so it admits max_cons + 1."""
        if self.max_cons and self._map_len() >= self.max_cons:
            try:
                sock.sendall(b"421 Too many connections. Service temporarily unavailable.\r\n")
            except OSError:
                pass
            finally:
                sock.close()
            return None
        return super().handle_accepted(sock, addr)


@dataclass
class Running:
    """A started server: its listeners, their addresses, and what `stop` must flush."""

    servers: list[SessionServer]
    ioloop: Any
    recorder: Recorder
    thread: threading.Thread | None = None
    addresses: list[tuple[str, int]] = field(default_factory=list)
    halt: threading.Event = field(default_factory=threading.Event)

    def loop_until_halted(self) -> None:
        """Run the accepting loop in short rounds until `halt` is set (the loop is not thread-safe, so
        it is stopped before another thread closes it)."""
        while not self.halt.is_set():
            self.ioloop.loop(timeout=0.2, blocking=False)

    def stop(self) -> None:
        """Close every session (their transfers are recorded as they ended), then flush every record."""
        self.halt.set()
        if self.thread is not None:
            self.thread.join(10)
        for server in self.servers:
            server._exit.set()
        for server in self.servers:
            server.close_all()
        self.recorder.stop()


def start(
    ws: Workspace, settings: FtpsSettings, *, recorder: Recorder | None = None, background: bool = False
) -> Running:
    """Bind the listeners and start the recorder; with `background`, serve in a thread (for tests)."""
    recorder = recorder or Recorder(
        ws.sessions, ws.home / "ftps" / "tracking.journal", settings.tracking_queue_size
    )
    store = Store(ws.sessions, ws.publish_dir, recorder)
    guard = Guard(settings.ban_after_failures, settings.ban_seconds)
    ioloop = IOLoop()  # never pyftpdlib's process-wide IOLoop.instance()
    listeners = [(settings.port, False)]
    if settings.implicit_port:
        listeners.append((settings.implicit_port, True))
    servers = []
    for port, implicit in listeners:
        handler = build_handler(settings, store, implicit=implicit, guard=guard)
        server = SessionServer((settings.host, port), handler, ioloop=ioloop)
        server.max_cons = settings.max_connections
        server.max_cons_per_ip = settings.max_connections_per_ip
        servers.append(server)
    if len(servers) > 1:
        servers[1].ip_map = servers[0].ip_map  # one per-address count over both listeners
    ws.publish_dir.mkdir(parents=True, exist_ok=True)
    recorder.start()
    running = Running(servers, ioloop, recorder, addresses=[tuple(s.address) for s in servers])
    if background:
        running.thread = threading.Thread(target=running.loop_until_halted, name="mutapub-ftps", daemon=True)
        running.thread.start()
    return running


@contextmanager
def _stop_on_signals() -> Iterator[None]:
    """SIGTERM and SIGINT end the accepting loop once; a second signal during shutdown is ignored."""

    def handler(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        raise KeyboardInterrupt

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def serve(ws: Workspace, settings: FtpsSettings, announce: Callable[[str], None]) -> None:
    """Serve until SIGTERM/SIGINT, announcing `listening on HOST:PORT` per listener, then stop cleanly."""
    running = start(ws, settings)
    for (host, port), server in zip(running.addresses, running.servers, strict=True):
        implicit = " (implicit TLS)" if getattr(server.handler, "implicit", False) else ""
        announce(f"listening on {host}:{port}{implicit}")
    with _stop_on_signals():
        try:
            running.ioloop.loop(timeout=1.0, blocking=True)
        except KeyboardInterrupt:
            log.info("stopping: closing sessions and flushing records")
        finally:
            running.stop()
    log.info("stopped: %d record(s) written", running.recorder.written)
