#!/usr/bin/env python3
"""Cohort retention matrix with DuckDB and chDB, timed, from raw events.

Input: packed little-endian records <u32 user_index><i64 time_us> (12 bytes,
no header, no padding); time_us is UTC microseconds since the Unix epoch.

    python3 retention.py --events FILE --offset-seconds 28800 --from-day D0 \
        --cohorts 90 --max-day 90 --runs 3 [--engines duckdb,chdb] [--threads 2]

Definitions (integers throughout):
    day(e)       = floor((time_us + offset_seconds * 1e6) / 86_400e6)
    cohort(u)    = min day(e) over all events of user u in the file
    matrix[i][k] = |{u : cohort(u) = D0 + i and u has an event with day = D0 + i + k}|
                   for i in 0..cohorts-1, k in 0..=max_day  (matrix[i][0] = cohort size)

Each engine first loads the raw events into its own table (timed as
load_seconds), then runs one SQL statement computing the whole matrix from
that table --runs times (query_seconds, median_seconds). One JSON object goes
to stdout; progress goes to stderr.
"""
import argparse
import hashlib
import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time

import numpy as np

DTYPE = np.dtype([("user", "<u4"), ("time_us", "<i8")])
DAY_US = 86_400 * 1_000_000


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def peak_rss_mb():
    # ru_maxrss is KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def cur_rss_mb():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def canonical(matrix):
    """Canonical text of a matrix: rows in cohort order, values joined by ',',
    rows joined by '\\n', no trailing newline. Its SHA-256 is matrix_sha256."""
    return "\n".join(",".join(str(int(v)) for v in row) for row in matrix)


def sha256_matrix(matrix):
    return hashlib.sha256(canonical(matrix).encode("ascii")).hexdigest()


def to_matrix(rows, d0, cohorts, max_day):
    m = np.zeros((cohorts, max_day + 1), dtype=np.int64)
    for cohort, k, n in rows:
        i = int(cohort) - d0
        k = int(k)
        if 0 <= i < cohorts and 0 <= k <= max_day:
            m[i, k] = int(n)
        else:  # the SQL filters these out; anything here is a bug
            raise RuntimeError(f"cell out of range: cohort={cohort} k={k}")
    return m.tolist()


# --------------------------------------------------------------------------
# SQL. {off_us}, {d0}, {d1} (last cohort day), {max_day} are integers.
# day = (time_us + off_us) // 86400000000 is floor division for every
# time_us >= -off_us (checked on load), which is the definition above.
# --------------------------------------------------------------------------

# Both engines run the same plan, the fastest form measured for each here:
# distinct (user, day) pairs by GROUP BY, each user's first day by GROUP BY,
# a hash join of the two on user, and a GROUP BY count over (cohort, k).
# Days are 32-bit integers (faster hashing than 64-bit in both engines).

# DuckDB: the CTE `ud` is referenced twice; an explicit `AS MATERIALIZED`
# measured the same, so it is left to DuckDB.
DUCKDB_SQL = """
WITH ud AS (
    SELECT user_id, CAST((time_us + {off_us}) // 86400000000 AS INTEGER) AS day
    FROM events
    GROUP BY ALL
),
f AS (
    SELECT user_id, min(day) AS cohort
    FROM ud
    GROUP BY user_id
    HAVING cohort BETWEEN {d0} AND {d1}
)
SELECT cohort, day - cohort AS k, count(*) AS n
FROM ud JOIN f USING (user_id)
WHERE day - cohort <= {max_day}
GROUP BY ALL
ORDER BY cohort, k
"""

# ClickHouse: CTEs are inlined, so the first-day side reads the events table
# directly (one more scan, but no materialized intermediate).
CHDB_SQL = """
WITH ud AS (
    SELECT user_id, toInt32(intDiv(time_us + {off_us}, 86400000000)) AS day
    FROM bench.events
    GROUP BY user_id, day
)
SELECT f.cohort AS cohort, ud.day - f.cohort AS k, count() AS n
FROM ud
INNER JOIN (
    SELECT user_id, min(toInt32(intDiv(time_us + {off_us}, 86400000000))) AS cohort
    FROM bench.events
    GROUP BY user_id
    HAVING cohort BETWEEN {d0} AND {d1}
) AS f USING (user_id)
WHERE k <= {max_day}
GROUP BY cohort, k
ORDER BY cohort, k
SETTINGS max_threads = {threads}
"""


