"""Benchmark: the clustering job for a million synthetic users, and the per-request segment read.

    .venv/bin/python bench/bench_segments.py [--users 1000000] [--events-per-user 5] [--reads 20000]

Generates users, items and events directly in the documented frame dtypes (no files, no
validation: those are not what is measured), runs one full ``run_clustering`` against the
local Redis under a throw-away key prefix, then times ``segments_for`` on loopback for known,
unknown and anonymous viewers. Prints a table and writes JSON to bench/results/. Every key
it wrote is deleted at the end (unless --keep).

Figures to look at: total wall time, Redis write throughput (users/s; two commands each),
and the read p99 against the 1 ms target.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from clustering.job import Frames, run_clustering
from recommender.data_model import EVENT_TYPES
from recommender.settings import load_settings
from recommender.stores import open_redis
from recommender.stores.segments import RedisSegmentStore

RESULTS_DIR = Path(__file__).resolve().parent / "results"
NOW = pd.Timestamp("2026-11-01T00:00:00Z")


def synthetic_frames(n_users: int, events_per_user: float, n_items: int, *, groups: int = 12,
                     seed: int = 0) -> Frames:
    """Return frames where each user mostly browses the categories of one of ``groups`` tastes."""
    rng = np.random.default_rng(seed)
    n_cats = 10 * groups
    cats = np.array([f"taste{c // 10}/leaf{c % 10}" for c in range(n_cats)], dtype=object)
    item_cat = rng.integers(0, n_cats, n_items)
    items = pd.DataFrame({
        "item_id": pd.array([f"i{i}" for i in range(n_items)], dtype="string"),
        "category": pd.array(cats[item_cat], dtype="string"),
        "price": np.round(rng.lognormal(3 + (item_cat // 10) % 4, 0.6), 2),
        "created_at": NOW - pd.Timedelta(days=60),
    })
    user_ids = pd.array([f"u{u}" for u in range(n_users)], dtype="string")
    missing = rng.random((4, n_users)) < 0.2  # a fifth of users lack each profile attribute
    users = pd.DataFrame({
        "user_id": user_ids,
        "gender": pd.array(np.where(missing[0], None, rng.choice(["m", "f"], n_users)), dtype="string"),
        "birth_year": pd.array(np.where(missing[1], None, rng.integers(1950, 2010, n_users)), dtype="Int64"),
        "region": pd.array(np.where(missing[2], None, rng.choice([f"region{r}" for r in range(17)], n_users)),
                           dtype="string"),
        "platform": pd.array(np.where(missing[3], None, rng.choice(["ios", "android", "web"], n_users)),
                             dtype="string"),
    })
    per_user = rng.poisson(events_per_user, n_users)
    ev_user = np.repeat(np.arange(n_users), per_user)
    taste = rng.integers(0, groups, n_users)[ev_user]
    on_taste = rng.random(len(ev_user)) < 0.85
    cat = np.where(on_taste, taste * 10 + rng.integers(0, 10, len(ev_user)), rng.integers(0, n_cats, len(ev_user)))
    # Pick an item of that category: items sorted by category, then a random offset inside it.
    order = np.argsort(item_cat, kind="stable")
    starts = np.searchsorted(item_cat[order], np.arange(n_cats))
    counts = np.bincount(item_cat, minlength=n_cats)
    item = order[starts[cat] + (rng.random(len(ev_user)) * np.maximum(counts[cat], 1)).astype(np.int64)
                 .clip(max=np.maximum(counts[cat] - 1, 0))]
    ages_s = rng.integers(0, 20 * 86400, len(ev_user))
    events = pd.DataFrame({
        "ts": NOW - pd.to_timedelta(ages_s, unit="s"),
        "user_id": user_ids[ev_user],
        "session_id": pd.array(np.full(len(ev_user), None), dtype="string"),
        "item_id": items["item_id"].array[item],
        "event_type": pd.Categorical(rng.choice(["view"] * 6 + ["click"] * 3 + ["like", "purchase"], len(ev_user)),
                                     categories=list(EVENT_TYPES)),
        "platform": pd.array(np.full(len(ev_user), None), dtype="string"),
    })
    return Frames(events, items, users)


def _percentiles_ms(samples_ns: list[int]) -> dict[str, float]:
    arr = np.asarray(samples_ns, dtype=np.float64) / 1e6
    return {"p50_ms": float(np.percentile(arr, 50)), "p95_ms": float(np.percentile(arr, 95)),
            "p99_ms": float(np.percentile(arr, 99)), "max_ms": float(arr.max()), "n": len(arr)}


def time_reads(store: RedisSegmentStore, user_ids: list[str | None], *, region: str | None,
               platform: str | None) -> dict[str, float]:
    """Return latency percentiles (ms) of one ``segments_for`` call per id, after a warm-up."""
    for uid in user_ids[:200]:
        store.segments_for(uid, region=region, platform=platform)
    samples = []
    for uid in user_ids:
        t0 = time.perf_counter_ns()
        store.segments_for(uid, region=region, platform=platform)
        samples.append(time.perf_counter_ns() - t0)
    return _percentiles_ms(samples)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--events-per-user", type=float, default=5.0)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--reads", type=int, default=20_000)
    parser.add_argument("--torch-threads", type=int, default=0, help="0 keeps torch's default")
    parser.add_argument("--keep", action="store_true", help="keep the written keys (prefix is printed)")
    args = parser.parse_args(argv)
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)

    settings = load_settings()
    redis_settings = settings.redis.model_copy(update={"key_prefix": f"bench-seg:{uuid.uuid4().hex[:8]}:"})
    store = RedisSegmentStore(redis_settings)
    client = open_redis(redis_settings)
    client.ping()

    t0 = time.perf_counter()
    frames = synthetic_frames(args.users, args.events_per_user, args.items)
    gen_s = time.perf_counter() - t0
    print(f"generated {len(frames.users):,} users, {len(frames.items):,} items, {len(frames.events):,} events "
          f"in {gen_s:.1f}s", file=sys.stderr)

    used_before = int(client.info("memory")["used_memory"])
    t0 = time.perf_counter()
    report = run_clustering(frames, store, settings.clustering, now=NOW)
    job_s = time.perf_counter() - t0
    used_after = int(client.info("memory")["used_memory"])

    rng = np.random.default_rng(1)
    known = [f"u{u}" for u in rng.integers(0, args.users, args.reads)]
    unknown = [f"nobody{u}" for u in range(args.reads)]
    # PING on the same client is the floor: what loopback and this host's scheduler cost.
    ping_samples = []
    for _ in range(args.reads):
        t1 = time.perf_counter_ns()
        client.ping()
        ping_samples.append(time.perf_counter_ns() - t1)
    evalsha_before = client.info("commandstats").get("cmdstat_evalsha", {"calls": 0, "usec": 0})
    reads = {
        "PING (floor)": _percentiles_ms(ping_samples),
        "known user": time_reads(store, known, region=None, platform="ios"),
        "unknown user": time_reads(store, unknown, region="region3", platform="web"),
        "anonymous": time_reads(store, [None] * args.reads, region="region3", platform="web"),
    }

    evalsha_after = client.info("commandstats").get("cmdstat_evalsha", {"calls": 0, "usec": 0})
    # Redis's own time per read script (diffed, other clients may run scripts too): what the
    # read costs the server, apart from loopback and host scheduling.
    calls = int(evalsha_after["calls"]) - int(evalsha_before["calls"])
    server_us = (int(evalsha_after["usec"]) - int(evalsha_before["usec"])) / max(calls, 1)

    result = {
        "benchmark": "segments",
        "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "host": {"python": platform.python_version(), "cpus": os.cpu_count(), "torch": torch.__version__,
                 "torch_threads": torch.get_num_threads(), "device": report.device},
        "params": vars(args),
        "data": {"users": len(frames.users), "items": len(frames.items), "events": len(frames.events),
                 "generate_s": round(gen_s, 2)},
        "job": {"wall_s": round(job_s, 2), "features_s": round(report.features_s, 2),
                "cluster_s": round(report.cluster_s, 2), "write_s": round(report.write_s, 2),
                "users_written": report.n_users, "write_users_per_s": round(report.writes_per_s),
                "write_commands_per_s": round(2 * report.writes_per_s),
                "redis_mb_per_1k_users": round((used_after - used_before) / 1e6 / max(report.n_users / 1000, 1), 3),
                "k": report.k, "k_rule": report.k_rule, "silhouette": report.silhouette, "sizes": report.sizes,
                "vector_kind": report.vector_kind},
        "reads": reads,
        "read_server_us_per_call": round(server_us, 1),
        "target": {"read_p99_ms": 1.0,
                   "met": all(r["p99_ms"] <= 1.0 for k, r in reads.items() if k != "PING (floor)")},
        "load_avg_1m_at_end": os.getloadavg()[0],
    }

    print()
    print(report.summary())
    print()
    print(f"{'stage':<28}{'value':>16}")
    for label, value in [
        ("users / events", f"{len(frames.users):,} / {len(frames.events):,}"),
        ("job wall time", f"{job_s:.1f} s"),
        ("  features", f"{report.features_s:.1f} s"),
        ("  k choice + k-means", f"{report.cluster_s:.1f} s"),
        ("  Redis write", f"{report.write_s:.1f} s"),
        ("write throughput", f"{report.writes_per_s:,.0f} users/s"),
        ("Redis memory / 1k users", f"{result['job']['redis_mb_per_1k_users']:.3f} MB"),
        ("k (silhouette)", f"{report.k} ({report.silhouette or 0:.3f})"),
    ]:
        print(f"{label:<28}{value:>16}")
    print()
    print(f"{'segments_for':<16}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'max ms':>9}{'n':>8}")
    for label, r in reads.items():
        print(f"{label:<16}{r['p50_ms']:>9.3f}{r['p95_ms']:>9.3f}{r['p99_ms']:>9.3f}{r['max_ms']:>9.3f}{r['n']:>8}")
    print(f"Redis server time per read script: {server_us:.1f} us")
    print(f"target p99 <= 1 ms: {'met' if result['target']['met'] else 'NOT met'} "
          f"(host load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cpus)")

    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = RESULTS_DIR / f"segments-{datetime.now(timezone.utc):%Y%m%dT%H%M%S}.json"
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")

    if args.keep:
        print(f"kept keys under {redis_settings.key_prefix!r}")
    else:
        batch: list[str] = []
        for key in client.scan_iter(match=f"{redis_settings.key_prefix}*", count=10_000):
            batch.append(key)
            if len(batch) >= 10_000:
                client.unlink(*batch)
                batch.clear()
        if batch:
            client.unlink(*batch)
    store.close()
    client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
