"""The `ftps` benchmark of run.py: mutapub's FTPS server against a bare pyftpdlib TLS server.

    python benchmarks/run.py --only ftps             # the benchmark (calls `compare` below)
    python benchmarks/ftps_bench.py setup HOME --big-mb 500 --small N --subscribers S
    python benchmarks/ftps_bench.py bare HOME        # the anchor server; prints `listening on HOST:PORT`
    python benchmarks/ftps_bench.py download PORT SPEC.json
    python benchmarks/ftps_bench.py sessions PORT SPEC.json --procs P
    python benchmarks/ftps_bench.py check HOME

Both servers serve the same workspace: the same certificate, the same subscribers with the same scrypt
hashes, the same published files (real Delivery rows). The anchor is pyftpdlib's ThreadedFTPServer and
TLS_FTPHandler as its documentation shows them, with an authorizer whose validate_authentication runs
mutapub's `verify_password`: no database at login, no tracking, no virtual filesystem, no overridden
command. mutapub's is `mutapub serve`, as an operator runs it. Clients are other processes (ftplib's
FTP_TLS, PROT P, TYPE I), started only after both servers listen; the two servers' repetitions are
interleaved and each keeps its best. Only the standard library is imported at module level: run.py
imports this module and must stay small.
"""

from __future__ import annotations

import argparse
import ftplib
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

HERE = Path(__file__).resolve().parent
PASSWORD = "Bench-ftps-pass-123!"
MB = 10**6
BIG_MB = 500  # the "one 500 MB download"
SESSIONS = 100  # "100 concurrent sessions each logging in and downloading 1 MB"
SMALL_BYTES = 1 * MB
SUBSCRIBERS = 10  # the sessions log in as 10 subscribers, 10 sessions each
CLIENT_PROCS = 4  # the 100 sessions are threads of this many client processes
GOAL = 0.10  # "mutapub within 10 % of the bare server on both"
# The workspace's defaults limit a source address to 16 sessions and use a fixed passive range; the
# clients all come from 127.0.0.1 and the anchor takes any free port, so both are lifted here.
SERVER_ENV = {"MUTAPUB_FTPS_MAX_CONNECTIONS_PER_IP": "0", "MUTAPUB_FTPS_PASSIVE_PORTS": ""}


# --------------------------------------------------------------------------------------------------
# Set-up (child process)
# --------------------------------------------------------------------------------------------------


def _random_file(path: Path, size: int, block: bytes) -> str:
    """Write `size` bytes cycling through `block`; the file's SHA-256."""
    import hashlib

    digest = hashlib.sha256()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        left = size
        while left:
            chunk = block[: min(left, len(block))]
            fh.write(chunk)
            digest.update(chunk)
            left -= len(chunk)
    return digest.hexdigest()


