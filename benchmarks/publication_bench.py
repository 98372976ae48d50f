"""Child-process helpers of the publication benchmarks (`packaging`, `scaling`, `disclosures` in run.py).

    python benchmarks/publication_bench.py populate HOME --day1 CSV --subscribers N --followed F --keys K
    python benchmarks/publication_bench.py shape HOME OUT.json
    python benchmarks/publication_bench.py anchor SHAPE.json OUTDIR --home HOME --compression gzip|none
    python benchmarks/publication_bench.py load-disclosures HOME --subscribers N --days D --population P
    python benchmarks/publication_bench.py query HOME SUBJECT... [--repeat R]

Each runs in its own process so that run.py stays small (its peak RSS would otherwise leak into the
children's figures, see run.measure). Setting up is not measured; only `mutapub publish`,
`mutapub disclosures`, the anchor and the in-process query are.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import json
import os
import sys
import time
from collections.abc import Iterator
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from sqlalchemy import Engine, func, insert, select, text

from mutapub.mutations import audit, grants, subscribers
from mutapub.mutations.models import (
    ChangeSet,
    Delivery,
    Disclosure,
    FollowedKey,
    Snapshot,
    Subscriber,
    utcnow,
)
from mutapub.mutations.synthetic import insz_check_digits
from mutapub.mutations.workspace import Workspace, open_workspace

CTX = audit.AuditContext(actor="bench", command="bench")
GROUPS = ("identity", "address", "civil_status")
# Every non-empty combination of the persons field groups: the field-group subsets of the grants.
GROUP_SETS = [list(c) for n in (1, 2, 3) for c in combinations(GROUPS, n)]
# The synthetic municipalities (mutapub.mutations.synthetic), largest first.
MUNICIPALITIES = (
    "11002",
    "44021",
    "52011",
    "62063",
    "21004",
    "31005",
    "92094",
    "24062",
    "53053",
    "41002",
    "12025",
    "71022",
    "34022",
)
BATCH = 100_000


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _batches(rows: list[dict[str, Any]], size: int = BATCH) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


# --------------------------------------------------------------------------------------------------
# populate: subscribers, grants and followed keys of the packaging and scaling benchmarks
# --------------------------------------------------------------------------------------------------


def _insz_of(day1: Path) -> np.ndarray:
    table = pacsv.read_csv(
        day1,
        parse_options=pacsv.ParseOptions(delimiter=";", newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(include_columns=["insz"], column_types={"insz": pa.string()}),
    )
    return np.asarray(table.column("insz").to_numpy(zero_copy_only=False), dtype=object)


def populate(args: argparse.Namespace) -> None:
    """`subscribers - followed` subscribers with municipality predicates and field-group subsets, then
    `followed` followed-keys subscribers following `keys` subjects each (sampled from day 1).

    With --split S, each followed key set is cut into S subscribers of keys/S keys: the same subjects
    followed in total, so the same output, spread over S times as many subscribers (the scaling pair).
    Subscribers, grants: through the library (checked, audited). Followed keys: bulk-inserted with
    SQLAlchemy Core, the rows follows.add would write (without its audit entry), for speed.
    """
    ws = open_workspace(args.home)
    rng = np.random.default_rng(args.seed)
    plain = args.subscribers - args.followed
    t0 = time.perf_counter()
    with ws.sessions() as s, s.begin():
        for i in range(plain):
            code = f"muni{i:04d}"
            subscribers.add(s, CTX, code, **subscribers.settings(name=f"Municipal subscriber {i}"))
            # Mostly one municipality (a city), some two or three (an intermunicipal service).
            n = 1 if rng.random() < 0.8 else int(rng.integers(2, 4))
            munis = rng.choice(len(MUNICIPALITIES), n, replace=False)
            where = "municipality_nis in (" + ", ".join(f"'{MUNICIPALITIES[m]}'" for m in munis) + ")"
            groups = GROUP_SETS[i % len(GROUP_SETS)]
            grants.add(s, CTX, code, "persons", legal_basis=f"VTC/{code}", groups=groups, where=[where])
            if i % 10 == 5:
                # A second grant: other fields for a neighbouring municipality (per-row union of fields).
                other = MUNICIPALITIES[(munis[0] + 1) % len(MUNICIPALITIES)]
                grants.add(
                    s,
                    CTX,
                    code,
                    "persons",
                    legal_basis=f"VTC/{code}/2",
                    groups=GROUP_SETS[(i + 3) % len(GROUP_SETS)],
                    where=[f"municipality_nis = '{other}'"],
                )
    _log(f"{plain} municipal subscribers in {time.perf_counter() - t0:.1f} s")
    if not args.followed:
        return
    insz = _insz_of(args.day1)
    keys_per = args.keys // args.split
    t0 = time.perf_counter()
    key_rows: list[dict[str, Any]] = []
    now = utcnow()
    with ws.sessions() as s, s.begin():
        for i in range(args.followed):
            sample = insz[rng.choice(len(insz), args.keys, replace=False)]
            for part in range(args.split):
                code = f"follow{i * args.split + part:05d}"
                sub = subscribers.add(
                    s, CTX, code, **subscribers.settings(name=f"Following subscriber {code}")
                )
                grants.add(
                    s,
                    CTX,
                    code,
                    "persons",
                    legal_basis=f"VTC/{code}",
                    groups=GROUP_SETS[i % len(GROUP_SETS)],  # the parts of a key set share its fields
                    followed_only=True,
                )
                key_rows += [
                    {"subscriber_id": sub.id, "dataset": "persons", "subject_key": k, "added_at": now}
                    for k in sample[part * keys_per : (part + 1) * keys_per]
                ]
        for batch in _batches(key_rows):
            s.execute(insert(FollowedKey), batch)
    _log(
        f"{args.followed * args.split} following subscribers, {len(key_rows):,} followed keys "
        f"in {time.perf_counter() - t0:.1f} s"
    )


# --------------------------------------------------------------------------------------------------
# shape: what the last publish produced (for the report and the anchor)
# --------------------------------------------------------------------------------------------------


def shape(args: argparse.Namespace) -> None:
    """The deliveries of the newest snapshot: counts, sizes, and per delivery its rows and fields."""
    ws = open_workspace(args.home)
    with ws.sessions() as s:
        snap_id = s.scalar(select(func.max(Delivery.snapshot_id)))
        rows = list(s.scalars(select(Delivery).where(Delivery.snapshot_id == snap_id).order_by(Delivery.id)))
        cs_id = next((d.change_set_id for d in rows if d.change_set_id is not None), None)
        cs = s.get(ChangeSet, cs_id) if cs_id is not None else None
        disclosures = s.scalar(
            select(func.count())
            .select_from(Disclosure)
            .join(Delivery, Delivery.id == Disclosure.delivery_id)
            .where(Delivery.snapshot_id == snap_id)
        )
    doc = {
        "deliveries": len(rows),
        "kinds": sorted({d.kind for d in rows}),
        "statuses": sorted({d.status for d in rows}),
        "rows": sum(d.rows or 0 for d in rows),
        "I": sum(d.inserts or 0 for d in rows),
        "U": sum(d.updates or 0 for d in rows),
        "D": sum(d.deletes or 0 for d in rows),
        "bytes": sum(d.size or 0 for d in rows),
        "disclosures": disclosures,
        "change_set": None
        if cs is None
        else {"path": cs.path, "I": cs.inserts, "U": cs.updates, "D": cs.deletes},
        "files": [{"rows": d.rows or 0, "fields": list(d.fields), "name": d.file_name} for d in rows],
    }
    Path(args.out).write_text(json.dumps(doc), encoding="utf-8")


# --------------------------------------------------------------------------------------------------
# anchor: the floor of a delta publish
# --------------------------------------------------------------------------------------------------


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def anchor(args: argparse.Namespace) -> None:
    """Read the change set and write, per delivery of the real publish, as many rows with its columns
    (op, key, its fields, changed) as plain CSV with pyarrow, gzip-compressed or not; each file written
    in a staging folder, fsynced and renamed into place, as mutapub does. No selection, no manifest,
    no database: the I/O and formatting floor of the same output."""
    doc = json.loads(Path(args.shape).read_text(encoding="utf-8"))
    changes = pq.read_table(args.home / doc["change_set"]["path"])
    n = changes.num_rows
    changed = pc.binary_join(changes.column("changed"), "|") if "changed" in changes.column_names else None
    out, staging = Path(args.outdir), Path(args.outdir) / ".staging"
    staging.mkdir(parents=True, exist_ok=True)
    total = 0
    options = pacsv.WriteOptions(delimiter=";", include_header=True)
    for i, f in enumerate(doc["files"]):
        rows = f["rows"]
        idx = pa.array(np.arange(rows) % max(n, 1), pa.int64())
        cols = {"op": changes.column("op"), "insz": changes.column("insz")}
        for field_name in f["fields"]:
            cols[field_name] = changes.column("after." + field_name)
        if changed is not None:
            cols["changed"] = changed
        table = pa.table(cols).take(idx) if n else pa.table({k: pa.array([], pa.string()) for k in cols})
        name = f"{i:05d}.csv" + (".gz" if args.compression == "gzip" else "")
        tmp = staging / name
        if args.compression == "gzip":
            # zlib level 6 through the gzip module, as mutapub compresses (same level, same library)
            with (
                open(tmp, "wb") as raw,
                gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=0) as gz,
            ):
                pacsv.write_csv(table, gz, options)
        else:
            pacsv.write_csv(table, str(tmp), options)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, out / name)
        total += rows
    _fsync_dir(out)
    print(total)


# --------------------------------------------------------------------------------------------------
# load-disclosures: a year of daily deliveries and their disclosure rows, bulk-loaded
# --------------------------------------------------------------------------------------------------


def _subject(i: np.ndarray) -> np.ndarray:
    """Subject keys of population members: valid INSZ numbers, member i's nine first digits being i."""
    check = insz_check_digits(i, np.zeros(len(i), dtype=bool))
    return np.char.add(np.char.zfill(i.astype("U9"), 9), np.char.zfill(check.astype("U2"), 2))


