"""`make bench` keeps working: every benchmark but the FTPS one runs at a tiny size, end to end.

No timing is asserted; a benchmark fails by itself when mutapub and its anchor disagree, or when a
command it runs exits non-zero (as `mutapub disclosures` would on a subject it no longer accepts).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_the_benchmarks_run_at_a_tiny_size(tmp_path: Path) -> None:
    only = ["diff", "packaging", "scaling", "disclosures"]
    command = [sys.executable, str(REPO / "benchmarks" / "run.py"), "--rows", "1000", "--repeat", "1"]
    command += ["--subscribers", "2", "--days", "2", "--no-postgres", "--data", str(tmp_path)]
    command += [arg for name in only for arg in ("--only", name)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert sorted(results["benchmarks"]) == sorted(only)
    assert "| rows |" in done.stdout  # the diff table, ready for the README
