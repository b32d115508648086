"""End-to-end HomeFeed over gRPC: open-loop latency per offered rate, closed-loop throughput,
the stage breakdown, and the batch baseline side by side in one run.

Runs against the live items index (build it first: `bash bench/prepare_100k.sh`), the
local Redis, and a recommender started by this script as a separate process (`hotfeed
serve`), so the load generator here does not share a GIL with the server.

Open loop (default): requests arrive as a Poisson process at each rate of ``--rates`` for
``--duration-s`` seconds, whatever the server's speed; latency counts from the moment a
request was due, so queueing shows (no coordinated omission). Per rate: p50, p99, fallback
share, errors, and the server's own stage means read from its Prometheus endpoint (viewer,
vector, engine, engine ``took``, rerank, page). The knee is the highest rate with p99 <=
50 ms and fallbacks <= 1%.

Closed loop (``--clients 1,8``): N clients call back to back; gives one-client latency and
the saturation throughput.

Variants are score profiles saved in Redis and chosen per request (``--variants``):

    full          the default profile (cohort popularity + kNN + decays + rerank)
    no-rerank     rerank.blend = 0 (engine order)
    no-knn        kNN weight 0 (no vector clause)
    no-join       cohort popularity weight 0 (no has_child clause)
    baseline      the old batch design: a gRPC server (same proto) answering each request
                  with a list precomputed per segment and stored in Redis, one GET per request

Prints tables with the load average and writes bench/results/grpc_feed.json.

    .venv/bin/python bench/bench_grpc_feed.py                       # open loop, 50..200 feeds/s
    .venv/bin/python bench/bench_grpc_feed.py --rates 100 --clients 1,8 --variants full,baseline
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import re
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
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
KNEE_P99_MS = 50.0
KNEE_FALLBACK_SHARE = 0.01


def _variants(store: ProfileStore, extra: dict[str, str]) -> dict[str, str]:
    base = store.ensure_default().text
    texts = {
        **{name: Path(path).read_text() for name, path in extra.items()},
        "full": base,
        "no-rerank": base.replace("blend: 0.5", "blend: 0.0"),
        "no-knn": base.replace("  - type: knn\n    weight: 2.0", "  - type: knn\n    weight: 0.0"),
        "no-join": base.replace("  - type: cohort_popularity\n    weight: 1.0", "  - type: cohort_popularity\n    weight: 0.0"),
    }
    for name, text in texts.items():
        if name not in ("full", *extra) and text == base:
            raise SystemExit(f"could not derive the {name!r} profile from default.yaml; update the bench")
        text = re.sub(r"(?m)^name: .*$", f"name: bench-{name}", text)
        store.save(f"bench-{name}", text, author="bench")
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


def _percentile(sorted_ms: list[float], q: float) -> float | None:
    if not sorted_ms:
        return None
    return round(sorted_ms[min(len(sorted_ms) - 1, int(len(sorted_ms) * q))], 2)


def _summary(latencies: list[float], *, errors: int, fallbacks: int, wall_s: float) -> dict:
    latencies.sort()
    done = len(latencies)
    return {
        "requests": done + errors,
        "errors": errors,
        "fallbacks": fallbacks,
        "fallback_share": round(fallbacks / done, 4) if done else None,
        "p50_ms": round(statistics.median(latencies), 2) if latencies else None,
        "p99_ms": _percentile(latencies, 0.99),
        "rps": round(done / wall_s, 1) if wall_s > 0 else None,
    }


def _run_closed(stub, requests: list[pb.HomeFeedRequest], clients: int) -> dict:
    latencies: list[float] = []
    errors = fallbacks = 0
    lock = threading.Lock()

    def one(req: pb.HomeFeedRequest) -> None:
        nonlocal errors, fallbacks
        started = time.perf_counter()
        try:
            page = stub.HomeFeed(req, timeout=30)
        except grpc.RpcError:
            with lock:
                errors += 1
            return
        with lock:
            latencies.append((time.perf_counter() - started) * 1000)
            fallbacks += page.served_from == pb.SERVED_FROM_FALLBACK

    started = time.perf_counter()
    with futures.ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, requests))
    return _summary(latencies, errors=errors, fallbacks=fallbacks, wall_s=time.perf_counter() - started)


def _run_open(stub, requests: list[pb.HomeFeedRequest], rate: float, *, seed: int) -> dict:
    """Send ``requests`` as a Poisson process at ``rate`` per second; latency from each due time."""
    rng = random.Random(seed)
    latencies: list[float] = []
    errors = fallbacks = 0
    lock = threading.Lock()
    outstanding = threading.Semaphore(0)

    def finish(due: float, call: grpc.Future) -> None:
        nonlocal errors, fallbacks
        done = time.perf_counter()
        try:
            page = call.result()
        except grpc.RpcError:
            with lock:
                errors += 1
        else:
            with lock:
                latencies.append((done - due) * 1000)
                fallbacks += page.served_from == pb.SERVED_FROM_FALLBACK
        outstanding.release()

    gc.collect()
    gc.freeze()  # the generator's own collections must not stall the arrival process
    started = time.perf_counter()
    due = started
    for req in requests:
        due += rng.expovariate(rate)
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        call = stub.HomeFeed.future(req, timeout=30)
        call.add_done_callback(lambda c, d=due: finish(d, c))
    for _ in requests:
        outstanding.acquire()
    return _summary(latencies, errors=errors, fallbacks=fallbacks, wall_s=time.perf_counter() - started)


_METRIC_LINE = re.compile(r'^(hotfeed_stage_seconds|hotfeed_engine_took_seconds)_(sum|count)\{([^}]*)\} (\S+)$')


def _scrape(metrics_url: str | None) -> dict[str, tuple[float, float]]:
    """Return {stage: (sum seconds, count)} of the server's HomeFeed stage histograms."""
    if not metrics_url:
        return {}
    text = urllib.request.urlopen(metrics_url, timeout=5).read().decode()
    out: dict[str, list[float]] = {}
    for line in text.splitlines():
        m = _METRIC_LINE.match(line)
        if not m:
            continue
        name, part, labels, value = m.groups()
        if 'rpc="home"' not in labels:
            continue
        stage = "engine_took" if name == "hotfeed_engine_took_seconds" else re.search(r'stage="([^"]+)"', labels).group(1)
        pair = out.setdefault(stage, [0.0, 0.0])
        pair[0 if part == "sum" else 1] += float(value)
    return {k: (v[0], v[1]) for k, v in out.items()}