def cmd_setup(args: argparse.Namespace) -> None:
    """Subscribers s00…, one big published delivery for s00 and `--small` 1 MB ones spread over all."""
    import datetime as dt

    from sqlalchemy import insert, select

    from mutapub.mutations import subscribers
    from mutapub.mutations.audit import AuditContext
    from mutapub.mutations.models import Delivery, Snapshot, Subscriber, utcnow
    from mutapub.mutations.workspace import open_workspace

    ws = open_workspace(args.home)
    ctx = AuditContext(actor="benchmark", command="ftps_bench setup")
    codes = [f"s{i:02d}" for i in range(args.subscribers)]
    # s00's big file is its delivery 1; the small files are deliveries 2… of every subscriber in turn.
    plan = [(codes[0], 1, args.big_mb * MB)]
    seqs = dict.fromkeys(codes, 1)
    for i in range(args.small):
        code = codes[i % len(codes)]
        seqs[code] += 1
        plan.append((code, seqs[code], SMALL_BYTES))
    start = dt.datetime(2025, 10, 1, 6, tzinfo=dt.UTC)
    with ws.sessions() as s, s.begin():
        for code in codes:
            subscribers.add(s, ctx, code, password=PASSWORD, **subscribers.settings(name=code))
        ids = dict(s.execute(select(Subscriber.code, Subscriber.id)).all())
        # One snapshot per day, as daily deliveries have (one delivery per subscriber, dataset, snapshot).
        s.execute(
            insert(Snapshot),
            [
                {
                    "dataset": "persons",
                    "snapshot_date": start.date() + dt.timedelta(days=n),
                    "source": "ftps_bench",
                    "sha256": "0" * 64,
                    "rows": 0,
                    "path": f"snapshots/persons/ftps_bench-{n}.parquet",
                    "schema_version": 1,
                }
                for n in range(max(seqs.values()))
            ],
        )
        by_seq = list(s.scalars(select(Snapshot.id).order_by(Snapshot.snapshot_date)))

    block = os.urandom(16 * MB)
    rows: list[dict[str, Any]] = []
    files: list[dict[str, Any]] = []
    for n, (code, seq, size) in enumerate(plan):
        moment = start + dt.timedelta(days=seq - 1)
        name = f"{code}_persons-mutaties_{moment:%Y%m%d%H%M%S}000_{seq:06d}.csv.gz"
        rel = f"{code}/outbox/persons/{name}"
        sha = _random_file(ws.publish_dir / rel, size, block[n:])  # no two files alike
        files.append({"user": code, "path": f"/outbox/persons/{name}", "size": size, "sha256": sha})
        rows.append(
            {
                "subscriber_id": ids[code],
                "dataset": "persons",
                "seq": seq,
                "previous_seq": seq - 1 or None,
                "kind": "initial" if seq == 1 else "delta",
                "snapshot_id": by_seq[seq - 1],
                "status": "published",
                "file_name": name,
                "path": rel,
                "generated_at": moment,
                "reference": f"00000000-0000-4000-8000-{n:012d}",
                "format": "csv",
                "compression": "gzip",
                "csv_delimiter": ";",
                "schema_version": 1,
                "policy_at": moment,
                "fields": ["insz"],
                "grants": [],
                "rows": 0,
                "size": size,
                "sha256": sha,
                "created_at": utcnow(),
                "published_at": utcnow(),
            }
        )
    with ws.sessions() as s, s.begin():
        s.execute(insert(Delivery), rows)
    spec = {"password": PASSWORD, "big": files[0], "small": files[1:]}
    (Path(args.home) / "ftps_bench.json").write_text(json.dumps(spec, indent=1), encoding="utf-8")
    print(json.dumps({"subscribers": len(codes), "deliveries": len(rows)}))


def cmd_check(args: argparse.Namespace) -> None:
    """What mutapub's server recorded: transfers (complete or not), logins, deliveries downloaded."""
    from sqlalchemy import func, select

    from mutapub.mutations.models import Delivery, Login, Transfer
    from mutapub.mutations.workspace import open_workspace

    ws = open_workspace(args.home)
    with ws.sessions() as s:
        out = {
            "transfers": s.scalar(select(func.count()).select_from(Transfer)),
            "transfers_complete": s.scalar(
                select(func.count()).select_from(Transfer).where(Transfer.complete.is_(True))
            ),
            "transfers_linked": s.scalar(
                select(func.count()).select_from(Transfer).where(Transfer.delivery_id.is_not(None))
            ),
            "logins_ok": s.scalar(select(func.count()).select_from(Login).where(Login.ok.is_(True))),
            "logins_refused": s.scalar(select(func.count()).select_from(Login).where(Login.ok.is_(False))),
            "deliveries_downloaded": s.scalar(
                select(func.count()).select_from(Delivery).where(Delivery.first_downloaded_at.is_not(None))
            ),
        }
    print(json.dumps(out))


# --------------------------------------------------------------------------------------------------
# The anchor: a bare pyftpdlib TLS server (child process)
# --------------------------------------------------------------------------------------------------


