"""Benchmark: the near-real-time path: events/s consumed, and freshness lag until a has_child search sees an event.

    .venv/bin/python bench/bench_freshness.py [--data DIR] [--burst 20000] [--rate 20] [--seconds 30]

Builds the items index from --data (default <data_dir>/synth, the 100k-item marketplace) under a
throw-away alias and Redis key prefix, exactly as ``hotfeed index full`` does, then:

1. throughput: appends --burst events at once to the stream and runs the consumer
   (``IncrementalIndexer.run_until_idle``, as ``hotfeed index incremental``) until the stream is
   drained; events/s = events read / seconds;
2. freshness: runs the consumer in a thread (``run_forever``, as ``hotfeed index incremental
   --follow``), appends one event at a time at --rate events/s for --seconds to distinct random
   active items, and polls the engine every --poll-ms with one has_child search over the items
   still waiting: an event counts as visible when its item has a child in cohort ``all`` written
   after the benchmark started (no earlier event touched that item). Lag = first poll that sees
   it - the moment it was appended; p50/p99/max against the 5 s target.

No user segments are published under the throw-away prefix, so each event updates the ``all``
child and its platform's child (a known user with segments would touch a few more cohorts).
Everything it wrote is deleted at the end (unless --keep).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from indexer.incremental import IncrementalIndexer
from indexer.rebuild import load_marketplace, rebuild_index
from recommender.engine import open_engine
from recommender.settings import Settings, load_settings
from recommender.stores import open_redis
from recommender.stores.cohort_maxima import CohortMaxima
from recommender.stores.events import EventStream
from recommender.stores.popular import PopularStore
from recommender.stores.segments import RedisSegmentStore

RESULTS_DIR = Path(__file__).resolve().parent / "results"
TARGET_P99_S = 5.0
_TYPES = np.array(["view", "click", "like", "chat", "purchase"])
_TYPE_P = np.array([0.70, 0.18, 0.07, 0.04, 0.01])
_PLATFORMS = np.array(["ios", "android", "web"])


def _events(item_ids: np.ndarray, users: np.ndarray, rng: np.random.Generator) -> list[dict]:
    """Return one interaction event per item id (now, a random known user, type and platform)."""
    n = len(item_ids)
    return [
        {"type": str(kind), "item_id": str(item), "user_id": str(user), "platform": str(plat)}
        for item, user, kind, plat in zip(
            item_ids, rng.choice(users, n), rng.choice(_TYPES, n, p=_TYPE_P), rng.choice(_PLATFORMS, n)
        )
    ]


def _indexer(engine, settings: Settings, consumer: str) -> IncrementalIndexer:
    return IncrementalIndexer(
        engine, EventStream(settings.redis), RedisSegmentStore(settings.redis),
        CohortMaxima(settings.redis, half_life_h=settings.indexer.popularity_half_life_h), settings,
        consumer=consumer,
    )


def _percentiles(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    arr = np.asarray(values)
    return {
        "n": len(values),
        "p50_s": round(float(np.percentile(arr, 50)), 3),
        "p90_s": round(float(np.percentile(arr, 90)), 3),
        "p99_s": round(float(np.percentile(arr, 99)), 3),
        "max_s": round(float(arr.max()), 3),
    }


def _measure_lag(settings: Settings, items: np.ndarray, users: np.ndarray, *, rate: float, seconds: float,
                 poll_ms: int, rng: np.random.Generator) -> tuple[dict, dict]:
    """Return (lag percentiles, details) of events appended one at a time while a consumer follows."""
    alias = settings.engine.index_alias
    consumer_engine, poll_engine = open_engine(settings), open_engine(settings)
    stream = EventStream(settings.redis)
    stop = threading.Event()
    indexer = _indexer(consumer_engine, settings, "bench-follow")
    follower = threading.Thread(target=indexer.run_forever, args=(stop,), kwargs={"block_ms": 1000}, daemon=True)
    follower.start()
    n_events = int(rate * seconds)
    targets = rng.choice(items, size=n_events, replace=False)
    events = _events(targets, users, rng)
    started_ms = int(time.time() * 1000)
    appended: dict[str, float] = {}
    seen: dict[str, float] = {}
    lock = threading.Lock()
    producing = threading.Event()
    producing.set()
    searches = []

    def poll() -> None:
        while producing.is_set() or len(seen) < len(appended):
            with lock:
                waiting = [item for item in appended if item not in seen]
            if waiting:
                body = {
                    "size": len(waiting),
                    "_source": False,
                    "query": {"bool": {"filter": [
                        {"ids": {"values": waiting}},
                        {"has_child": {"type": "popularity", "query": {"bool": {"filter": [
                            {"term": {"cohort": "all"}},
                            {"range": {"updated_at": {"gte": started_ms}}},
                        ]}}}},
                    ]}},
                }
                t0 = time.monotonic()
                hits = poll_engine.search(alias, body).hits
                now = time.monotonic()
                searches.append(now - t0)
                with lock:
                    for hit in hits:
                        seen.setdefault(hit.id, now)
            if time.monotonic() - last_append[0] > 30:
                break  # an event never became visible: report it as missing, do not hang
            time.sleep(poll_ms / 1000)

    last_append = [time.monotonic()]
    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    interval = 1.0 / rate
    next_at = time.monotonic()
    for event in events:
        time.sleep(max(0.0, next_at - time.monotonic()))
        with lock:
            appended[event["item_id"]] = time.monotonic()
        stream.append([event])
        last_append[0] = time.monotonic()
        next_at += interval
    producing.clear()
    poller.join(timeout=60)
    stop.set()
    follower.join(timeout=30)
    lags = [seen[item] - t for item, t in appended.items() if item in seen]
    details = {
        "events": n_events,
        "visible": len(lags),
        "missing": n_events - len(lags),
        "rate_per_s": rate,
        "poll_ms": poll_ms,
        "poll_search_p50_ms": round(float(np.percentile(searches, 50)) * 1000, 1) if searches else None,
        "refresh_interval": settings.engine.refresh_interval,
    }
    consumer_engine.close()
    poll_engine.close()
    return _percentiles(lags), details


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, help="folder with items/users/events.parquet (default: <data_dir>/synth)")
    parser.add_argument("--burst", type=int, default=20_000, help="events appended at once for throughput")
    parser.add_argument("--rate", type=float, default=20.0, help="events/s appended one at a time for lag")
    parser.add_argument("--seconds", type=float, default=30.0, help="how long to append at --rate")
    parser.add_argument("--poll-ms", type=int, default=50, help="pause between visibility searches")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", action="store_true", help="keep the index and Redis keys")
    args = parser.parse_args(argv)

    base = load_settings()
    data_dir = args.data or base.paths.data_dir / "synth"
    run_id = uuid.uuid4().hex[:8]
    settings: Settings = base.model_copy(update={
        "engine": base.engine.model_copy(update={"index_alias": f"hfbench-{run_id}-items"}),
        "redis": base.redis.model_copy(update={"key_prefix": f"hfbench-{run_id}:"}),
    })
    alias = settings.engine.index_alias
    engine = open_engine(settings)
    redis = open_redis(settings.redis)
    rng = np.random.default_rng(args.seed)
    loadavg_before = [round(x, 2) for x in os.getloadavg()]
    try:
        data = load_marketplace(data_dir)
        print(f"building the index under {alias} from {data_dir} ...", flush=True)
        report = rebuild_index(
            engine, data, settings, popular=PopularStore(settings.redis),
            maxima=CohortMaxima(settings.redis, half_life_h=settings.indexer.popularity_half_life_h),
            show_progress=False,
        )
        print(report.summary(), flush=True)
        active = data.items.loc[data.items["status"] == "active", "item_id"].astype(str).to_numpy()
        users = data.users["user_id"].astype(str).to_numpy()

        # 1. Throughput: a burst, drained by one consumer.
        stream = EventStream(settings.redis)
        burst = _events(rng.choice(active, size=args.burst), users, rng)
        t0 = time.monotonic()
        stream.append(burst)
        append_s = time.monotonic() - t0
        consumer = _indexer(engine, settings, "bench-burst")
        drained = consumer.run_until_idle()
        throughput = {
            "events": args.burst,
            "append_s": round(append_s, 2),
            "read": drained.read,
            "acked": drained.acked,
            "dead": drained.dead,
            "failed": drained.failed,
            "children_written": drained.children_written,
            "seconds": round(drained.seconds, 2),
            "events_per_s": round(drained.read / drained.seconds) if drained.seconds else 0,
            "batch_size": consumer.batch_size,
            "summary": drained.summary(),
        }
        print(f"throughput: {drained.summary()}", flush=True)

        # 2. Freshness lag at a steady rate.
        print(f"freshness: {int(args.rate * args.seconds)} events at {args.rate:g}/s ...", flush=True)
        lag, details = _measure_lag(settings, active, users, rate=args.rate, seconds=args.seconds,
                                    poll_ms=args.poll_ms, rng=rng)
    finally:
        if not args.keep:
            engine.drop_items_alias(alias)
            keys = list(redis.scan_iter(match=f"{settings.redis.key_prefix}*"))
            if keys:
                redis.delete(*keys)
        engine.close()
    result = {
        "benchmark": "freshness",
        "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "params": {"data": str(data_dir), "items": len(data.items), "index_docs": report.parents + report.children,
                   "burst": args.burst, "rate": args.rate, "seconds": args.seconds, "poll_ms": args.poll_ms},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "loadavg_before": loadavg_before, "loadavg_after": [round(x, 2) for x in os.getloadavg()]},
        "throughput": throughput,
        "lag": lag,
        "lag_details": details,
        "target_p99_s": TARGET_P99_S,
        "met": bool(lag.get("p99_s") is not None and lag["p99_s"] <= TARGET_P99_S and details["missing"] == 0),
    }
    print()
    print(f"{'measure':<34}{'value':>14}")
    print(f"{'events/s consumed (burst)':<34}{throughput['events_per_s']:>14,}")
    print(f"{'popularity docs written':<34}{throughput['children_written']:>14,}")
    print(f"{'dead / left pending':<34}{throughput['dead']:>7} / {throughput['failed']:<5}")
    for key in ("p50_s", "p90_s", "p99_s", "max_s"):
        print(f"{'freshness lag ' + key[:-2] + ' (s)':<34}{lag.get(key, float('nan')):>14.3f}")
    print(f"{'events visible / appended':<34}{details['visible']:>7} / {details['events']:<5}")
    print(f"p99 target <= {TARGET_P99_S:g} s: {'MET' if result['met'] else 'MISSED'}; load average "
          f"{result['machine']['loadavg_before']} before, {result['machine']['loadavg_after']} after "
          f"({os.cpu_count()} cores); refresh_interval {details['refresh_interval']}")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = RESULTS_DIR / f"freshness-{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