def _stage_means(before: dict, after: dict) -> dict[str, float]:
    means = {}
    for stage, (total, count) in after.items():
        total0, count0 = before.get(stage, (0.0, 0.0))
        if count - count0 > 0:
            means[stage] = round((total - total0) / (count - count0) * 1000, 2)
    return means


def _wait_for(target: str, proc: subprocess.Popen | None, timeout_s: float = 180) -> None:
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


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} ({os.cpu_count()} cores)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", default="50,100,150,200",
                        help="open-loop offered rates, feeds/s (default: %(default)s; '' for none)")
    parser.add_argument("--duration-s", type=float, default=20.0, help="seconds per open-loop rate (default: %(default)s)")
    parser.add_argument("--clients", default="1,8", help="closed-loop client counts (default: %(default)s; '' for none)")
    parser.add_argument("--requests", type=int, default=400, help="requests per closed-loop level (default: %(default)s)")
    parser.add_argument("--port", type=int, default=50071, help="port of the recommender started here (default: %(default)s)")
    parser.add_argument("--metrics-port", type=int, default=50072, help="its Prometheus port (default: %(default)s)")
    parser.add_argument("--engine-timeout-ms", type=int, default=80,
                        help="engine deadline of the recommender (default: %(default)s, the production default)")
    parser.add_argument("--variants", default="full,baseline",
                        help="full,no-rerank,no-knn,no-join,baseline (default: %(default)s)")
    parser.add_argument("--session-items", type=int, default=5,
                        help="recent items each request sends as its session (default: %(default)s; 0: none)")
    parser.add_argument("--target", default="",
                        help="HOST:PORT of a recommender already running (default: start one here); "
                             "its stage means come from --metrics-url")
    parser.add_argument("--metrics-url", default="", help="Prometheus URL of the --target recommender")
    parser.add_argument("--profile-file", action="append", default=[], metavar="NAME=YAML",
                        help="an extra variant: the score profile in YAML saved as bench-NAME (repeatable)")
    parser.add_argument("--warmup", type=int, default=200, help="calls before measuring each variant (default: %(default)s)")
    args = parser.parse_args()
    settings = load_settings()
    RESULTS.mkdir(parents=True, exist_ok=True)
    rates = [float(r) for r in args.rates.split(",") if r]
    levels = [int(c) for c in args.clients.split(",") if c]
    wanted = [v for v in args.variants.split(",") if v]

    store = ProfileStore(settings.redis, fields=read_item_fields(settings.paths.mappings_dir))
    extra = dict(item.split("=", 1) for item in args.profile_file)
    profiles = _variants(store, extra)
    import pandas as pd

    users = pd.read_parquet(settings.paths.data_dir / "synth" / "users.parquet", columns=["user_id", "region"])
    rng = random.Random(7)
    sample = users.sample(n=min(5000, len(users)), random_state=7)
    # Each viewer scrolls with the last items they looked at as the session (recent_item_ids),
    # so every feed runs the session encoder and the rerank of 200 candidates.
    events = pd.read_parquet(settings.paths.data_dir / "synth" / "events.parquet", columns=["user_id", "item_id", "ts"])
    events = events[events["user_id"].isin(set(sample["user_id"]))].sort_values("ts")
    recent = events.groupby("user_id")["item_id"].agg(lambda s: tuple(s.astype(str).tail(args.session_items)))
    people = [(u, r, recent.get(u, ()) if args.session_items else ())
              for u, r in zip(sample["user_id"].astype(str), sample["region"].fillna("").astype(str))]
    counter = iter(range(10**9))

    def requests(profile: str, n: int) -> list[pb.HomeFeedRequest]:
        out = []
        for _ in range(n):
            user, region, session = people[rng.randrange(len(people))]
            out.append(pb.HomeFeedRequest(user_id=user, region=region, page_size=20, profile=profile,
                                          session_id=f"bench-{next(counter)}", recent_item_ids=session))
        return out

    def measure(variant: str, stub, profile: str, metrics_url: str | None) -> list[dict]:
        rows = []
        _run_closed(stub, requests(profile, args.warmup), 2)
        for clients in levels:
            row = {"variant": variant, "mode": "closed", "clients": clients,
                   **_run_closed(stub, requests(profile, args.requests), clients), "load_avg": os.getloadavg()}
            rows.append(row)
            print(json.dumps(row), flush=True)
        for n, rate in enumerate(rates):
            before = _scrape(metrics_url)
            reqs = requests(profile, max(int(rate * args.duration_s), 1))
            row = {"variant": variant, "mode": "open", "rate": rate, **_run_open(stub, reqs, rate, seed=n),
                   "stages_ms": _stage_means(before, _scrape(metrics_url)), "load_avg": os.getloadavg()}
            rows.append(row)
            print(json.dumps(row), flush=True)
        return rows

    rows: list[dict] = []
    serving = [v for v in wanted if v != "baseline"]
    if serving and args.target:
        print(f"recommender at {args.target} (started elsewhere); {_load()}", flush=True)
        channel = grpc.insecure_channel(args.target)
        _wait_for(args.target, None)
        stub = pb_grpc.RecommenderStub(channel)
        for variant in serving:
            rows += measure(variant, stub, profiles[variant], args.metrics_url or None)
        channel.close()
    elif serving:
        target = f"127.0.0.1:{args.port}"
        env = {**os.environ, "HOTFEED_DEV_MODE": "1", "HOTFEED_SERVER_PORT": str(args.port), "HOTFEED_SERVER_METRICS_PORT": str(args.metrics_port),
               "HOTFEED_SERVER_ENGINE_TIMEOUT_MS": str(args.engine_timeout_ms)}
        metrics_url = f"http://127.0.0.1:{args.metrics_port}/metrics"
        log = open(RESULTS / "serve.log", "w")
        server = subprocess.Popen([sys.executable, "-m", "recommender.cli", "serve"], env=env, stdout=log, stderr=log)
        try:
            _wait_for(target, server)
            ckpt = settings.model.checkpoint
            print(f"recommender up on {target} (engine deadline {args.engine_timeout_ms} ms); model checkpoint "
                  f"{ckpt} {'present' if ckpt.exists() else 'ABSENT: rerank off'}; {_load()}", flush=True)
            channel = grpc.insecure_channel(target)
            stub = pb_grpc.RecommenderStub(channel)
            for variant in serving:
                rows += measure(variant, stub, profiles[variant], metrics_url)
            channel.close()
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
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        try:
            rows += measure("baseline", pb_grpc.RecommenderStub(channel), "", None)
        finally:
            channel.close()
            base_server.stop(1)
        print(f"(baseline: {n} per-cohort lists precomputed into Redis)")

    _print_tables(rows)
    out = RESULTS / "grpc_feed.json"
    out.write_text(json.dumps({"rows": rows, "load_avg_end": os.getloadavg(), "cores": os.cpu_count(),
                               "engine": settings.engine.kind, "index": settings.engine.index_alias,
                               "engine_timeout_ms": args.engine_timeout_ms, "at": time.time(),
                               "knee": _knees(rows)}, indent=2))
    print(f"\nwrote {out}")
    return 0