def cmd_bare(args: argparse.Namespace) -> None:
    """pyftpdlib's threaded TLS server over the same homes, with mutapub's scrypt check at login."""
    from pyftpdlib.authorizers import AuthenticationFailed, DummyAuthorizer
    from pyftpdlib.handlers import TLS_FTPHandler
    from pyftpdlib.servers import ThreadedFTPServer
    from sqlalchemy import select

    from mutapub.mutations.models import Subscriber
    from mutapub.mutations.subscribers import verify_password
    from mutapub.mutations.workspace import open_workspace

    ws = open_workspace(args.home)
    with ws.sessions() as s:
        hashes = dict(s.execute(select(Subscriber.code, Subscriber.password_hash)).all())

    class ScryptAuthorizer(DummyAuthorizer):
        def validate_authentication(self, username: str, password: str, handler: Any) -> None:
            if not self.has_user(username) or not verify_password(password, hashes.get(username)):
                raise AuthenticationFailed("Authentication failed.")

    authorizer = ScryptAuthorizer()
    for code in hashes:
        authorizer.add_user(code, "", str(ws.publish_dir / code), perm="elr")

    class Handler(TLS_FTPHandler):
        certfile = str(ws.home / "certs" / "server.pem")
        keyfile = str(ws.home / "certs" / "server.key")
        tls_control_required = True
        tls_data_required = True

    Handler.authorizer = authorizer
    server = ThreadedFTPServer((args.host, 0), Handler)
    host, port = server.address[:2]
    print(f"listening on {host}:{port}", flush=True)

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    server.serve_forever(timeout=1.0)


# --------------------------------------------------------------------------------------------------
# Clients (child processes)
# --------------------------------------------------------------------------------------------------


def _client_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the benchmark's self-signed certificate
    return ctx


def download(port: int, job: dict[str, Any], password: str, ctx: ssl.SSLContext, digest: bool) -> dict:
    """One session: connect, AUTH TLS, log in, PROT P, RETR one file; times relative to the start."""
    import hashlib

    r: dict[str, Any] = {"user": job["user"], "ok": False, "start": time.time()}
    t0 = time.perf_counter()
    received = 0
    first: list[float] = []
    sha = hashlib.sha256()

    def got(chunk: bytes) -> None:
        nonlocal received
        if not first:
            first.append(time.perf_counter())
        received += len(chunk)
        if digest:
            sha.update(chunk)

    try:
        ftp = ftplib.FTP_TLS(context=ctx, timeout=300)
        ftp.connect("127.0.0.1", port)
        r["connect_s"] = time.perf_counter() - t0
        ftp.auth()
        r["tls_s"] = time.perf_counter() - t0
        ftp.login(job["user"], password)
        r["login_s"] = time.perf_counter() - t0
        ftp.prot_p()
        ftp.voidcmd("TYPE I")
        t_retr = time.perf_counter()
        ftp.retrbinary("RETR " + job["path"], got, blocksize=1 << 16)
        t_end = time.perf_counter()
        r["cipher"] = ftp.sock.cipher()[0] if isinstance(ftp.sock, ssl.SSLSocket) else None
        ftp.quit()
        r["ttfb_s"] = (first[0] if first else t_end) - t0
        r["transfer_s"] = t_end - t_retr
        r["end_s"] = t_end - t0
        r["bytes"] = received
        if received != job["size"]:
            r["error"] = f"{received} bytes of {job['size']}"
        elif digest and sha.hexdigest() != job["sha256"]:
            r["error"] = "SHA-256 differs"
        else:
            r["ok"] = True
    except Exception as exc:
        r["error"] = f"{type(exc).__name__}: {exc}"
        r["end_s"] = time.perf_counter() - t0
    return r


def cmd_download(args: argparse.Namespace) -> None:
    """The big file, once: throughput over the RETR (command sent to 226 received)."""
    spec = json.loads(Path(args.spec).read_text(encoding="utf-8"))
    r = download(args.port, spec["big"], spec["password"], _client_context(), digest=False)
    print(json.dumps(r))
    if not r["ok"]:
        sys.exit(f"download failed: {r.get('error')}")


