"""mutapub's benchmarks, each measured against an anchor in the same run: `make bench` or

    python benchmarks/run.py [--rows N] [--repeat R] [--large] [--only NAME ...] [--data DIR]
                             [--subscribers N] [--days D] [--postgres URL | --no-postgres]

Benchmarks: diff (ingest + diff against DuckDB), packaging (a delta published for N subscribers against
a pyarrow CSV floor), scaling (N versus 10·N followed-keys subscribers, same output), disclosures
(the disclosure query over D days × N subscribers, SQLite and PostgreSQL). A quick run of them all:
`--rows 100000 --subscribers 30 --days 60 --repeat 1`.

Prints markdown tables (with the machine they ran on) to paste into the README, and writes every
measurement as JSON (default /tmp/mutapub-bench/results.json). Benchmarks, not tests: nothing here
asserts a timing; a benchmark fails only when mutapub and its anchor disagree on the result.

Every measured step runs as its own process, as an operator runs it; wall time is taken around the
process and peak memory is the child's peak resident set size from wait4(2). The machine may be busy
(other people run tests on it), so the two sides' repetitions are interleaved, each side keeps its
best wall time, and what to read is the ratio within one run, not the absolute seconds.

A benchmark is a function `(Context) -> Report` registered in BENCHMARKS with @benchmark("name").
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DEFAULT_DATA = Path(tempfile.gettempdir()) / "mutapub-bench"
LARGE_ROWS = 10_000_000
LARGE_RSS_TARGET = 6 * 10**9  # bytes: "at 10,000,000 rows mutapub completes with peak RSS under 6 GB"
TIME_GOAL, MEMORY_GOAL = 1.5, 2.0  # mutapub within 1.5x of the anchor's wall time and 2x of its memory
MIB = 1 << 20


# --------------------------------------------------------------------------------------------------
# Running and measuring processes
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Measured:
    """One child process: its command, wall time (s), peak RSS (bytes), CPU time (s) and stdout."""

    label: str
    wall: float
    peak_rss: int
    cpu: float
    stdout: str

    def as_json(self) -> dict[str, Any]:
        """The measurement without its output."""
        return {
            "label": self.label,
            "wall_s": round(self.wall, 3),
            "peak_rss_bytes": self.peak_rss,
            "cpu_s": round(self.cpu, 3),
        }


GNU_TIME = Path("/usr/bin/time")


def rss_method() -> str:
    """How peak RSS is measured (see `measure`)."""
    return "GNU time %M" if GNU_TIME.exists() else "wait4 ru_maxrss (floored at this process's RSS)"


def measure(label: str, cmd: Sequence[str | Path], env: dict[str, str] | None = None) -> Measured:
    """Run cmd to completion; its wall time and peak RSS. A failing command stops the benchmark loudly.

    Peak RSS is the child's ru_maxrss. Linux carries the high-water mark of the address space a
    process had before exec(2) over into it, so a child forked straight from this Python would report
    at least this process's own peak; GNU time, a small C program, forks the command itself, so its
    figure is the command's own. Without it, the figure is floored at this process's RSS (kept small:
    data are generated in a child process).
    """
    with (
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
        tempfile.NamedTemporaryFile() as rss,
    ):
        argv = [str(c) for c in cmd]
        if GNU_TIME.exists():
            argv = [str(GNU_TIME), "-f", "%M", "-o", rss.name, *argv]
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=err, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait again
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
        timed = Path(rss.name).read_text().split()
    if proc.returncode != 0:
        sys.exit(
            f"FAILED ({label}): exit status {proc.returncode}: {' '.join(str(c) for c in cmd)}\n{stdout}{stderr}"
        )
    # Linux reports ru_maxrss in KiB, as GNU time's %M does; GNU time's last line is %M (after any notice).
    peak_kib = int(timed[-1]) if GNU_TIME.exists() else usage.ru_maxrss
    return Measured(label, wall, peak_kib * 1024, usage.ru_utime + usage.ru_stime, stdout)


def mutapub_command() -> list[str]:
    """The `mutapub` console script next to this Python (the project's venv), else the one on PATH."""
    script = Path(sys.executable).parent / "mutapub"
    if script.exists():
        return [str(script)]
    found = shutil.which("mutapub")
    if found is None:
        sys.exit("no `mutapub` command: run `make install` (or `pip install -e .`) first")
    return [found]


def workspace_env(home: Path) -> dict[str, str]:
    """The environment for mutapub in workspace `home`: no MUTAPUB_* setting leaks in from the caller."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MUTAPUB_")}
    env["MUTAPUB_HOME"] = str(home)
    return env


# --------------------------------------------------------------------------------------------------
# The machine
# --------------------------------------------------------------------------------------------------


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ram_bytes() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def _git_commit() -> str:
    try:
        head = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no", "--", "src"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + (" (src/ modified)" if dirty else "")


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    ram = _ram_bytes()
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": _cpu_model(),
        "cores": affinity,
        "ram_gib": round(ram / (1 << 30), 1) if ram else None,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "duckdb": _version("duckdb"),
        "pyarrow": _version("pyarrow"),
        "mutapub": _version("mutapub"),
        "commit": _git_commit(),
        "peak_rss_method": rss_method(),
        "loadavg_at_start": _loadavg(),
    }


def machine_line(m: dict[str, Any]) -> str:
    """The machine as one markdown line."""
    return (
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['ram_gib']} GiB RAM, {m['os']}; Python {m['python']}, "
        f"DuckDB {m['duckdb']}, PyArrow {m['pyarrow']}; mutapub {m['mutapub']} at {m['commit']}; "
        f"peak RSS by {m['peak_rss_method']}; load average {m['loadavg_at_start']} at start, {m.get('loadavg_at_end', '?')} at end."
    )


# --------------------------------------------------------------------------------------------------
# The registry
# --------------------------------------------------------------------------------------------------


@dataclass
class Context:
    """What every benchmark gets: the parsed arguments and a directory for its data."""

    args: argparse.Namespace
    data: Path


@dataclass
class Report:
    """A benchmark's markdown (lines to print) and its measurements (for the JSON file)."""

    markdown: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)


