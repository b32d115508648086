"""End-to-end HomeFeed over gRPC: p50, p99 and requests/s at 1, 8 and 32 concurrent clients.

Runs against the live items index (build it first: `hotfeed data synth --items 100000
--users 50000 --days 14 --seed 7 --end now && hotfeed index full`), the local Redis, and a
recommender started by this script as a separate process (`hotfeed serve`), so the client
threads here do not share a GIL with the server. Variants, each a score profile saved in
Redis and chosen per request (the `profile` field), make each stage's cost visible:

    full          the default profile (cohort popularity + kNN + decays + rerank)
    no-rerank     rerank.blend = 0 (engine order)
    no-knn        kNN weight 0 (no vector clause)
    no-join       cohort popularity weight 0 (no has_child clause)

and a baseline of the old batch design: a gRPC server (same proto) answering each request
with a list precomputed per segment and stored in Redis, one GET per request. Results are
printed as a table (with ratios to the baseline) and written to bench/results/grpc_feed.json.

    .venv/bin/python bench/bench_grpc_feed.py [--requests 400] [--clients 1,8,32]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from concurrent import futures
from pathlib import Path

import grpc

from recommender._generated.hotfeed.v1 import recommender_pb2 as pb
from recommender._generated.hotfeed.v1 import recommender_pb2_grpc as pb_grpc
from recommender.profiles import read_item_fields
from recommender.settings import load_settings
from recommender.stores import open_redis
from recommender.stores.profiles import ProfileStore
from recommender.stores.segments import RedisSegmentStore

RESULTS = Path(__file__).resolve().parent / "results"


def _variants(store: ProfileStore) -> dict[str, str]:
    base = store.ensure_default().text
    texts = {
        "full": base,
        "no-rerank": base.replace("blend: 0.5", "blend: 0.0"),
        "no-knn": base.replace("  - type: knn\n    weight: 2.0", "  - type: knn\n    weight: 0.0"),
        "no-join": base.replace("  - type: cohort_popularity\n    weight: 1.0", "  - type: cohort_popularity\n    weight: 0.0"),
    }
    for name, text in texts.items():
        if name != "full" and text == base:
            raise SystemExit(f"could not derive the {name!r} profile from default.yaml; update the bench")
        store.save(f"bench-{name}", text.replace("name: default", f"name: bench-{name}"), author="bench")
    return {name: f"bench-{name}" for name in texts}


class _BaselineServicer(pb_grpc.RecommenderServicer):
    """The old batch design: a precomputed list per segment in Redis, one GET per request."""

    def __init__(self, settings, segments: RedisSegmentStore):
        self.redis = open_redis(settings.redis)
        self.prefix = f"{settings.redis.key_prefix}bench:segment-list:"
        self.segments = segments

    def HomeFeed(self, request, context):
        segs = self.segments.segments_for(request.user_id or None, region=request.region or None)
        raw = self.redis.get(self.prefix + segs.cohorts[0]) or self.redis.get(self.prefix + "all") or "[]"
        ids = json.loads(raw)[: request.page_size]
        return pb.FeedResponse(items=[pb.FeedItem(item_id=i, score=1.0) for i in ids],
                               served_from=pb.SERVED_FROM_CACHE)


def _precompute_segment_lists(settings, engine_alias: str) -> int:
    """Store the top 200 active items of every cohort as a JSON list (what a nightly batch job wrote)."""
    from recommender.engine import open_engine

    engine = open_engine(settings)
    agg = engine._request("POST", f"/{engine_alias}/_search", body={
        "size": 0, "query": {"term": {"relation": "popularity"}},
        "aggs": {"c": {"terms": {"field": "cohort", "size": 500}}}}, what="listing cohorts")
    cohorts = [b["key"] for b in agg["aggregations"]["c"]["buckets"]]
    client = open_redis(settings.redis)
    for cohort in cohorts:
        body = {"size": 200, "_source": ["item_id"], "query": {"has_child": {
            "type": "popularity", "score_mode": "max",
            "query": {"function_score": {"query": {"term": {"cohort": cohort}},
                                         "field_value_factor": {"field": "score"}, "boost_mode": "replace"}}}}}
        ids = [h.id for h in engine.search(engine_alias, body).hits]
        client.set(f"{settings.redis.key_prefix}bench:segment-list:{cohort}", json.dumps(ids))
    engine.close()
    return len(cohorts)


def _run_level(target: str, requests: list[pb.HomeFeedRequest], clients: int) -> dict:
    channel = grpc.insecure_channel(target)
    stub = pb_grpc.RecommenderStub(channel)
    stub.HomeFeed(requests[0], timeout=30)  # warm the channel
    latencies: list[float] = []
    errors = 0
    fallbacks = 0
    lock = threading.Lock()

    def one(req: pb.HomeFeedRequest) -> None:
        nonlocal errors, fallbacks
        started = time.perf_counter()
        try:
            page = stub.HomeFeed(req, timeout=30)
            ok_fallback = page.served_from == pb.SERVED_FROM_FALLBACK
        except grpc.RpcError:
            with lock:
                errors += 1
            return
        with lock:
            latencies.append((time.perf_counter() - started) * 1000)
            fallbacks += ok_fallback

    started = time.perf_counter()
    with futures.ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, requests))
    wall = time.perf_counter() - started
    channel.close()
    latencies.sort()
    return {
        "clients": clients,
        "requests": len(requests),
        "errors": errors,
        "fallbacks": fallbacks,
        "p50_ms": round(statistics.median(latencies), 2) if latencies else None,
        "p99_ms": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], 2) if latencies else None,
        "rps": round(len(latencies) / wall, 1),
    }


def _wait_for(target: str, proc: subprocess.Popen | None, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"the recommender exited with code {proc.returncode}; see bench/results/serve.log")
        try:
            grpc.channel_ready_future(grpc.insecure_channel(target)).result(timeout=1)
            return
        except grpc.FutureTimeoutError:
            continue
    raise SystemExit(f"no recommender on {target} after {timeout_s}s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=400, help="requests per variant and concurrency level")
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument("--port", type=int, default=50071)
    parser.add_argument("--engine-timeout-ms", type=int, default=80)
    parser.add_argument("--variants", default="full,no-rerank,no-knn,no-join,baseline")
    args = parser.parse_args()
    settings = load_settings()
    RESULTS.mkdir(parents=True, exist_ok=True)
    levels = [int(c) for c in args.clients.split(",")]
    wanted = args.variants.split(",")

    store = ProfileStore(settings.redis, fields=read_item_fields(settings.paths.mappings_dir))
    profiles = _variants(store)
    import pandas as pd

    users = pd.read_parquet(settings.paths.data_dir / "synth" / "users.parquet", columns=["user_id", "region"])
    rng = random.Random(7)
    sample = users.sample(n=min(5000, len(users)), random_state=7)
    people = list(zip(sample["user_id"].astype(str), sample["region"].fillna("").astype(str)))

    def requests(profile: str) -> list[pb.HomeFeedRequest]:
        out = []
        for n in range(args.requests):
            user, region = people[rng.randrange(len(people))]
            out.append(pb.HomeFeedRequest(user_id=user, region=region, page_size=20, profile=profile,
                                          session_id=f"bench-{profile}-{n}"))
        return out

    target = f"127.0.0.1:{args.port}"
    env = {**os.environ, "HOTFEED_SERVER_PORT": str(args.port), "HOTFEED_SERVER_METRICS_PORT": "0",
           "HOTFEED_SERVER_ENGINE_TIMEOUT_MS": str(args.engine_timeout_ms)}
    log = open(RESULTS / "serve.log", "w")
    server = subprocess.Popen([sys.executable, "-m", "recommender.cli", "serve"], env=env, stdout=log, stderr=log)
    rows = []
    try:
        _wait_for(target, server)
        print(f"recommender up on {target} (engine deadline {args.engine_timeout_ms} ms); "
              f"model checkpoint {settings.model.checkpoint} {'present' if settings.model.checkpoint.exists() else 'ABSENT: rerank off'}",
              flush=True)
        for variant in [v for v in wanted if v != "baseline"]:
            for clients in levels:
                row = {"variant": variant, **_run_level(target, requests(profiles[variant]), clients)}
                rows.append(row)
                print(json.dumps(row), flush=True)
    finally:
        server.terminate()
        server.wait(timeout=30)
    if "baseline" in wanted:
        n = _precompute_segment_lists(settings, settings.engine.index_alias)
        base_server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
        pb_grpc.add_RecommenderServicer_to_server(_BaselineServicer(settings, RedisSegmentStore(settings.redis)),
                                                  base_server)
        port = base_server.add_insecure_port("127.0.0.1:0")
        base_server.start()
        try:
            for clients in levels:
                row = {"variant": "baseline", **_run_level(f"127.0.0.1:{port}", requests(""), clients)}
                rows.append(row)
                print(json.dumps(row), flush=True)
        finally:
            base_server.stop(1)
        print(f"(baseline: {n} per-cohort lists precomputed into Redis)")

    baseline = {r["clients"]: r for r in rows if r["variant"] == "baseline"}
    print(f"\n{'variant':<10} {'clients':>7} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8} {'fallbacks':>9} "
          f"{'p99 / baseline':>14} {'rps / baseline':>14}")
    for r in rows:
        b = baseline.get(r["clients"])
        p99_ratio = f"{r['p99_ms'] / b['p99_ms']:.1f}x" if b and b["p99_ms"] else "-"
        rps_ratio = f"{r['rps'] / b['rps']:.2f}x" if b and b["rps"] else "-"
        print(f"{r['variant']:<10} {r['clients']:>7} {r['p50_ms']:>8} {r['p99_ms']:>8} {r['rps']:>8} "
              f"{r['fallbacks']:>9} {p99_ratio:>14} {rps_ratio:>14}")
    out = RESULTS / "grpc_feed.json"
    out.write_text(json.dumps({"rows": rows, "load_avg": os.getloadavg(), "engine": settings.engine.kind,
                               "index": settings.engine.index_alias, "at": time.time()}, indent=2))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