def cmd_session_worker(args: argparse.Namespace) -> None:
    """Sessions as threads, all starting at `--start-at` (time.time()); their results as JSON lines."""
    spec = json.loads(Path(args.spec).read_text(encoding="utf-8"))
    jobs = [spec["small"][int(i)] for i in args.jobs.split(",")]
    ctx = _client_context()
    results: list[dict[str, Any]] = [{} for _ in jobs]

    def run(k: int) -> None:
        time.sleep(max(0.0, args.start_at - time.time()))
        results[k] = download(args.port, jobs[k], spec["password"], ctx, digest=True)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps(results))


def cmd_sessions(args: argparse.Namespace) -> None:
    """`--count` concurrent sessions from `--procs` client processes, released at one moment."""
    spec = json.loads(Path(args.spec).read_text(encoding="utf-8"))
    count = min(args.count, len(spec["small"]))
    start_at = time.time() + args.lead
    slices = [list(range(p, count, args.procs)) for p in range(args.procs)]
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "session-worker", str(args.port), args.spec]
            + ["--start-at", repr(start_at), "--jobs", ",".join(map(str, s))],
            stdout=subprocess.PIPE,
            text=True,
        )
        for s in slices
        if s
    ]
    results: list[dict[str, Any]] = []
    for p in procs:
        out, _ = p.communicate()
        if p.returncode != 0:
            sys.exit(f"a client process failed ({p.returncode})")
        results += json.loads(out)
    late = max(r["start"] for r in results) - start_at
    ends = [r["start"] + r["end_s"] for r in results]
    ok = [r for r in results if r["ok"]]
    ttfb = sorted(r["ttfb_s"] for r in ok)
    login = sorted(r["login_s"] for r in ok)
    span = max(ends) - start_at
    print(
        json.dumps(
            {
                "sessions": count,
                "ok": len(ok),
                "failures": count - len(ok),
                "errors": sorted({r["error"] for r in results if not r["ok"]})[:5],
                "span_s": span,
                "sessions_per_s": len(ok) / span,
                "ttfb_p50_s": _pct(ttfb, 50),
                "ttfb_p99_s": _pct(ttfb, 99),
                "login_p50_s": _pct(login, 50),
                "login_p99_s": _pct(login, 99),
                "after_login_p50_s": _pct(sorted(r["ttfb_s"] - r["login_s"] for r in ok), 50),
                "latest_start_s": late,
                "ciphers": sorted({r.get("cipher") or "?" for r in ok}),
            }
        )
    )