def _knees(rows: list[dict]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for r in rows:
        if r["mode"] != "open":
            continue
        ok = (r["p99_ms"] is not None and r["p99_ms"] <= KNEE_P99_MS and not r["errors"]
              and (r["fallback_share"] or 0) <= KNEE_FALLBACK_SHARE)
        out.setdefault(r["variant"], None)
        if ok:
            out[r["variant"]] = max(out[r["variant"]] or 0, r["rate"])
    return out


def _print_tables(rows: list[dict]) -> None:
    closed = [r for r in rows if r["mode"] == "closed"]
    opened = [r for r in rows if r["mode"] == "open"]
    base = {r["clients"]: r for r in closed if r["variant"] == "baseline"}
    if closed:
        print(f"\nclosed loop ({_load()})")
        print(f"{'variant':<10} {'clients':>7} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8} {'fallbacks':>9} "
              f"{'p99 / base':>10} {'rps / base':>10}")
        for r in closed:
            b = base.get(r["clients"])
            p99 = f"{r['p99_ms'] / b['p99_ms']:.1f}x" if b and b["p99_ms"] and r["p99_ms"] else "-"
            rps = f"{r['rps'] / b['rps']:.2f}x" if b and b["rps"] and r["rps"] else "-"
            print(f"{r['variant']:<10} {r['clients']:>7} {r['p50_ms']!s:>8} {r['p99_ms']!s:>8} {r['rps']!s:>8} "
                  f"{r['fallbacks']:>9} {p99:>10} {rps:>10}")
    if opened:
        print(f"\nopen loop, Poisson arrivals ({_load()})")
        print(f"{'variant':<10} {'offered/s':>9} {'done/s':>7} {'p50 ms':>8} {'p99 ms':>8} {'fallback':>8} {'errors':>6}  "
              f"stage means ms (server)")
        for r in opened:
            share = f"{100 * r['fallback_share']:.1f}%" if r["fallback_share"] is not None else "-"
            stages = " ".join(f"{k}={v}" for k, v in r.get("stages_ms", {}).items())
            print(f"{r['variant']:<10} {r['rate']:>9.0f} {r['rps']!s:>7} {r['p50_ms']!s:>8} {r['p99_ms']!s:>8} "
                  f"{share:>8} {r['errors']:>6}  {stages}")
        knees = _knees(rows)
        print("knee (highest rate with p99 <= 50 ms and <= 1% fallbacks): "
              + ", ".join(f"{v}: {k if k is not None else 'below the lowest rate'}" for v, k in knees.items()))


if __name__ == "__main__":
    sys.exit(main())