def sql_params(args):
    return dict(off_us=args.offset_seconds * 1_000_000, d0=args.from_day,
                d1=args.from_day + args.cohorts - 1, max_day=args.max_day,
                threads=args.threads)


def cpu_seconds():
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def time_runs(run_query, runs, name):
    """Wall-clock seconds per run (the measured figure), plus the process CPU
    seconds per run: with `threads` threads and an idle machine, cpu is about
    threads x wall; a much lower ratio means other load took the cores."""
    times, cpus, rows = [], [], None
    for r in range(runs):
        c = cpu_seconds()
        t = time.perf_counter()
        rows = run_query()
        dt = time.perf_counter() - t
        dc = cpu_seconds() - c
        times.append(dt)
        cpus.append(dc)
        log(f"[{name}] run {r + 1}/{runs}: {dt:.3f}s wall, {dc:.3f}s cpu ({len(rows)} rows)")
    return times, cpus, rows


def run_duckdb(args, cols):
    import duckdb
    import pyarrow as pa

    con = duckdb.connect(":memory:")
    con.execute(f"SET threads = {args.threads}")
    con.execute("SET preserve_insertion_order = false")
    t = time.perf_counter()
    src = pa.table({"user_id": cols.pop("user_id"), "time_us": cols.pop("time_us")})  # zero-copy over numpy
    con.register("src", src)
    con.execute("CREATE TABLE events (user_id UINTEGER, time_us BIGINT)")
    con.execute("INSERT INTO events SELECT user_id, time_us FROM src")
    con.unregister("src")
    del src
    load = time.perf_counter() - t
    n = con.execute("SELECT count(*) FROM events").fetchone()[0]
    log(f"[duckdb] loaded {n:,} rows in {load:.3f}s (rss {cur_rss_mb():.0f} MB)")

    sql = DUCKDB_SQL.format(**sql_params(args))
    qt, qc, rows = time_runs(lambda: con.execute(sql).fetchall(), args.runs, "duckdb")
    res = dict(version=duckdb.__version__, load_seconds=load, query_seconds=qt,
               median_seconds=statistics.median(qt), query_cpu_seconds=qc, rows=len(rows))
    con.close()
    return res, to_matrix(rows, args.from_day, args.cohorts, args.max_day)