def query_subjects(population: int, subscribers: int, days: int, seed: int) -> dict[str, str]:
    """The subjects the benchmark asks about, by role (the same for the loader and run.py)."""
    rng = np.random.default_rng(seed + 1)
    typical = rng.choice(population, 3, replace=False)
    return {
        "typical-1": str(_subject(typical[:1])[0]),
        "typical-2": str(_subject(typical[1:2])[0]),
        "typical-3": str(_subject(typical[2:3])[0]),
        "heavy": str(_subject(np.array([population - 1]))[0]),
        "never": str(_subject(np.array([population]))[0]),  # a valid INSZ beyond the population
    }


def _heavy_deliveries(subscribers: int, days: int) -> tuple[int, int]:
    """A subject in every daily delivery of 3 % of the subscribers (at least one): a worst case."""
    return max(1, subscribers * 3 // 100), days


def _index_sql(engine: Engine, table: str) -> list[tuple[str, str]]:
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            found = conn.execute(
                text(
                    "SELECT name, sql FROM sqlite_master WHERE type='index' AND tbl_name=:t AND sql IS NOT NULL"
                ),
                {"t": table},
            ).all()
        else:
            found = conn.execute(
                text(
                    "SELECT i.indexname, i.indexdef FROM pg_indexes i WHERE i.tablename=:t "
                    "AND i.indexname NOT IN (SELECT conname FROM pg_constraint)"
                ),
                {"t": table},
            ).all()
    return [(name, sql) for name, sql in found]


def load_disclosures(args: argparse.Namespace) -> None:
    """Snapshots (one per day), subscribers, one delivery per subscriber per day, each naming
    50 to 500 subjects of the population (uniformly), plus the `heavy` subject in every delivery of 3 %
    of the subscribers. The disclosure indexes are dropped while loading and recreated as they were."""
    ws = open_workspace(args.home)
    engine = ws.engine
    rng = np.random.default_rng(args.seed)
    S, D, P = args.subscribers, args.days, args.population
    start = dt.date(2025, 1, 1)
    t0 = time.perf_counter()
    with ws.sessions() as s, s.begin():
        s.execute(
            insert(Snapshot),
            [
                {
                    "dataset": "persons",
                    "snapshot_date": start + dt.timedelta(days=d),
                    "source": f"persons_{d:03d}.csv",
                    "sha256": "0" * 64,
                    "rows": P,
                    "path": f"snapshots/persons/{d:03d}.parquet",
                    "schema_version": 1,
                }
                for d in range(D)
            ],
        )
        snap_ids = list(s.scalars(select(Snapshot.id).order_by(Snapshot.snapshot_date)))
        now = utcnow()
        s.execute(
            insert(Subscriber),
            [
                {
                    "code": f"sub{i:04d}",
                    "name": f"Subscriber {i}",
                    "status": "active",
                    "format": "csv",
                    "compression": "gzip",
                    "csv_delimiter": ";",
                    "file_name_template": "{subscriber}_{dataset}-mutaties_{ts}_{seq:06d}.{ext}",
                    "allow_ip": [],
                    "created_at": now,
                    "updated_at": now,
                }
                for i in range(S)
            ],
        )
        sub_ids = list(s.scalars(select(Subscriber.id).order_by(Subscriber.code)))
        rows = []
        for d in range(D):
            moment = dt.datetime.combine(start + dt.timedelta(days=d), dt.time(6), dt.UTC)
            for i, sid in enumerate(sub_ids):
                code = f"sub{i:04d}"
                name = f"{code}_persons-mutaties_{moment:%Y%m%d%H%M%S}000_{d + 1:06d}.csv.gz"
                rows.append(
                    {
                        "subscriber_id": sid,
                        "dataset": "persons",
                        "seq": d + 1,
                        "previous_seq": d or None,
                        "kind": "initial" if d == 0 else "delta",
                        "snapshot_id": snap_ids[d],
                        "from_snapshot_id": snap_ids[d - 1] if d else None,
                        "status": "published" if d >= D - 30 else "expired",
                        "file_name": name,
                        "path": f"{code}/outbox/persons/{name}",
                        "generated_at": moment,
                        "reference": f"00000000-0000-4000-8000-{d * S + i:012d}",
                        "format": "csv",
                        "compression": "gzip",
                        "csv_delimiter": ";",
                        "schema_version": 1,
                        "policy_at": moment,
                        "fields": ["insz", "last_name", "first_names", "municipality_nis", "street"],
                        "grants": [{"id": i + 1, "legal_basis": f"VTC/{code}", "purpose": ""}],
                        "rows": 0,
                        "size": 0,
                        "sha256": "0" * 64,
                        "created_at": moment,
                        "published_at": moment,
                        "first_downloaded_at": moment + dt.timedelta(hours=2) if (d + i) % 7 else None,
                    }
                )
        for batch in _batches(rows, 20_000):
            s.execute(insert(Delivery), batch)
        delivery_ids = np.array(s.scalars(select(Delivery.id).order_by(Delivery.id)).all(), dtype=np.int64)
    _log(
        f"{D} snapshots, {S} subscribers, {len(delivery_ids):,} deliveries in {time.perf_counter() - t0:.1f} s"
    )

    indexes = _index_sql(engine, "disclosures")
    with engine.begin() as conn:
        for name, _ in indexes:
            conn.execute(text(f"DROP INDEX {name}"))
    per = rng.integers(50, 501, len(delivery_ids))
    heavy_subs, _ = _heavy_deliveries(S, D)
    # deliveries are in (day, subscriber) order: the first heavy_subs subscribers of every day
    heavy = np.zeros(len(delivery_ids), dtype=bool)
    heavy.reshape(D, S)[:, :heavy_subs] = True
    total = int(per.sum()) + int(heavy.sum())
    t0 = time.perf_counter()
    loaded = 0
    chunk = 1_000_000
    ops = np.array(["I", "U", "D"], dtype=object)
    heavy_subject = query_subjects(P, S, D, args.seed)["heavy"]
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        owner = np.repeat(delivery_ids, per)
        # the heavy subject once more in its deliveries (the rest of the population never reaches P - 1)
        owner = np.concatenate([owner, delivery_ids[heavy]])
        for lo in range(0, len(owner), chunk):
            ids = owner[lo : lo + chunk]
            n = len(ids)
            subj = _subject(rng.integers(0, P - 1, n))
            if lo + n > int(per.sum()):
                first_heavy = max(0, int(per.sum()) - lo)
                subj[first_heavy:] = heavy_subject
            op = ops[rng.choice(3, n, p=[0.15, 0.7, 0.15])]
            if engine.dialect.name == "sqlite":
                cur.executemany(
                    "INSERT INTO disclosures (delivery_id, subject, op) VALUES (?, ?, ?)",
                    zip(ids.tolist(), subj.tolist(), op.tolist(), strict=True),
                )
            else:
                buf = pa.BufferOutputStream()
                pacsv.write_csv(
                    pa.table({"d": ids, "s": pa.array(subj.tolist()), "o": pa.array(op.tolist())}),
                    buf,
                    pacsv.WriteOptions(include_header=False, delimiter="\t", quoting_style="none"),
                )
                with cur.copy("COPY disclosures (delivery_id, subject, op) FROM STDIN") as copy:
                    copy.write(buf.getvalue().to_pybytes())
            loaded += n
            _log(f"disclosures: {loaded:,} / {total:,}")
        raw.commit()
    finally:
        raw.close()
    t1 = time.perf_counter()
    with engine.begin() as conn:
        for _, sql in indexes:
            conn.execute(text(sql))
        if engine.dialect.name != "sqlite":
            conn.execute(text("ANALYZE"))  # what autovacuum does after a large load; SQLite never analyses
    _log(
        f"{loaded:,} disclosures loaded in {t1 - t0:.1f} s, indexes rebuilt in {time.perf_counter() - t1:.1f} s"
    )
    print(json.dumps({"deliveries": len(delivery_ids), "disclosures": loaded}))


# --------------------------------------------------------------------------------------------------
# query: the disclosure query in-process
# --------------------------------------------------------------------------------------------------


def _plan(ws: Workspace, subject: str) -> list[str]:
    """The database's plan of the disclosure query (compiled by SQLAlchemy, as tracking runs it)."""
    from mutapub.mutations.tracking import subject_forms

    stmt = (
        select(Disclosure.op, Delivery, Subscriber.code, Snapshot.snapshot_date)
        .join(Delivery, Delivery.id == Disclosure.delivery_id)
        .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
        .join(Snapshot, Snapshot.id == Delivery.snapshot_id)
        .where(Disclosure.subject.in_(subject_forms(subject)))
        .order_by(Snapshot.snapshot_date, Subscriber.code, Delivery.dataset, Delivery.seq)
    )
    engine = ws.engine
    compiled = stmt.compile(engine, compile_kwargs={"literal_binds": True})
    prefix = "EXPLAIN QUERY PLAN " if engine.dialect.name == "sqlite" else "EXPLAIN "
    with engine.connect() as conn:
        return [" ".join(str(c) for c in row) for row in conn.execute(text(prefix + str(compiled)))]


def query(args: argparse.Namespace) -> None:
    """Per subject: hits, the first call's time and the best of --repeat calls of tracking.disclosures."""
    from mutapub.mutations.tracking import disclosures

    ws = open_workspace(args.home)
    out: dict[str, Any] = {}
    for subject in args.subjects:
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            rows = disclosures(ws, subject)
            times.append(time.perf_counter() - t0)
        out[subject] = {"hits": len(rows), "first_s": times[0], "best_s": min(times)}
    out["plan"] = _plan(ws, args.subjects[0])
    print(json.dumps(out))


# --------------------------------------------------------------------------------------------------
# pg-database: a fresh database of the benchmark's own on a reachable PostgreSQL
# --------------------------------------------------------------------------------------------------


def pg_database(args: argparse.Namespace) -> None:
    """Drop and create database `name` on the server of `url` (as its user, who must be allowed to);
    print the URL of the new database, or exit 2 when the server cannot be reached."""
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import OperationalError

    url = make_url(args.url)
    try:
        engine = create_engine(url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{args.name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{args.name}"'))
        engine.dispose()
    except OperationalError as exc:
        print(f"PostgreSQL not reachable at {url.render_as_string()}: {exc.orig}", file=sys.stderr)
        sys.exit(2)
    print(url.set(database=args.name).render_as_string(hide_password=False))


# --------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    """Dispatch to the helper named by the first argument."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("populate")
    p.add_argument("home", type=Path)
    p.add_argument("--day1", type=Path, required=True)
    p.add_argument("--subscribers", type=int, required=True)
    p.add_argument("--followed", type=int, required=True)
    p.add_argument("--keys", type=int, required=True)
    p.add_argument("--split", type=int, default=1)
    p.add_argument("--seed", type=int, default=7)
    p.set_defaults(fn=populate)

    p = sub.add_parser("shape")
    p.add_argument("home", type=Path)
    p.add_argument("out", type=Path)
    p.set_defaults(fn=shape)

    p = sub.add_parser("anchor")
    p.add_argument("shape", type=Path)
    p.add_argument("outdir", type=Path)
    p.add_argument("--compression", choices=["gzip", "none"], default="gzip")
    p.add_argument("--home", type=Path, required=True, help="the workspace holding the change set")
    p.set_defaults(fn=anchor)

    p = sub.add_parser("load-disclosures")
    p.add_argument("home", type=Path)
    p.add_argument("--subscribers", type=int, required=True)
    p.add_argument("--days", type=int, required=True)
    p.add_argument("--population", type=int, required=True)
    p.add_argument("--seed", type=int, default=11)
    p.set_defaults(fn=load_disclosures)

    p = sub.add_parser("query")
    p.add_argument("home", type=Path)
    p.add_argument("subjects", nargs="+")
    p.add_argument("--repeat", type=int, default=5)
    p.set_defaults(fn=query)

    p = sub.add_parser("pg-database")
    p.add_argument("url")
    p.add_argument("name")
    p.set_defaults(fn=pg_database)

    args = parser.parse_args(argv)
    args.fn(args)


if __name__ == "__main__":
    main()
