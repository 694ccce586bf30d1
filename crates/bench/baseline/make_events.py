#!/usr/bin/env python3
"""Synthetic event generator for the retention baseline (test data only).

Writes packed little-endian records <u32 user_index><i64 time_us> (12 bytes,
no header), ordered by time. Every user has a signup day (their first event
falls on it) and afterwards is active on a day with a probability that decays
with the days since signup; an active day carries 1 + Poisson(rate) events.

    python3 make_events.py --users 1000000 --days 180 --seed 1 \
        --offset-seconds 28800 --start-day 19723 --out events.bin

--events N calibrates the per-day event rate so the file holds about N events.
"""
import argparse
import sys
import time

import numpy as np

DTYPE = np.dtype([("user", "<u4"), ("time_us", "<i8")])
DAY_US = 86_400 * 1_000_000


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, required=True)
    ap.add_argument("--days", type=int, required=True)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--offset-seconds", type=int, default=28800,
                    help="fixed UTC offset of the local day, seconds (default +08:00)")
    ap.add_argument("--start-day", type=int, required=True,
                    help="first local day (days since 1970-01-01)")
    ap.add_argument("--events", type=int, default=None,
                    help="approximate total number of events (calibrates the per-day rate)")
    ap.add_argument("--rate", type=float, default=4.0,
                    help="mean extra events on an active day, before per-user spread (ignored with --events)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    t0 = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    n, days = args.users, args.days

    # Signup day: mildly growing acquisition over the span.
    w = np.linspace(1.0, 2.0, days)
    signup = rng.choice(days, size=n, p=w / w.sum()).astype(np.int32)
    # Per-user engagement: base return probability, decay speed, events per active day.
    base = rng.beta(2.0, 3.0, size=n).astype(np.float32)
    tau = rng.gamma(2.0, 4.0, size=n).astype(np.float32) + 0.5
    intensity = rng.lognormal(0.0, 0.7, size=n).astype(np.float32)
    intensity /= intensity.mean()
    # User index is a random permutation so it does not correlate with signup day.
    uid = rng.permutation(n).astype(np.uint32)

    decay = np.float32(-0.8)

    def p_active(idx, s):
        # idx: user positions, s: days since signup (>= 1). Power-law decay, per-user scale.
        return base[idx] * (1.0 + s / tau[idx]) ** decay

    rate = args.rate
    if args.events is not None:
        # Expected active user-days: the signup day plus the decaying return probability.
        exp_user_days = float(n)
        for d in range(days):
            idx = np.flatnonzero(d - signup >= 1)
            exp_user_days += float(p_active(idx, (d - signup[idx]).astype(np.float32)).sum())
        rate = max(args.events / exp_user_days - 1.0, 0.0)
        log(f"calibrated: expected active user-days {exp_user_days:,.0f}, rate {rate:.3f}")

    written = 0
    with open(args.out, "wb") as f:
        for d in range(days):
            s = d - signup
            cand = np.flatnonzero(s >= 0)
            sc = s[cand].astype(np.float32)
            pc = p_active(cand, np.maximum(sc, np.float32(1.0)))
            pc[sc == 0] = 1.0
            act = cand[rng.random(cand.size, dtype=np.float32) < pc]
            cnt = 1 + rng.poisson(rate * intensity[act])
            users = np.repeat(uid[act], cnt)
            local_day = args.start_day + d
            day_start_utc_us = (local_day * 86_400 - args.offset_seconds) * 1_000_000
            t = day_start_utc_us + rng.integers(0, DAY_US, size=users.size, dtype=np.int64)
            order = np.argsort(t, kind="stable")
            rec = np.empty(users.size, dtype=DTYPE)
            rec["user"] = users[order]
            rec["time_us"] = t[order]
            rec.tofile(f)
            written += users.size
            if d % 30 == 0 or d == days - 1:
                log(f"day {d + 1}/{days}: {written:,} events, {time.perf_counter() - t0:.1f}s")
    log(f"wrote {written:,} events ({written * DTYPE.itemsize / 1e6:.1f} MB) to {args.out} "
        f"in {time.perf_counter() - t0:.1f}s")


if __name__ == "__main__":
    main()
