"""`make demo`: the main job end to end in a throw-away workspace, on generated and real register data."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mutapub.mutations.synthetic import write_persons_pair

ROOT = Path(__file__).resolve().parents[2]
KBO = ROOT / "examples" / "kbo"
PERSONS_ROWS = 300_000


def mutapub(*args: str, env: dict[str, str]) -> str:
    """Run one `mutapub` command as an operator would, echo it, and return its output."""
    print(f"$ mutapub {shlex.join(args)}", flush=True)
    result = subprocess.run(
        [sys.executable, "-m", "mutapub.mutations.cli", *args], env=env, capture_output=True, text=True
    )
    if result.returncode != 0:
        sys.stderr.write(result.stdout + result.stderr)
        raise SystemExit(f"demo failed at: mutapub {shlex.join(args)}")
    return result.stdout


def main() -> None:
    """Build a workspace, ingest two days of persons and the KBO extracts, compute change sets, summarise."""
    started = time.perf_counter()
    home = Path(tempfile.mkdtemp(prefix="mutapub-demo-"))
    env = {**os.environ, "MUTAPUB_HOME": str(home)}
    env.pop("MUTAPUB_DATABASE_URL", None)  # the demo always runs on the embedded SQLite database
    print(f"mutapub demo: workspace {home} (SQLite)\n")
    mutapub("init", env=env)

    print(f"\n# two days of a generated persons register ({PERSONS_ROWS:,} people, valid INSZ numbers)")
    day1, day2 = write_persons_pair(PERSONS_ROWS, home / "inbox")
    mutapub("snapshot", "ingest", "persons", str(day1), "--date", "2025-10-10", env=env)
    mutapub("snapshot", "ingest", "persons", str(day2), "--date", "2025-10-11", env=env)

    print("\n# the real KBO Open Data extracts: the full extract 146, then the daily update 147")
    for name in ("KboOpenData_0146_2025_10_11_Full.zip", "KboOpenData_0147_2025_10_12_Update.zip"):
        mutapub("snapshot", "ingest-kbo", str(KBO / name), env=env)

    print("\n# change sets")
    datasets = sorted({s["dataset"] for s in json.loads(mutapub("snapshot", "list", "--json", env=env))})
    summary = [json.loads(mutapub("diff", d, "--json", env=env)) for d in datasets]

    print("\nSummary")
    print(f"  {'dataset':<20} {'inserts':>8} {'updates':>8} {'deletes':>8}")
    for cs in summary:
        c = cs["counts"]
        print(f"  {cs['dataset']:<20} {c['I']:>8} {c['U']:>8} {c['D']:>8}")
    sample = json.loads(mutapub("changes", "show", str(summary[-1]["id"]), "--json", "--limit", "1", env=env))
    print(f"\nOne change of {summary[-1]['dataset']}: {json.dumps(sample[0], ensure_ascii=False)}")
    print(f"\nDone in {time.perf_counter() - started:.0f} s. Look around with:")
    print(f"  export MUTAPUB_HOME={home}")
    print("  .venv/bin/mutapub snapshot list")
    print("  .venv/bin/mutapub changes list")
    print(f"  .venv/bin/mutapub changes show {summary[0]['id']} --limit 20")


if __name__ == "__main__":
    main()