def run_chdb(args):
    import chdb
    from chdb import session as chs

    tmp = tempfile.mkdtemp(prefix="chdb-retention-")
    sess = chs.Session(tmp)
    try:
        version = sess.query("SELECT version()", "CSV").bytes().decode().strip().strip('"')
        sess.query("CREATE DATABASE IF NOT EXISTS bench")
        sess.query(f"CREATE TABLE bench.events (user_id UInt32, time_us Int64) ENGINE = {args.chdb_engine}")
        path = os.path.abspath(args.events).replace("\\", "\\\\").replace("'", "\\'")
        t = time.perf_counter()
        # The input file is already ClickHouse RowBinary for (UInt32, Int64).
        sess.query(
            "INSERT INTO bench.events SELECT * FROM "
            f"file('{path}', 'RowBinary', 'user_id UInt32, time_us Int64') "
            f"SETTINGS max_threads = {args.threads}, max_insert_threads = {args.threads}"
        )
        load = time.perf_counter() - t
        n = int(sess.query("SELECT count() FROM bench.events", "CSV").bytes().decode().strip())
        log(f"[chdb] loaded {n:,} rows in {load:.3f}s ({args.chdb_engine}; rss {cur_rss_mb():.0f} MB)")

        sql = CHDB_SQL.format(**sql_params(args))

        def q():
            out = sess.query(sql, "TabSeparated").bytes().decode()
            return [tuple(int(x) for x in line.split("\t")) for line in out.splitlines() if line]

        qt, qc, rows = time_runs(q, args.runs, "chdb")
        res = dict(version=f"chdb {chdb.__version__} / ClickHouse {version}", load_seconds=load,
                   query_seconds=qt, median_seconds=statistics.median(qt), query_cpu_seconds=qc,
                   rows=len(rows), table_engine=args.chdb_engine)
        return res, to_matrix(rows, args.from_day, args.cohorts, args.max_day)
    finally:
        sess.close()
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", required=True, help="packed <u32 user><i64 time_us> file")
    ap.add_argument("--offset-seconds", type=int, required=True, help="fixed UTC offset of the local day")
    ap.add_argument("--from-day", type=int, required=True, help="first cohort day (days since 1970-01-01)")
    ap.add_argument("--cohorts", type=int, default=90)
    ap.add_argument("--max-day", type=int, default=90)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--engines", default="duckdb,chdb")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--chdb-engine", default="Memory", help="chDB table engine (Memory or 'MergeTree ORDER BY tuple()')")
    args = ap.parse_args()
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    for e in engines:
        if e not in ("duckdb", "chdb"):
            ap.error(f"unknown engine {e!r}")

    try:
        load1 = os.getloadavg()
    except OSError:
        load1 = None
    size = os.path.getsize(args.events)
    if size % DTYPE.itemsize:
        sys.exit(f"{args.events}: size {size} is not a multiple of {DTYPE.itemsize}")
    t = time.perf_counter()
    n_events = size // DTYPE.itemsize
    users = np.empty(n_events, dtype=np.uint32)
    times = np.empty(n_events, dtype=np.int64)
    chunk = 1 << 22
    rec = None
    with open(args.events, "rb") as f:
        for start in range(0, n_events, chunk):
            rec = np.fromfile(f, dtype=DTYPE, count=min(chunk, n_events - start))
            users[start:start + rec.size] = rec["user"]
            times[start:start + rec.size] = rec["time_us"]
    del rec
    off_us = args.offset_seconds * 1_000_000
    if n_events and int(times.min()) + off_us < 0:
        sys.exit("events before 1970-01-01 local time are not supported")
    if n_events and int(users.max()) < (1 << 28):
        seen = np.zeros(int(users.max()) + 1, dtype=bool)
        seen[users] = True
        n_users = int(seen.sum())
        del seen
    else:
        n_users = int(np.unique(users).size)
    log(f"read {n_events:,} events, {n_users:,} users in {time.perf_counter() - t:.2f}s; "
        f"threads={args.threads}, loadavg={load1}")

    out = {"engines": {}, "events": n_events, "users": n_users, "threads": args.threads,
           "loadavg_at_start": list(load1) if load1 else None}
    matrices = {}
    read_peak = peak_rss_mb()
    # Only DuckDB loads from these arrays (chDB reads the file itself); they are
    # dropped once DuckDB has copied them into its table.
    cols = {"user_id": users, "time_us": times} if "duckdb" in engines else {}
    del users, times
    for e in engines:
        if e == "duckdb":
            res, m = run_duckdb(args, cols)
        else:
            res, m = run_chdb(args)
        res["matrix_sha256"] = sha256_matrix(m)
        res["sql"] = (DUCKDB_SQL if e == "duckdb" else CHDB_SQL).format(**sql_params(args)).strip()
        res["peak_rss_mb_after"] = peak_rss_mb()
        res["loadavg_after"] = list(os.getloadavg())
        out["engines"][e] = res
        matrices[e] = m
        log(f"[{e}] median {res['median_seconds']:.3f}s, sha256 {res['matrix_sha256'][:16]}…, "
            f"peak rss {res['peak_rss_mb_after']:.0f} MB")
    cols.clear()

    hashes = {e: r["matrix_sha256"] for e, r in out["engines"].items()}
    out["matrices_agree"] = len(set(hashes.values())) <= 1
    if not out["matrices_agree"]:
        log(f"WARNING: engine matrices differ: {hashes}")
    out["peak_rss_mb"] = peak_rss_mb()
    out["peak_rss_mb_after_read"] = read_peak
    out["matrix"] = matrices.get("duckdb", next(iter(matrices.values()), None))
    out["matrix_engine"] = "duckdb" if "duckdb" in matrices else (engines[0] if engines else None)
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
