"""`make demo`: the main job end to end in a throw-away workspace, on generated and real register data."""

from __future__ import annotations

import csv
import json
import os
import secrets
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
FOLLOWED = 500
CITY_NIS = "44021"  # Gent


def mutapub(*args: str, env: dict[str, str], stdin: str | None = None) -> str:
    """Run one `mutapub` command as an operator would, echo it, and return its output."""
    print(f"$ mutapub {shlex.join(args)}", flush=True)
    result = subprocess.run(
        [sys.executable, "-m", "mutapub.mutations.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        input=stdin,
    )
    if result.returncode != 0:
        sys.stderr.write(result.stdout + result.stderr)
        raise SystemExit(f"demo failed at: mutapub {shlex.join(args)}")
    return result.stdout


def _followed_persons(day1: Path, count: int) -> list[str]:
    """Every n-th person of day 1: the people a social-services agency follows."""
    with open(day1, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh, delimiter=";")
        keys = [r["insz"] for r in reader]
    step = max(1, len(keys) // count)
    return keys[::step][:count]


def main() -> None:
    """Build a workspace, subscribers and grants; ingest persons and KBO; publish; summarise."""
    started = time.perf_counter()
    home = Path(tempfile.mkdtemp(prefix="mutapub-demo-"))
    env = {**os.environ, "MUTAPUB_HOME": str(home), "MUTAPUB_ACTOR": "demo"}
    env.pop("MUTAPUB_DATABASE_URL", None)  # the demo always runs on the embedded SQLite database
    print(f"mutapub demo: workspace {home} (SQLite)\n")
    mutapub("init", env=env)

    print("\n# three subscribers with different grants")
    passwords = {code: secrets.token_urlsafe(12) for code in ("gent", "ocmw-gent", "voka")}
    for code, name in (("gent", "Stad Gent"), ("ocmw-gent", "OCMW Gent"), ("voka", "Economie Antwerpen")):
        mutapub("subscriber", "add", code, "--name", name, "--password-stdin", env=env, stdin=passwords[code])
    mutapub(
        "grant",
        "add",
        "gent",
        "persons",
        "--groups",
        "identity,address",
        "--where",
        f"municipality_nis in ({CITY_NIS})",
        "--legal-basis",
        "VTC/2019/042",
        "--purpose",
        "population register of the city",
        env=env,
    )
    mutapub(
        "grant",
        "add",
        "ocmw-gent",
        "persons",
        "--groups",
        "identity,address,civil_status",
        "--followed-only",
        "--legal-basis",
        "IVC/2021/017",
        "--purpose",
        "clients of social services",
        env=env,
    )
    seat = "kbo_address[TypeOfAddress = 'REGO'].Zipcode between '2000' and '2999'"
    mutapub(
        "grant",
        "add",
        "voka",
        "kbo_enterprise",
        "--groups",
        "status,form",
        "--where",
        seat,
        "--legal-basis",
        "VR/2020/1234",
        env=env,
    )
    mutapub(
        "grant",
        "add",
        "voka",
        "kbo_denomination",
        "--fields",
        "Denomination",
        "--where",
        seat,
        "--legal-basis",
        "VR/2020/1234",
        env=env,
    )
    mutapub(
        "grant",
        "add",
        "voka",
        "kbo_address",
        "--groups",
        "location,street",
        "--where",
        "TypeOfAddress = 'REGO'",
        "--where",
        "Zipcode between '2000' and '2999'",
        "--legal-basis",
        "VR/2020/1234",
        env=env,
    )

    print(f"\n# two days of a generated persons register ({PERSONS_ROWS:,} people, valid INSZ numbers)")
    day1, day2 = write_persons_pair(PERSONS_ROWS, home / "inbox")
    followed = _followed_persons(day1, FOLLOWED)
    keys_file = home / "inbox" / "followed.csv"
    keys_file.write_text("insz\n" + "\n".join(followed) + "\n", encoding="utf-8")
    mutapub("follow", "add", "ocmw-gent", "persons", "--file", str(keys_file), env=env)
    mutapub("snapshot", "ingest", "persons", str(day1), "--date", "2025-10-10", env=env)
    mutapub("snapshot", "ingest", "persons", str(day2), "--date", "2025-10-11", env=env)

    print("\n# the real KBO Open Data extracts: the full extract 146, then the daily update 147")
    for name in ("KboOpenData_0146_2025_10_11_Full.zip", "KboOpenData_0147_2025_10_12_Update.zip"):
        mutapub("snapshot", "ingest-kbo", str(KBO / name), env=env)

    print("\n# publication: one file per subscriber, dataset and snapshot")
    mutapub("publish", env=env)
    deliveries = json.loads(mutapub("deliveries", "list", "--json", env=env))

    print("\nDeliveries")
    print(
        f"  {'subscriber':<11} {'dataset':<18} {'seq':>3} {'kind':<8} {'I':>7} {'U':>6} {'D':>6}  downloaded"
    )
    for d in deliveries:
        c = d["counts"]
        print(
            f"  {d['subscriber']:<11} {d['dataset']:<18} {d['seq']:>3} {d['kind']:<8} "
            f"{c['I']:>7} {c['U']:>6} {c['D']:>6}  {'yes' if d['first_downloaded'] else 'no'}"
        )
    person = _a_disclosed_subject(deliveries, home, "gent", "persons")
    enterprise = _a_disclosed_subject(deliveries, home, "voka", "kbo_enterprise")
    for subject in (person, enterprise):
        if subject:
            print(f"\nWho received data on {subject}?")
            print(mutapub("disclosures", subject, env=env))
    print(f"Done in {time.perf_counter() - started:.0f} s. Look around with:")
    print(f"  export MUTAPUB_HOME={home}")
    print("  .venv/bin/mutapub deliveries list")
    print(f"  .venv/bin/mutapub disclosures {person or 'INSZ'}")
    print("  .venv/bin/mutapub grant list")
    print(f"  ls {home / 'publish' / 'gent' / 'outbox' / 'persons'}")


def _a_disclosed_subject(deliveries: list[dict], home: Path, code: str, dataset: str) -> str | None:
    """The first key of the first delta a subscriber received for a dataset (for the disclosure query)."""
    from mutapub.mutations import packaging
    from mutapub.schemas import load_schema

    for d in deliveries:
        if d["subscriber"] == code and d["dataset"] == dataset and d["kind"] == "delta" and d["rows"]:
            data = (home / "publish" / d["path"]).read_bytes()
            fmt, compression = _format_of(d["path"])
            rows = packaging.read_rows(data, fmt, compression, key=load_schema(dataset).key)
            return str(next(iter(rows[0]["key"].values())))
    return None


def _format_of(path: str) -> tuple[str, str]:
    name = path.rsplit("/", 1)[-1]
    compression = "gzip" if name.endswith(".gz") else "zip" if name.endswith(".zip") else "none"
    stem = name.removesuffix(".gz").removesuffix(".zip")
    return stem.rsplit(".", 1)[-1], compression


if __name__ == "__main__":
    main()
