"""`make demo`: the main job end to end in a throw-away workspace, on generated and real register data."""

from __future__ import annotations

import csv
import ftplib
import hashlib
import json
import os
import re
import secrets
import shlex
import shutil
import ssl
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
    """Subscribers and grants, the sources, the job for each date, FTPS downloads, and a report."""
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

    print(
        f"\n# the sources: a drop directory with two days of a generated persons register ({PERSONS_ROWS:,}"
    )
    print("# people: valid INSZ numbers, moves, births, deaths) and the real KBO Open Data extracts")
    drop = home / "drop"
    (drop / "persons").mkdir(parents=True)
    (drop / "kbo").mkdir()
    day1, day2 = write_persons_pair(PERSONS_ROWS, home / "generated")
    for src, day in ((day1, "2025-10-10"), (day2, "2025-10-11")):
        _drop(src, drop / "persons" / f"persons_{day}.csv")
    for name in ("KboOpenData_0146_2025_10_11_Full.zip", "KboOpenData_0147_2025_10_12_Update.zip"):
        _drop(KBO / name, drop / "kbo" / name)
    with open(home / "mutapub.toml", "a", encoding="utf-8") as fh:
        fh.write(SOURCES.format(drop=drop))
    followed = _followed_persons(day1, FOLLOWED)
    keys_file = home / "generated" / "followed.csv"
    keys_file.write_text("insz\n" + "\n".join(followed) + "\n", encoding="utf-8")
    mutapub("follow", "add", "ocmw-gent", "persons", "--file", str(keys_file), env=env)

    print("\n# the publication job, for every date the sources offer")
    print(mutapub("run", env=env).rstrip())
    print(mutapub("runs", "list", env=env).rstrip())

    print("\n# the FTPS server on loopback; each subscriber downloads its files")
    print(mutapub("certs", "selfsigned", "--host", "localhost", env=env).rstrip())
    server, port = _start_server(env)
    try:
        fetched = {code: _download_all(code, passwords[code], port, home) for code in passwords}
    finally:
        server.terminate()  # SIGTERM: sessions close and every transfer record is written
        server.wait(timeout=60)
    for code, files in fetched.items():
        print(f"  {code}: {len(files)} file(s) downloaded over FTPS, each matching its manifest's SHA-256")

    deliveries = json.loads(mutapub("deliveries", "list", "--json", env=env))
    print("\nReport (from that JSON)")
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
            print(mutapub("disclosures", subject, env=env).rstrip())
    fingerprint = _fingerprint(home / "certs" / "server.pem")
    print(f"""
Try it by hand (the demo stopped its server; start it again in another terminal):
  MUTAPUB_HOME={home} .venv/bin/mutapub serve --host 127.0.0.1 --port {DEMO_PORT}
  port {DEMO_PORT}, user gent, password {passwords["gent"]}
  certificate SHA-256 fingerprint {fingerprint}
  lftp -u 'gent,{passwords["gent"]}' -e 'set ftp:ssl-force true; set ftp:ssl-protect-data true; \
set ssl:ca-file {home / "certs" / "server.pem"}; find /outbox; mirror /outbox gent-outbox; bye' localhost:{DEMO_PORT}
  curl --ssl-reqd --cacert {home / "certs" / "server.pem"} -u 'gent:{passwords["gent"]}' \
ftp://localhost:{DEMO_PORT}/outbox/persons/

Done in {time.perf_counter() - started:.0f} s. The workspace is {home}; look around with:
  export MUTAPUB_HOME={home}
  .venv/bin/mutapub deliveries list
  .venv/bin/mutapub disclosures {person or "INSZ"}
  .venv/bin/mutapub runs list
  .venv/bin/mutapub downloads list""")


SOURCES = """
[sources.persons]
kind = "local"
path = "{drop}/persons"
glob = "persons_*.csv"
complete = ["marker"]

[sources.kbo]
kind = "local"
path = "{drop}/kbo"
glob = "KboOpenData_*.zip"
format = "kbo"
date_offset_days = -1
complete = ["marker"]
"""
DEMO_PORT = 2121


def _drop(src: Path, dest: Path) -> None:
    """Deliver a file into a drop directory the way a source system should: the file, then its marker."""
    shutil.copyfile(src, dest)
    dest.with_name(dest.name + ".done").touch()


def _start_server(env: dict[str, str]) -> tuple[subprocess.Popen[str], int]:
    """`mutapub serve` on a free loopback port; its port, read from its `listening on` line."""
    print("$ mutapub serve --host 127.0.0.1 --port 0", flush=True)
    proc = subprocess.Popen(
        [sys.executable, "-m", "mutapub.mutations.cli", "serve", "--host", "127.0.0.1", "--port", "0"],
        env={**env, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        match = re.search(r"listening on [^ ]*:(\d+)", line)
        if match:
            print(f"  {line.strip()}")
            return proc, int(match[1])
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise SystemExit("demo failed: the FTPS server did not start")


def _download_all(code: str, password: str, port: int, home: Path) -> list[str]:
    """Log in as a subscriber over explicit FTPS, verifying the server's certificate, and fetch every
    data file of its outbox with its manifest; refuse a file whose SHA-256 differs from the manifest's."""
    ctx = ssl.create_default_context(cafile=str(home / "certs" / "server.pem"))
    ftp = ftplib.FTP_TLS(context=ctx)
    ftp.connect("localhost", port, timeout=30)
    ftp.login(code, password)
    ftp.prot_p()
    target = home / "downloads" / code
    fetched = []
    for dataset, _facts in ftp.mlsd("/outbox"):
        for name, facts in sorted(ftp.mlsd(f"/outbox/{dataset}")):
            if facts.get("type") != "file" or not name.endswith(".manifest.json"):
                continue
            data_name = name.removesuffix(".manifest.json")
            manifest = json.loads(_retrieve(ftp, f"/outbox/{dataset}/{name}"))
            data = _retrieve(ftp, f"/outbox/{dataset}/{data_name}")
            if hashlib.sha256(data).hexdigest() != manifest["file"]["sha256"]:
                raise SystemExit(f"demo failed: {code}/{data_name} does not match its manifest")
            (target / dataset).mkdir(parents=True, exist_ok=True)
            (target / dataset / data_name).write_bytes(data)
            fetched.append(data_name)
    ftp.quit()
    return fetched


def _retrieve(ftp: ftplib.FTP_TLS, path: str) -> bytes:
    buf = bytearray()
    ftp.retrbinary(f"RETR {path}", buf.extend)
    return bytes(buf)


def _fingerprint(pem: Path) -> str:
    der = ssl.PEM_cert_to_DER_cert(pem.read_text(encoding="ascii"))
    return ":".join(re.findall("..", hashlib.sha256(der).hexdigest().upper()))


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