Benchmark = Callable[[Context], Report]
BENCHMARKS: dict[str, Benchmark] = {}


def benchmark(name: str) -> Callable[[Benchmark], Benchmark]:
    """Register a benchmark under `name` (for --only)."""

    def register(fn: Benchmark) -> Benchmark:
        BENCHMARKS[name] = fn
        return fn

    return register


def log(msg: str) -> None:
    """Progress on stderr, so stdout is only the markdown."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------------
# diff: the daily cost of a persons snapshot against DuckDB
# --------------------------------------------------------------------------------------------------

DAY1, DAY2 = "2025-09-30", "2025-10-01"


def persons_pair(data: Path, rows: int) -> tuple[Path, Path]:
    """The synthetic persons pair for `rows` rows, generated once and reused from `data`."""
    outdir = data / f"persons-{rows}"
    day1, day2 = outdir / "persons_day1.csv", outdir / "persons_day2.csv"
    done = outdir / ".complete"
    if done.exists() and day1.exists() and day2.exists():
        log(f"reusing {outdir}")
        return day1, day2
    log(f"generating {rows:,} persons in {outdir}")
    t0 = time.perf_counter()
    # In a child process: generating holds the whole table, and this process must stay small (see measure).
    subprocess.run(
        [sys.executable, HERE / "gen_persons.py", str(rows), str(outdir)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    done.write_text("seed=1 change_rate=0.005\n")
    log(f"generated in {time.perf_counter() - t0:.1f} s ({day2.stat().st_size / MIB:,.0f} MiB per file)")
    return day1, day2


@dataclass
class Side:
    """The repetitions of one side: each a list of measured processes (summed wall, max peak)."""

    name: str
    reps: list[list[Measured]] = field(default_factory=list)

    @staticmethod
    def wall(rep: list[Measured]) -> float:
        return sum(m.wall for m in rep)

    @staticmethod
    def peak(rep: list[Measured]) -> int:
        return max(m.peak_rss for m in rep)

    @property
    def best(self) -> list[Measured]:
        """The repetition with the least wall time."""
        return min(self.reps, key=self.wall)

    @property
    def best_wall(self) -> float:
        return self.wall(self.best)

    @property
    def max_peak(self) -> int:
        """Peak RSS over all repetitions (it hardly varies; the largest is the safe figure)."""
        return max(self.peak(r) for r in self.reps)

    def as_json(self) -> dict[str, Any]:
        return {
            "best_wall_s": round(self.best_wall, 3),
            "peak_rss_bytes": self.max_peak,
            "repetitions": [[m.as_json() for m in rep] for rep in self.reps],
        }


def _run_mutapub(
    template: Path, scratch: Path, day2: Path, rep: int
) -> tuple[list[Measured], dict[str, int]]:
    """Ingest day 2 and diff in a copy of the workspace holding day 1; the two processes and the counts."""
    home = scratch / f"ws-{rep}"
    shutil.rmtree(home, ignore_errors=True)
    shutil.copytree(template, home)
    env = workspace_env(home)
    mp = mutapub_command()
    try:
        ingest = measure(
            "mutapub snapshot ingest", [*mp, "snapshot", "ingest", "persons", day2, "--date", DAY2], env
        )
        diff = measure("mutapub diff", [*mp, "diff", "persons", "--json"], env)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    c = json.loads(diff.stdout)["counts"]
    return [ingest, diff], {k: int(c[k]) for k in ("I", "U", "D")}


def _run_anchor(day1: Path, day2: Path) -> tuple[list[Measured], dict[str, int]]:
    m = measure("anchor (DuckDB)", [sys.executable, HERE / "anchor_duckdb.py", day1, day2, "insz"])
    i, u, d = (int(x) for x in m.stdout.split())
    return [m], {"I": i, "U": u, "D": d}


def diff_at(ctx: Context, rows: int, repeat: int) -> dict[str, Any]:
    """Both sides at `rows` rows, `repeat` interleaved repetitions each; counts checked equal."""
    day1, day2 = persons_pair(ctx.data, rows)
    scratch = ctx.data / f"work-{rows}"
    template = scratch / "day1"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    mp = mutapub_command()
    env = workspace_env(template)
    measure("mutapub init", [*mp, "init"], env)
    log(f"{rows:,} rows: ingesting day 1 (not timed)")
    day1_ingest = measure(
        "mutapub snapshot ingest day 1", [*mp, "snapshot", "ingest", "persons", day1, "--date", DAY1], env
    )

    mutapub, anchor = Side("mutapub"), Side("anchor")
    seen: list[tuple[str, dict[str, int]]] = []
    try:
        for rep in range(repeat):
            order = ("mutapub", "anchor") if rep % 2 == 0 else ("anchor", "mutapub")
            for who in order:
                if who == "mutapub":
                    procs, counts = _run_mutapub(template, scratch, day2, rep)
                    mutapub.reps.append(procs)
                else:
                    procs, counts = _run_anchor(day1, day2)
                    anchor.reps.append(procs)
                seen.append((who, counts))
                log(
                    f"{rows:,} rows, repetition {rep + 1}/{repeat}, {who}: "
                    + ", ".join(f"{m.label} {m.wall:.2f} s {m.peak_rss / MIB:,.0f} MiB" for m in procs)
                    + f"; I/U/D {counts['I']}/{counts['U']}/{counts['D']}"
                )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    first = seen[0][1]
    if any(c != first for _, c in seen):
        sys.exit(
            "FAILED: mutapub and the anchor disagree on the change counts at "
            f"{rows:,} rows:\n" + "\n".join(f"  {who}: {c}" for who, c in seen)
        )
    best = mutapub.best
    return {
        "rows": rows,
        "csv_bytes": day2.stat().st_size,
        "counts": first,
        "day1_ingest": day1_ingest.as_json(),
        "mutapub": mutapub.as_json(),
        "mutapub_best_steps": [m.as_json() for m in best],
        "anchor": anchor.as_json(),
        "time_ratio": round(mutapub.best_wall / anchor.best_wall, 2),
        "memory_ratio": round(mutapub.max_peak / anchor.max_peak, 2),
    }


def _ok(value: float, goal: float) -> str:
    return f"{value:.2f} {'✓' if value <= goal else '✗'}"


@benchmark("diff")
def bench_diff(ctx: Context) -> Report:
    """mutapub's daily cost (ingest day 2 + diff against day 1) against a DuckDB anchor on the same CSVs."""
    args = ctx.args
    runs = [diff_at(ctx, args.rows, args.repeat)]
    if args.large and args.rows != LARGE_ROWS:
        runs.append(diff_at(ctx, LARGE_ROWS, 1))
    md = [
        "### Daily cost: ingest the new snapshot, diff it against the stored previous one",
        "",
        f"Synthetic persons snapshots (`mutapub.mutations.synthetic`, seed 1: shuffled rows, ~0.5 % updates, "
        f"0.1 % deletes, 0.15 % inserts). mutapub = `mutapub snapshot ingest persons day2.csv` + "
        f"`mutapub diff persons --json` (two processes, day 1 already ingested; wall = sum, peak = max); "
        f"anchor = `benchmarks/anchor_duckdb.py` (DuckDB reads both CSVs as text, hashes each row, "
        f"anti-joins and joins on the key). Best wall of {args.repeat} interleaved repetitions"
        + (f" (1 at {LARGE_ROWS:,} rows)" if len(runs) > 1 else "")
        + "; peak = peak RSS of the process. "
        + f"Goals: time ratio ≤ {TIME_GOAL}, memory ratio ≤ {MEMORY_GOAL}.",
        "",
        "| rows | I / U / D | mutapub wall s (ingest + diff) | mutapub peak MiB | anchor wall s | anchor peak MiB "
        f"| time ratio (≤ {TIME_GOAL}) | memory ratio (≤ {MEMORY_GOAL}) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        steps = " + ".join(f"{s['wall_s']:.2f}" for s in r["mutapub_best_steps"])
        c = r["counts"]
        md.append(
            f"| {r['rows']:,} | {c['I']:,} / {c['U']:,} / {c['D']:,} "
            f"| {r['mutapub']['best_wall_s']:.2f} ({steps}) | {r['mutapub']['peak_rss_bytes'] / MIB:,.0f} "
            f"| {r['anchor']['best_wall_s']:.2f} | {r['anchor']['peak_rss_bytes'] / MIB:,.0f} "
            f"| {_ok(r['time_ratio'], TIME_GOAL)} | {_ok(r['memory_ratio'], MEMORY_GOAL)} |"
        )
    for r in runs:
        if r["rows"] >= LARGE_ROWS:
            peak = r["mutapub"]["peak_rss_bytes"]
            verdict = "under" if peak < LARGE_RSS_TARGET else "OVER"
            md += [
                "",
                f"At {r['rows']:,} rows mutapub's peak RSS is {peak / 1e9:.2f} GB, {verdict} the "
                f"{LARGE_RSS_TARGET / 1e9:.0f} GB target; its daily cost took {r['mutapub']['best_wall_s']:.1f} s "
                f"(day-1 ingest: {r['day1_ingest']['wall_s']:.1f} s, {r['day1_ingest']['peak_rss_bytes'] / 1e9:.2f} GB).",
            ]
    return Report(md, {"runs": runs})


# --------------------------------------------------------------------------------------------------
# Publication: packaging a delta for many subscribers, its scaling, and the disclosure log
# --------------------------------------------------------------------------------------------------

PUB = HERE / "publication_bench.py"
CHANGE_SHARE = 0.05  # the 50,000 changes in 1,000,000 rows
# synthetic.py adds 0.15 % births and 0.1 % emigrations on top of change_rate's updates
FIXED_CHANGE_RATE = 0.0025
PG_DEFAULT = "postgresql+psycopg://mutapub:mutapub@localhost/mutapub_test"
PG_BENCH_DB = "mutapub_bench"


def publication_pair(data: Path, rows: int) -> tuple[Path, Path, float]:
    """The persons pair whose change set is ~5 % of the rows (50,000 at 1,000,000), generated once."""
    rate = round(CHANGE_SHARE - FIXED_CHANGE_RATE, 6)
    outdir = data / f"persons-{rows}-cr{rate}"
    day1, day2 = outdir / "persons_day1.csv", outdir / "persons_day2.csv"
    done = outdir / ".complete"
    if not (done.exists() and day1.exists() and day2.exists()):
        log(f"generating {rows:,} persons with change_rate {rate} in {outdir}")
        subprocess.run(
            [sys.executable, HERE / "gen_persons.py", str(rows), str(outdir), "--change-rate", str(rate)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        done.write_text(f"seed=1 change_rate={rate}\n")
    return day1, day2, rate


def _helper(label: str, *argv: str | Path, env: dict[str, str] | None = None) -> Measured:
    return measure(label, [sys.executable, PUB, *argv], env)


def _mib(n: int) -> str:
    return f"{n / MIB:,.0f}"


def _purge_outboxes(home: Path) -> None:
    """Drop the published files of a template workspace (a delta publish never reads them): its copies
    then stay small, as after `mutapub retention purge`."""
    for f in (home / "publish").glob("*/outbox/*/*"):
        f.unlink()


def publication_template(
    ctx: Context, name: str, day1: Path, day2: Path, populate: Sequence[str]
) -> dict[str, Any]:
    """A workspace holding day 1 published (initial extracts, measured) and day 2 ingested, unpublished."""
    home = ctx.data / "publication" / name
    shutil.rmtree(home, ignore_errors=True)
    home.parent.mkdir(parents=True, exist_ok=True)
    env = workspace_env(home)
    mp = mutapub_command()
    measure("mutapub init", [*mp, "init"], env)
    ing1 = measure("ingest day 1", [*mp, "snapshot", "ingest", "persons", day1, "--date", DAY1], env)
    log(f"{name}: day 1 ingested in {ing1.wall:.1f} s; adding subscribers")
    pop = _helper("populate", "populate", home, "--day1", day1, *populate)
    log(f"{name}: subscribers added in {pop.wall:.1f} s; publishing the initial extracts")
    initial = measure("mutapub publish (initial)", [*mp, "publish"], env)
    shape_file = home.parent / f"{name}-initial.json"
    _helper("shape", "shape", home, shape_file)
    initial_shape = json.loads(shape_file.read_text())
    del initial_shape["files"]
    log(
        f"{name}: initial extracts: {initial_shape['deliveries']} files, {initial_shape['rows']:,} rows "
        f"in {initial.wall:.1f} s, {_mib(initial.peak_rss)} MiB"
    )
    _purge_outboxes(home)
    ing2 = measure("ingest day 2", [*mp, "snapshot", "ingest", "persons", day2, "--date", DAY2], env)
    log(f"{name}: day 2 ingested (change set computed) in {ing2.wall:.1f} s")
    return {"home": home, "initial": initial.as_json(), "initial_shape": initial_shape}


def _publish_delta(
    template: Path, rep: int, shape_file: Path | None = None
) -> tuple[Measured, dict[str, Any]]:
    """`mutapub publish` of day 2 in a copy of the template; the measurement and what it published."""
    home = template.parent / f"{template.name}-rep{rep}"
    shutil.rmtree(home, ignore_errors=True)
    shutil.copytree(template, home)
    try:
        m = measure("mutapub publish (delta)", [*mutapub_command(), "publish"], workspace_env(home))
        shape_file = shape_file or home.parent / f"{template.name}-delta.json"
        _helper("shape", "shape", home, shape_file)
        doc = json.loads(shape_file.read_text())
    finally:
        shutil.rmtree(home, ignore_errors=True)
    if doc["kinds"] != ["delta"] or doc["statuses"] != ["published"]:
        sys.exit(f"FAILED: the day-2 publish made {doc['kinds']} deliveries, {doc['statuses']}")
    return m, doc


def _sizes(args: argparse.Namespace) -> tuple[int, int, int]:
    """(subscribers, followed-keys subscribers among them, keys each): 300, 20, 10,000 at the defaults."""
    subs = args.subscribers
    followed = max(1, round(subs * 20 / 300))
    keys = max(10, args.rows // 100 // 10 * 10)  # a multiple of 10, for the scaling pair's split
    return subs, followed, keys


@benchmark("packaging")
def bench_packaging(ctx: Context) -> Report:
    """Day 2's delta packaged for every subscriber (`mutapub publish`), against a pyarrow CSV floor."""
    args = ctx.args
    subs, followed, keys = _sizes(args)
    day1, day2, rate = publication_pair(ctx.data, args.rows)
    name = f"packaging-{args.rows}-{subs}"
    populate = ["--subscribers", str(subs), "--followed", str(followed), "--keys", str(keys)]
    tpl = publication_template(ctx, name, day1, day2, populate)
    template: Path = tpl["home"]
    shape_file = template.parent / f"{name}-delta.json"
    mutapub, gz, plain = Side("mutapub"), Side("anchor gzip"), Side("anchor none")
    doc: dict[str, Any] = {}
    try:
        for rep in range(args.repeat):
            order = ["mutapub", "anchors"] if rep % 2 == 0 else ["anchors", "mutapub"]
            for who in order:
                if who == "mutapub":
                    m, doc = _publish_delta(template, rep, shape_file)
                    mutapub.reps.append([m])
                    log(f"packaging rep {rep + 1}: mutapub publish {m.wall:.2f} s {_mib(m.peak_rss)} MiB")
                    continue
                for side, comp in ((gz, "gzip"), (plain, "none")):
                    out = template.parent / f"anchor-{comp}"
                    shutil.rmtree(out, ignore_errors=True)
                    m = _helper(
                        f"anchor {comp}", "anchor", shape_file, out, "--home", template, "--compression", comp
                    )
                    shutil.rmtree(out, ignore_errors=True)
                    side.reps.append([m])
                    log(f"packaging rep {rep + 1}: anchor {comp} {m.wall:.2f} s {_mib(m.peak_rss)} MiB")
    finally:
        shutil.rmtree(template, ignore_errors=True)
    cs = doc["change_set"]
    changes = cs["I"] + cs["U"] + cs["D"]
    ishape = tpl["initial_shape"]
    md = [
        "### Packaging one delta for every subscriber",
        "",
        f"{args.rows:,}-row persons snapshots (synthetic, seed 1, change_rate {rate}): a change set of "
        f"{changes:,} changes ({cs['I']:,} I / {cs['U']:,} U / {cs['D']:,} D). {subs} subscribers: "
        f"{subs - followed} with municipality predicates (one municipality, a fifth two or three; every "
        f"tenth a second grant for a neighbour) and field-group subsets (the 7 combinations of identity / "
        f"address / civil_status), {followed} followed-keys grants of {keys:,} keys each; CSV, gzip. "
        f"mutapub = `mutapub publish` of day 2 (day 1's initial extracts published first), one process. "
        f"Anchor = `publication_bench.py anchor`: reads the change set and writes, per delivery, as many "
        f"rows with its columns as plain CSV with pyarrow (gzip level 6 or uncompressed), each file fsynced "
        f"and renamed — no selection, manifest or database. Best wall of {args.repeat} interleaved "
        f"repetitions; peak = peak RSS.",
        "",
        "| step | files | rows out (I / U / D) | MiB out | wall s | peak MiB | × anchor gzip | × anchor none |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        f"| initial extracts (day 1, once) | {ishape['deliveries']} | {ishape['rows']:,} | "
        f"{ishape['bytes'] / MIB:,.0f} | {tpl['initial']['wall_s']:.2f} | "
        f"{tpl['initial']['peak_rss_bytes'] / MIB:,.0f} | | |",
        f"| **delta (day 2): mutapub publish** | {doc['deliveries']} | {doc['rows']:,} "
        f"({doc['I']:,} / {doc['U']:,} / {doc['D']:,}) | {doc['bytes'] / MIB:,.1f} | "
        f"{mutapub.best_wall:.2f} | {_mib(mutapub.max_peak)} | "
        f"{mutapub.best_wall / gz.best_wall:.1f} | {mutapub.best_wall / plain.best_wall:.1f} |",
        f"| anchor: pyarrow CSV + gzip | {doc['deliveries']} | {doc['rows']:,} | | {gz.best_wall:.2f} | "
        f"{_mib(gz.max_peak)} | 1.0 | |",
        f"| anchor: pyarrow CSV, uncompressed | {doc['deliveries']} | {doc['rows']:,} | | "
        f"{plain.best_wall:.2f} | {_mib(plain.max_peak)} | | 1.0 |",
    ]
    del doc["files"]
    data = {
        "rows": args.rows,
        "change_rate": rate,
        "subscribers": subs,
        "followed_subscribers": followed,
        "keys_each": keys,
        "change_set": cs,
        "initial": {**tpl["initial"], **ishape},
        "delta": doc,
        "mutapub": mutapub.as_json(),
        "anchor_gzip": gz.as_json(),
        "anchor_none": plain.as_json(),
        "time_ratio_gzip": round(mutapub.best_wall / gz.best_wall, 2),
        "time_ratio_none": round(mutapub.best_wall / plain.best_wall, 2),
    }
    return Report(md, data)


SCALING_GOAL = 3.0


@benchmark("scaling")
def bench_scaling(ctx: Context) -> Report:
    """N versus 10·N followed-keys subscribers following the same subjects in all (same output)."""
    args = ctx.args
    small, _, keys = _sizes(args)
    large = small * 10
    day1, day2, _ = publication_pair(ctx.data, args.rows)
    templates = {}
    for n, split in ((small, 1), (large, 10)):
        populate = ["--subscribers", str(small), "--followed", str(small), "--keys", str(keys)]
        populate += ["--split", str(split)]
        templates[n] = publication_template(ctx, f"scaling-{args.rows}-{n}", day1, day2, populate)
    sides = {n: Side(str(n)) for n in templates}
    docs: dict[int, dict[str, Any]] = {}
    try:
        for rep in range(args.repeat):
            for n in (small, large) if rep % 2 == 0 else (large, small):
                m, docs[n] = _publish_delta(templates[n]["home"], rep)
                sides[n].reps.append([m])
                log(f"scaling rep {rep + 1}: {n} subscribers {m.wall:.2f} s {_mib(m.peak_rss)} MiB")
    finally:
        for t in templates.values():
            shutil.rmtree(t["home"], ignore_errors=True)
    if docs[small]["rows"] != docs[large]["rows"]:
        sys.exit(
            f"FAILED: the scaling pair's outputs differ: {docs[small]['rows']} vs {docs[large]['rows']} rows"
        )
    ratio = sides[large].best_wall / sides[small].best_wall
    mem_ratio = sides[large].max_peak / sides[small].max_peak
    md = [
        "### Scaling: the same output for 10× as many followed-keys subscribers",
        "",
        f"Day 2's delta of the {args.rows:,}-row pair above. {small} subscribers following {keys:,} subjects "
        f"each, versus {large} following {keys // 10:,} each: every key set of the first cut in ten, so the "
        f"same subjects are followed and the same rows delivered in all. Only followed-keys grants. "
        f"`mutapub publish` of day 2; best wall of {args.repeat} interleaved repetitions. "
        f"Goal: the {large} case under {SCALING_GOAL:.0f}× the {small} case.",
        "",
        "| subscribers × keys | initial extracts s (day 1) | initial peak MiB | delta files | delta rows out | "
        "delta wall s | delta peak MiB |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for n, k in ((small, keys), (large, keys // 10)):
        t = templates[n]
        md.append(
            f"| {n:,} × {k:,} | {t['initial']['wall_s']:.2f} | {t['initial']['peak_rss_bytes'] / MIB:,.0f} "
            f"| {docs[n]['deliveries']:,} | {docs[n]['rows']:,} | {sides[n].best_wall:.2f} | "
            f"{_mib(sides[n].max_peak)} |"
        )
    md += [
        "",
        f"Ratio {large} / {small}: wall {_ok(ratio, SCALING_GOAL)} (goal < {SCALING_GOAL:.0f}), "
        f"peak RSS {mem_ratio:.2f}.",
    ]
    for d in docs.values():
        d.pop("files", None)
    data = {
        "rows": args.rows,
        "cases": {
            str(n): {
                "subscribers": n,
                "keys_each": keys if n == small else keys // 10,
                "initial": templates[n]["initial"],
                "delta": docs[n],
                "mutapub": sides[n].as_json(),
            }
            for n in templates
        },
        "time_ratio": round(ratio, 2),
        "memory_ratio": round(mem_ratio, 2),
    }
    return Report(md, data)


DISCLOSURE_GOAL = 1.0


def _pg_url(args: argparse.Namespace) -> str | None:
    """A fresh database of the benchmark's own on the configured PostgreSQL, or None if unreachable."""
    if args.no_postgres:
        return None
    proc = subprocess.run(
        [sys.executable, PUB, "pg-database", args.postgres, PG_BENCH_DB], capture_output=True, text=True
    )
    if proc.returncode != 0:
        log(
            f"PostgreSQL skipped: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}"
        )
        return None
    return proc.stdout.strip()


def _disclosures_on(ctx: Context, backend: str, url: str | None) -> dict[str, Any]:
    args = ctx.args
    subs, days, population = args.subscribers, args.days, args.rows
    home = ctx.data / "publication" / f"disclosures-{backend}"
    shutil.rmtree(home, ignore_errors=True)
    home.parent.mkdir(parents=True, exist_ok=True)
    env = workspace_env(home)
    if url:
        env["MUTAPUB_DATABASE_URL"] = url
    mp = mutapub_command()
    measure("mutapub init", [*mp, "init"], env)
    log(f"disclosures on {backend}: loading {days} days × {subs} subscribers")
    load = _helper(
        "load",
        "load-disclosures",
        home,
        "--subscribers",
        str(subs),
        "--days",
        str(days),
        "--population",
        str(population),
        env=env,
    )
    loaded = json.loads(load.stdout)
    log(f"disclosures on {backend}: {loaded['disclosures']:,} rows loaded in {load.wall:.1f} s")
    subjects = _query_subjects(population, subs, days)
    inproc = json.loads(_helper("query", "query", home, *subjects.values(), env=env).stdout)
    procs: dict[str, Side] = {role: Side(role) for role in subjects}
    for _rep in range(max(args.repeat, 3)):
        for role, subject in subjects.items():
            m = measure(f"mutapub disclosures {role}", [*mp, "disclosures", subject, "--json"], env)
            hits = len(json.loads(m.stdout))
            if hits != inproc[subject]["hits"]:
                sys.exit(f"FAILED: {role} has {hits} hits by the CLI, {inproc[subject]['hits']} in-process")
            procs[role].reps.append([m])
    shutil.rmtree(home, ignore_errors=True)
    return {
        "backend": backend,
        "loaded": loaded,
        "load_wall_s": round(load.wall, 1),
        "plan": inproc["plan"],
        "subjects": {
            role: {
                "subject": subject,
                "hits": inproc[subject]["hits"],
                "query_first_s": round(inproc[subject]["first_s"], 4),
                "query_best_s": round(inproc[subject]["best_s"], 4),
                "process": procs[role].as_json(),
            }
            for role, subject in subjects.items()
        },
    }


def _query_subjects(population: int, subscribers: int, days: int) -> dict[str, str]:
    """The subjects publication_bench.py's loader planted (imported there; here through a child)."""
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import json, sys; sys.path.insert(0, sys.argv[1]); import publication_bench as p; "
            "print(json.dumps(p.query_subjects(*map(int, sys.argv[2:]), 11)))",
            str(HERE),
            str(population),
            str(subscribers),
            str(days),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


@benchmark("disclosures")
def bench_disclosures(ctx: Context) -> Report:
    """`mutapub disclosures SUBJECT --json` over a year of daily deliveries, on SQLite and PostgreSQL."""
    args = ctx.args
    runs = [_disclosures_on(ctx, "sqlite", None)]
    url = _pg_url(args)
    if url:
        runs.append(_disclosures_on(ctx, "postgresql", url))
    first = runs[0]["loaded"]
    md = [
        "### Disclosure log: one subject over a year of deliveries",
        "",
        f"{args.days} days × {args.subscribers} subscribers = {first['deliveries']:,} deliveries, each naming "
        f"50 to 500 subjects drawn uniformly from {args.rows:,} persons, plus a `heavy` subject in every "
        f"delivery of 3 % of the subscribers: {first['disclosures']:,} disclosure rows, bulk-loaded "
        f"(indexes rebuilt after; PostgreSQL analysed, as autovacuum would). Query = "
        f"`tracking.disclosures` in a warm process (best of 5; first call in brackets); process = "
        f"`mutapub disclosures SUBJECT --json`, best wall of {max(args.repeat, 3)}. "
        f"Goal: under {DISCLOSURE_GOAL:.0f} s.",
        "",
        "| database | subject | hits | query s (first) | process wall s | process peak MiB |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in runs:
        for role, s in r["subjects"].items():
            p = s["process"]
            md.append(
                f"| {r['backend']} | {role} | {s['hits']:,} | {s['query_best_s']:.3f} ({s['query_first_s']:.3f}) "
                f"| {_ok(p['best_wall_s'], DISCLOSURE_GOAL)} | {p['peak_rss_bytes'] / MIB:,.0f} |"
            )
    return Report(
        md, {"days": args.days, "subscribers": args.subscribers, "population": args.rows, "runs": runs}
    )


# --------------------------------------------------------------------------------------------------
# ftps: mutapub's FTPS server against a bare pyftpdlib TLS server (benchmarks/ftps_bench.py)
# --------------------------------------------------------------------------------------------------


@benchmark("ftps")
def bench_ftps(ctx: Context) -> Report:
    """One 500 MB download and 100 concurrent 1 MB sessions, mutapub's server against bare pyftpdlib."""
    import ftps_bench  # next to this script; standard library only at import, so this process stays small

    md, data = ftps_bench.compare(
        ctx.data, repeat=max(ctx.args.repeat, 3), mutapub=mutapub_command(), env_of=workspace_env, log=log
    )
    return Report(md, data)


# --------------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--rows", type=int, default=1_000_000, help="rows of the day-1 snapshot (default 1,000,000)"
    )
    parser.add_argument(
        "--repeat", type=int, default=2, help="repetitions per side; the best wall time is kept"
    )
    parser.add_argument(
        "--large", action="store_true", help=f"also run at {LARGE_ROWS:,} rows (peak RSS target)"
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=DEFAULT_DATA,
        help=f"cache of generated files and scratch space (default {DEFAULT_DATA})",
    )
    parser.add_argument(
        "--results", type=Path, default=None, help="JSON results file (default DATA/results.json)"
    )
    parser.add_argument(
        "--subscribers",
        type=int,
        default=300,
        help="subscribers of the publication benchmarks (default 300; scaling compares N with 10·N)",
    )
    parser.add_argument(
        "--days", type=int, default=365, help="days of deliveries in the disclosure log (default 365)"
    )
    parser.add_argument(
        "--postgres",
        default=os.environ.get("MUTAPUB_TEST_DATABASE_URL") or PG_DEFAULT,
        help=f"PostgreSQL server for the disclosure benchmark; it gets its own database {PG_BENCH_DB} "
        "(default $MUTAPUB_TEST_DATABASE_URL or the local test server)",
    )
    parser.add_argument("--no-postgres", action="store_true", help="disclosures on SQLite only")
    parser.add_argument(
        "--only",
        choices=sorted(BENCHMARKS),
        action="append",
        help="run only this benchmark (repeatable)",
    )
    args = parser.parse_args(argv)
    if args.rows < 1000 or args.repeat < 1 or args.subscribers < 1 or args.days < 2:
        parser.error("--rows must be at least 1000, --repeat and --subscribers 1, --days 2")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    """Run the selected benchmarks, print their markdown and write the JSON results."""
    args = parse_args(argv)
    args.data.mkdir(parents=True, exist_ok=True)
    ctx = Context(args, args.data)
    info = machine()
    names = args.only or list(BENCHMARKS)
    reports: dict[str, Report] = {}
    t0 = time.perf_counter()
    for name in names:
        log(f"benchmark {name}")
        reports[name] = BENCHMARKS[name](ctx)
    info["loadavg_at_end"] = _loadavg()
    elapsed = time.perf_counter() - t0

    for report in reports.values():
        print("\n".join(report.markdown))
        print()
    print(machine_line(info))
    print()
    print(f"Benchmarks took {elapsed:.0f} s in all.")

    results = args.results or args.data / "results.json"
    results.write_text(
        json.dumps(
            {
                "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "argv": sys.argv[1:] if argv is None else list(argv),
                "machine": info,
                "elapsed_s": round(elapsed, 1),
                "benchmarks": {name: r.data for name, r in reports.items()},
            },
            indent=2,
        )
        + "\n",
        encoding="utf-8",
    )
    log(f"results written to {results}")


if __name__ == "__main__":
    main()
