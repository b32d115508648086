"""Benchmark: the near-real-time catalog under feed load: listing -> feed latency, listing upserts/s,
and a model hot swap (errors, publish -> served time).

    .venv/bin/python bench/bench_listings.py --model-a A.pt --model-b B.pt [--data DIR]
        [--listings 300] [--listing-rate 5] [--feed-rate 20] [--burst 5000]

Builds the items index from --data (default <data_dir>/synth) with model A's vectors under a
throw-away alias and Redis key prefix, starts `hotfeed serve` (model A, the production engine
deadline) and `hotfeed index incremental --follow` as their own processes, and keeps an
open-loop HomeFeed load of --feed-rate feeds/s (random users of the data, their recent items
as the session) running through every phase:

1. listing -> feed: --listings item events appended (XADD) at --listing-rate/s, each a new
   listing in a region of its own; a poller asks HomeFeed(region=that region) every 50 ms
   until the listing is on the first page. Latency = that moment - the XADD;
2. upserts/s: --burst new listings appended at once; upserts/s = burst / seconds until the
   consumer group has nothing pending or unread;
3. hot swap: model B is published (`hotfeed model publish`); publish -> served = the first
   feed response carrying B's version - the publish. Every feed of the run counts towards
   errors (non-OK gRPC status) and fallbacks.

Prints a table with the load average, writes bench/results/listings.json, deletes what it wrote.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import grpc
import numpy as np

from _load import FeedLoad
from _report import RESULTS, load_line, print_measures, write_report
from indexer.rebuild import load_marketplace, rebuild_index
from recommender._generated.hotfeed.v1 import recommender_pb2 as pb
from recommender._generated.hotfeed.v1 import recommender_pb2_grpc as pb_grpc
from recommender.engine import open_engine
from recommender.model.checkpoint import load_checkpoint
from recommender.model.publish import publish_checkpoint
from recommender.settings import ModelSettings, Settings, load_settings
from recommender.stores import open_redis
from recommender.stores.cohort_maxima import CohortMaxima
from recommender.stores.events import INDEXER_GROUP, EventStream
from recommender.stores.popular import PopularStore

TARGET_P99_S = 2.0


def _pct(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    arr = np.asarray(values)
    return {"n": len(values), **{f"p{q}_s": round(float(np.percentile(arr, q)), 3) for q in (50, 90, 99)},
            "max_s": round(float(arr.max()), 3)}


def _listing(item_id: str, region: str, rng: np.random.Generator, categories: list[str]) -> dict:
    return {"type": "item", "item_id": item_id, "title": f"bench listing {item_id}",
            "category": str(rng.choice(categories)), "price": float(round(rng.lognormal(3, 1), 2)), "region": region,
            "seller_id": f"seller-{int(rng.integers(1000))}"}


def _measure_listing_latency(stub, stream: EventStream, *, run_id: str, n: int, rate: float,
                             rng: np.random.Generator, categories: list[str]) -> list[float]:
    appended: dict[str, tuple[str, float]] = {}
    seen: dict[str, float] = {}
    lock = threading.Lock()
    done = threading.Event()

    def poll() -> None:
        while not done.is_set() or len(seen) < len(appended):
            with lock:
                waiting = [(item, region) for item, (region, _) in appended.items() if item not in seen]
            for item, region in waiting:
                try:
                    page = stub.HomeFeed(pb.HomeFeedRequest(session_id=f"poll-{item}", region=region, page_size=5),
                                         timeout=10)
                except grpc.RpcError:
                    continue
                if any(i.item_id == item for i in page.items):
                    with lock:
                        seen[item] = time.time()
            if waiting and time.time() - min(appended[i][1] for i, _ in waiting) > 60:
                break  # a listing not visible after a minute: reported as missing
            time.sleep(0.05)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    start = time.monotonic()
    for k in range(n):
        delay = start + k / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        item, region = f"{run_id}-new-{k}", f"benchland-{run_id}-{k}"
        stream.append([_listing(item, region, rng, categories)])
        with lock:
            appended[item] = (region, time.time())
    done.set()
    poller.join(timeout=120)
    return [seen[i] - t for i, (_, t) in appended.items() if i in seen] + \
        [float("inf")] * sum(i not in seen for i in appended)


def _measure_burst(settings: Settings, stream: EventStream, *, run_id: str, n: int,
                   rng: np.random.Generator, categories: list[str]) -> dict:
    events = [_listing(f"{run_id}-burst-{k}", f"burstland-{k % 50}", rng, categories) for k in range(n)]
    started = time.monotonic()
    stream.append(events)
    while True:
        backlog = stream.backlog(INDEXER_GROUP)
        if backlog["pending"] == 0 and backlog["lag"] == 0:
            break
        time.sleep(0.05)
    seconds = time.monotonic() - started
    return {"listings": n, "seconds": round(seconds, 2), "upserts_per_s": round(n / seconds, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, help="marketplace folder (default: <data_dir>/synth)")
    parser.add_argument("--model-a", type=Path, required=True, help="checkpoint served first (its vectors are indexed)")
    parser.add_argument("--model-b", type=Path, help="checkpoint published during the run (default: no hot swap)")
    parser.add_argument("--listings", type=int, default=300, help="listings timed to the feed (default: %(default)s)")
    parser.add_argument("--listing-rate", type=float, default=5.0, help="listings/s (default: %(default)s)")
    parser.add_argument("--feed-rate", type=float, default=20.0, help="background feeds/s (default: %(default)s)")
    parser.add_argument("--burst", type=int, default=5000, help="listings appended at once (default: %(default)s)")
    parser.add_argument("--port", type=int, default=50081, help="recommender port (default: %(default)s)")
    parser.add_argument("--keep", action="store_true", help="keep the index and Redis keys (default: delete)")
    args = parser.parse_args()

    base = load_settings()
    run_id = uuid.uuid4().hex[:8]
    settings: Settings = base.model_copy(update={
        "engine": base.engine.model_copy(update={"index_alias": f"hfbench-{run_id}-items"}),
        "redis": base.redis.model_copy(update={"key_prefix": f"hfbench-{run_id}:"}),
        "model": ModelSettings(checkpoint=args.model_a.resolve(), device="cpu"),
    })
    data_dir = args.data or settings.paths.data_dir / "synth"
    RESULTS.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    engine = open_engine(settings)
    market = load_marketplace(data_dir)
    print(f"building the index from {data_dir} ({len(market.items):,} items) under {settings.engine.index_alias}",
          flush=True)
    rebuild_index(engine, market, settings, popular=PopularStore(settings.redis),
                  maxima=CohortMaxima(settings.redis, half_life_h=settings.indexer.popularity_half_life_h),
                  show_progress=False)
    env = {**os.environ, "HOTFEED_DEV_MODE": "1", "HOTFEED_SERVER_PORT": str(args.port),
           "HOTFEED_SERVER_METRICS_PORT": "0", "HOTFEED_ENGINE_INDEX_ALIAS": settings.engine.index_alias,
           "HOTFEED_REDIS_KEY_PREFIX": settings.redis.key_prefix, "HOTFEED_MODEL_CHECKPOINT": str(args.model_a.resolve()),
           "HOTFEED_MODEL_DEVICE": "cpu", "HOTFEED_MODEL_POLL_MS": "500"}
    logs = [open(RESULTS / name, "w") for name in ("listings-serve.log", "listings-indexer.log")]
    server = subprocess.Popen([sys.executable, "-m", "recommender.cli", "serve"], env=env, stdout=logs[0],
                              stderr=logs[0])
    indexer = subprocess.Popen([sys.executable, "-m", "recommender.cli", "index", "incremental", "--follow"],
                               env=env, stdout=logs[1], stderr=logs[1])
    report: dict = {"at": time.time(), "cores": os.cpu_count(), "items": len(market.items),
                    "feed_rate": args.feed_rate, "engine": settings.engine.kind}
    try:
        target = f"127.0.0.1:{args.port}"
        grpc.channel_ready_future(grpc.insecure_channel(target)).result(timeout=180)
        channel = grpc.insecure_channel(target)
        stub = pb_grpc.RecommenderStub(channel)
        users = market.users[["user_id", "region"]].sample(n=min(3000, len(market.users)), random_state=7)
        events = market.events[market.events["user_id"].isin(set(users["user_id"]))].sort_values("ts")
        recent = events.groupby("user_id")["item_id"].agg(lambda s: tuple(s.astype(str).tail(5)))
        people = [(u, r, recent.get(u, ())) for u, r in zip(users["user_id"].astype(str),
                                                             users["region"].fillna("").astype(str))]
        categories = sorted(market.items["category"].astype(str).unique().tolist())
        stream = EventStream(settings.redis)
        load = FeedLoad(stub, people, args.feed_rate)
        load.start()
        time.sleep(3)
        print(f"feed load {args.feed_rate:g}/s running; {load_line()}", flush=True)
        phases: dict[str, dict] = {}

        def phase_counts(name: str, before: tuple[int, int, int]) -> None:
            after = load.counts()
            phases[name] = dict(zip(("sent", "errors", "fallbacks"), (a - b for a, b in zip(after, before))))

        mark = load.counts()
        latencies = _measure_listing_latency(stub, stream, run_id=run_id, n=args.listings, rate=args.listing_rate,
                                             rng=rng, categories=categories)
        report["listing_to_feed"] = {**_pct([v for v in latencies if np.isfinite(v)]),
                                     "missing": int(sum(not np.isfinite(v) for v in latencies)),
                                     "target_p99_s": TARGET_P99_S, "load_avg": os.getloadavg()}
        print(f"listing -> feed: {report['listing_to_feed']}", flush=True)
        phase_counts("listings", mark)
        mark = load.counts()
        report["burst"] = {**_measure_burst(settings, stream, run_id=run_id, n=args.burst, rng=rng,
                                            categories=categories), "load_avg": os.getloadavg()}
        print(f"burst: {report['burst']}", flush=True)
        phase_counts("burst", mark)
        mark = load.counts()
        if args.model_b is not None:
            version_b = load_checkpoint(args.model_b).version
            published_at = time.time()
            publish_checkpoint(args.model_b, settings)
            deadline = time.monotonic() + 120
            while version_b not in load.first_seen and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(5)  # keep the load on after the swap
            seen = load.first_seen.get(version_b)
            report["hot_swap"] = {"version": version_b,
                                  "publish_to_served_s": round(seen - published_at, 3) if seen else None,
                                  "load_avg": os.getloadavg()}
            print(f"hot swap: {report['hot_swap']}", flush=True)
            phase_counts("hot_swap", mark)
        load.stop()
        report["phases"] = phases
        report["feeds"] = {"sent": load.sent, "errors": load.errors, "fallbacks": load.fallbacks,
                           "error_samples": load.error_samples}
        channel.close()
    finally:
        for proc in (server, indexer):
            proc.terminate()
        for proc in (server, indexer):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        if not args.keep:
            engine.drop_items_alias(settings.engine.index_alias)
            redis = open_redis(settings.redis)
            keys = list(redis.scan_iter(match=f"{settings.redis.key_prefix}*"))
            if keys:
                redis.delete(*keys)
        engine.close()

    lf, burst, feeds = report.get("listing_to_feed", {}), report.get("burst", {}), report.get("feeds", {})
    swap = report.get("hot_swap", {})
    print_measures([
        ("listing -> feed p50 (s)", lf.get("p50_s")), ("listing -> feed p99 (s)", lf.get("p99_s")),
        ("listing -> feed max (s)", lf.get("max_s")), ("listings timed / missing", f"{lf.get('n')} / {lf.get('missing')}"),
        ("listing upserts/s (burst)", burst.get("upserts_per_s")),
        ("hot swap publish -> served (s)", swap.get("publish_to_served_s")),
        ("feeds sent / errors / fallbacks", f"{feeds.get('sent')} / {feeds.get('errors')} / {feeds.get('fallbacks')}"),
        *[(f"  during {name}", f"{c['sent']} / {c['errors']} / {c['fallbacks']}")
          for name, c in report.get("phases", {}).items()],
    ], name_width=34)
    print(load_line())
    write_report(report, "listings.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