def _pct(sorted_values: Sequence[float], p: float) -> float | None:
    """The p-th percentile (nearest rank) of sorted values."""
    if not sorted_values:
        return None
    k = max(0, min(len(sorted_values) - 1, -(-len(sorted_values) * p // 100) - 1))
    return sorted_values[int(k)]


# --------------------------------------------------------------------------------------------------
# The comparison (in run.py's process: standard library only)
# --------------------------------------------------------------------------------------------------


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _peak_rss(pid: int) -> int:
    """A process's peak resident set size (VmHWM), bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


@dataclass
class Server:
    """A server process, its port and its log file."""

    name: str
    proc: subprocess.Popen[str]
    port: int
    logfile: IO[bytes]
    downloads: list[dict[str, Any]] = field(default_factory=list)
    sessions: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def start(cls, name: str, cmd: list[str], env: dict[str, str], logdir: Path) -> Server:
        logfile = open(logdir / f"{name}.log", "wb")  # noqa: SIM115 - closed by stop()
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=logfile, text=True)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("listening on "):
            proc.kill()
            sys.exit(f"FAILED: {name} server did not start: {line!r}; see {logfile.name}")
        return cls(name, proc, int(line.split()[-1].rsplit(":", 1)[1]), logfile)

    def stop(self) -> int:
        """SIGTERM, and wait for the exit (mutapub flushes its records first); the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            status = self.proc.wait(120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            status = self.proc.wait()
        self.logfile.close()
        return status


def _client(args: list[str]) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"FAILED: client {' '.join(args)}: {proc.stdout}{proc.stderr}")
    return json.loads(proc.stdout)


def _loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def _measured(server: Server, args: list[str]) -> dict[str, Any]:
    """A client run against `server`, with the server's CPU time over it (records written after included)."""
    cpu0 = _cpu_seconds(server.proc.pid)
    load = _loadavg()
    r = _client(args)
    time.sleep(0.5)  # mutapub's writer thread records what just ended; its CPU belongs to this run
    r["server_cpu_s"] = _cpu_seconds(server.proc.pid) - cpu0
    r["loadavg"] = load
    return r


def compare(
    data: Path,
    *,
    repeat: int,
    mutapub: list[str],
    env_of: Callable[[Path], dict[str, str]],
    log: Callable[[str], None],
    big_mb: int = BIG_MB,
    sessions: int = SESSIONS,
    procs: int = CLIENT_PROCS,
) -> tuple[list[str], dict[str, Any]]:
    """Set up the workspace, start both servers, run interleaved repetitions; the markdown and the data."""
    home = data / "ftps"
    shutil.rmtree(home, ignore_errors=True)
    env = {**env_of(home), **SERVER_ENV}
    t0 = time.perf_counter()
    for cmd in (["init"], ["certs", "selfsigned", "--host", "localhost"]):
        subprocess.run([*mutapub, *cmd], env=env, check=True, capture_output=True)
    made = _client(["setup", str(home), "--big-mb", str(big_mb), "--small", str(sessions)])
    log(f"ftps: workspace with {made['deliveries']} deliveries in {time.perf_counter() - t0:.1f} s")
    spec = str(home / "ftps_bench.json")
    logdir = home / "logs"
    logdir.mkdir()

    servers: list[Server] = []
    try:
        servers.append(
            Server.start("mutapub", [*mutapub, "serve", "--host", "127.0.0.1", "--port", "0"], env, logdir)
        )
        servers.append(Server.start("bare", [sys.executable, __file__, "bare", str(home)], env, logdir))
        for rep in range(repeat):
            order = servers if rep % 2 == 0 else servers[::-1]
            for s in order:
                r = _measured(s, ["download", str(s.port), spec])
                r["mb_per_s"] = r["bytes"] / MB / r["transfer_s"]
                s.downloads.append(r)
                log(
                    f"ftps rep {rep + 1}/{repeat} {s.name}: {big_mb} MB in {r['transfer_s']:.2f} s = "
                    f"{r['mb_per_s']:.0f} MB/s, server CPU {r['server_cpu_s']:.2f} s (load {r['loadavg']})"
                )
            for s in order:
                args = ["sessions", str(s.port), spec, "--count", str(sessions), "--procs", str(procs)]
                r = _measured(s, args)
                s.sessions.append(r)
                log(
                    f"ftps rep {rep + 1}/{repeat} {s.name}: {r['ok']}/{r['sessions']} sessions in "
                    f"{r['span_s']:.2f} s = {r['sessions_per_s']:.1f}/s, TTFB p50 {r['ttfb_p50_s']:.2f} "
                    f"p99 {r['ttfb_p99_s']:.2f} s (login p50 {r['login_p50_s']:.2f}), server CPU "
                    f"{r['server_cpu_s']:.2f} s, failures {r['failures']} {r['errors']} (load {r['loadavg']})"
                )
        peaks = {s.name: _peak_rss(s.proc.pid) for s in servers}
    finally:
        statuses = {s.name: s.stop() for s in servers}
    if statuses.get("mutapub") != 0:
        sys.exit(f"FAILED: mutapub serve exited with {statuses['mutapub']}; see {logdir}/mutapub.log")

    mp, bare = servers
    recorded = _client(["check", str(home)])
    expected = len(mp.downloads) + sum(r["sessions"] for r in mp.sessions)
    if recorded["transfers_complete"] != sum(1 for r in mp.downloads if r["ok"]) + sum(
        r["ok"] for r in mp.sessions
    ):
        sys.exit(f"FAILED: mutapub recorded {recorded} for {expected} downloads")
    shutil.rmtree(home, ignore_errors=True)
    return _report(mp, bare, peaks, recorded, big_mb=big_mb, sessions=sessions, procs=procs, repeat=repeat)


def _report(
    mp: Server,
    bare: Server,
    peaks: dict[str, int],
    recorded: dict[str, int],
    *,
    big_mb: int,
    sessions: int,
    procs: int,
    repeat: int,
) -> tuple[list[str], dict[str, Any]]:
    def best_dl(s: Server) -> dict[str, Any]:
        return max(s.downloads, key=lambda r: r["mb_per_s"])

    def best_ss(s: Server) -> dict[str, Any]:
        return max(s.sessions, key=lambda r: r["sessions_per_s"])

    def higher(a: float, b: float) -> str:  # higher is better: goal a / b ≥ 1 - GOAL
        return f"{a / b:.2f} {'✓' if a / b >= 1 - GOAL else '✗'}"

    def lower(a: float, b: float) -> str:  # lower is better: goal a / b ≤ 1 + GOAL
        return f"{a / b:.2f} {'✓' if a / b <= 1 + GOAL else '✗'}"

    dm, db_ = best_dl(mp), best_dl(bare)
    sm, sb = best_ss(mp), best_ss(bare)
    fails_m = sum(r["failures"] for r in mp.sessions)
    fails_b = sum(r["failures"] for r in bare.sessions)
    cpu_m = min(r["server_cpu_s"] for r in mp.sessions) / sessions * 1000
    cpu_b = min(r["server_cpu_s"] for r in bare.sessions) / sessions * 1000
    dcpu_m, dcpu_b = (
        min(r["server_cpu_s"] for r in mp.downloads),
        min(r["server_cpu_s"] for r in bare.downloads),
    )
    ciphers = sorted({dm.get("cipher") or "?", db_.get("cipher") or "?", *sm["ciphers"], *sb["ciphers"]})
    md = [
        "### FTPS: mutapub's server against a bare pyftpdlib TLS server",
        "",
        f"Both serve one workspace on loopback: same certificate, same subscribers and scrypt hashes, same "
        f"published files. mutapub = `mutapub serve` (per-IP limit and passive range lifted for the "
        f"benchmark). Anchor = pyftpdlib `ThreadedFTPServer` + `TLS_FTPHandler`, an authorizer running "
        f"the same `verify_password`, no tracking, no virtual filesystem. Clients are ftplib `FTP_TLS` "
        f"(PROT P, TYPE I) in other processes: (1) one {big_mb} MB download, throughput over the RETR; "
        f"(2) {sessions} sessions released at once from {procs} client processes, each connecting, "
        f"logging in and downloading 1 MB (SHA-256 checked); time to first byte from the TCP connect. "
        f"Best of {repeat} interleaved repetitions per side; server CPU = the server process's user + "
        f"system time over the run (best). Negotiated: {', '.join(ciphers)}. Goal: zero failures and "
        f"mutapub within {GOAL:.0%} of the anchor.",
        "",
        "| test | measure | mutapub | bare pyftpdlib | mutapub / bare |",
        "|---|---|---:|---:|---:|",
        f"| one {big_mb} MB download | throughput MB/s | {dm['mb_per_s']:.0f} | {db_['mb_per_s']:.0f} | "
        f"{higher(dm['mb_per_s'], db_['mb_per_s'])} |",
        f"| | server CPU s | {dcpu_m:.2f} | {dcpu_b:.2f} | {dcpu_m / dcpu_b:.2f} |",
        f"| {sessions} concurrent sessions × 1 MB | sessions/s | {sm['sessions_per_s']:.1f} | "
        f"{sb['sessions_per_s']:.1f} | {higher(sm['sessions_per_s'], sb['sessions_per_s'])} |",
        f"| | time to first byte p50 s | {sm['ttfb_p50_s']:.2f} | {sb['ttfb_p50_s']:.2f} | "
        f"{lower(sm['ttfb_p50_s'], sb['ttfb_p50_s'])} |",
        f"| | time to first byte p99 s | {sm['ttfb_p99_s']:.2f} | {sb['ttfb_p99_s']:.2f} | "
        f"{lower(sm['ttfb_p99_s'], sb['ttfb_p99_s'])} |",
        f"| | of which login (p50) s | {sm['login_p50_s']:.2f} | {sb['login_p50_s']:.2f} | "
        f"{sm['login_p50_s'] / sb['login_p50_s']:.2f} |",
        f"| | login to first byte (p50) s | {sm['after_login_p50_s']:.2f} | {sb['after_login_p50_s']:.2f} | "
        f"{sm['after_login_p50_s'] / sb['after_login_p50_s']:.2f} |",
        f"| | failures (all repetitions) | {fails_m} {'✓' if not fails_m else '✗'} | {fails_b} | |",
        f"| | server CPU ms per session | {cpu_m:.0f} | {cpu_b:.0f} | {cpu_m / cpu_b:.2f} |",
        f"| | server peak RSS MiB | {peaks['mutapub'] / (1 << 20):,.0f} | {peaks['bare'] / (1 << 20):,.0f} "
        f"| {peaks['mutapub'] / peaks['bare']:.2f} |",
        "",
        f"mutapub recorded {recorded['transfers_complete']} complete transfers "
        f"({recorded['transfers_linked']} linked to their delivery) and {recorded['logins_ok']} logins.",
    ]
    data = {
        "big_mb": big_mb,
        "sessions": sessions,
        "client_processes": procs,
        "repeat": repeat,
        "ciphers": ciphers,
        "mutapub": {"downloads": mp.downloads, "sessions": mp.sessions, "peak_rss_bytes": peaks["mutapub"]},
        "bare": {"downloads": bare.downloads, "sessions": bare.sessions, "peak_rss_bytes": peaks["bare"]},
        "recorded": recorded,
        "throughput_ratio": round(dm["mb_per_s"] / db_["mb_per_s"], 3),
        "sessions_ratio": round(sm["sessions_per_s"] / sb["sessions_per_s"], 3),
        "ttfb_p50_ratio": round(sm["ttfb_p50_s"] / sb["ttfb_p50_s"], 3),
        "ttfb_p99_ratio": round(sm["ttfb_p99_s"] / sb["ttfb_p99_s"], 3),
        "failures": {"mutapub": fails_m, "bare": fails_b},
    }
    return md, data


# --------------------------------------------------------------------------------------------------
# Command line (of the child processes)
# --------------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("setup")
    p.add_argument("home", type=Path)
    p.add_argument("--big-mb", type=int, default=BIG_MB)
    p.add_argument("--small", type=int, default=SESSIONS)
    p.add_argument("--subscribers", type=int, default=SUBSCRIBERS)
    p.set_defaults(fn=cmd_setup)
    p = sub.add_parser("bare")
    p.add_argument("home", type=Path)
    p.add_argument("--host", default="127.0.0.1")
    p.set_defaults(fn=cmd_bare)
    p = sub.add_parser("check")
    p.add_argument("home", type=Path)
    p.set_defaults(fn=cmd_check)
    p = sub.add_parser("download")
    p.add_argument("port", type=int)
    p.add_argument("spec")
    p.set_defaults(fn=cmd_download)
    p = sub.add_parser("sessions")
    p.add_argument("port", type=int)
    p.add_argument("spec")
    p.add_argument("--count", type=int, default=SESSIONS)
    p.add_argument("--procs", type=int, default=CLIENT_PROCS)
    p.add_argument("--lead", type=float, default=2.0, help="seconds for the clients to start before release")
    p.set_defaults(fn=cmd_sessions)
    p = sub.add_parser("session-worker")
    p.add_argument("port", type=int)
    p.add_argument("spec")
    p.add_argument("--start-at", type=float, required=True)
    p.add_argument("--jobs", required=True)
    p.set_defaults(fn=cmd_session_worker)
    args = parser.parse_args(argv)
    args.fn(args)


if __name__ == "__main__":
    main()
