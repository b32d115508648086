"""The feed query alone, against the live items index: each retrieval lever side by side.

For a sample of real viewers (segments and cluster centroids read from Redis as the
recommender reads them), builds the HomeFeed query of each variant, runs them interleaved
(so load drifts hit all alike), and reports the engine's own ``took`` and the client-side
time, p50 and p99. Then runs the served query once with the Profile API and prints which
clause costs what, and the query versus fetch phase.

Variants (each one change from ``lean``, the shape the recommender sends):

    source      hits load the stored source (the old shape: ``_source`` minus the vector)
    lean        no stored fields; item id and category from doc values
    join-0.05   lean, children below a 0.05 normalized score skipped before the join
    join-0.2    lean, the same at 0.2 (a tighter bound on the join)
    no-join     lean without the has_child clause (what the join costs at all)
    no-knn      lean without the kNN clause
    no-window   lean without the candidate window (every active item scored)
    knn-50      lean with kNN k=50 (num_candidates 200) instead of 100 (400)
    knn-20      lean with kNN k=20 (num_candidates 100)
    tuned       knn-50 and join-0.05 together
    knn-postregion-K   tuned, but the kNN pre-filter leaves out the region (the feed's own
                filter still applies it, after kNN): k=K neighbours, ~1/regions of them eligible

    .venv/bin/python bench/bench_engine_query.py [--queries 300] [--users 300]

Writes bench/results/engine_query.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import orjson
import yaml

from recommender.engine import dialect, open_engine
from recommender.profiles import dump_profile, load_default_profile, parse_profile, read_item_fields
from recommender.query import FeedContext, build_feed_query
from recommender.settings import load_settings
from recommender.stores.segments import RedisSegmentStore

RESULTS = Path(__file__).resolve().parent / "results"


def _profile_variants(fields) -> dict[str, object]:
    base = yaml.safe_load(dump_profile(load_default_profile(fields=fields)))

    def changed(fn) -> object:
        data = json.loads(json.dumps(base))
        fn(data)
        return parse_profile(yaml.safe_dump(data), fields=fields)

    def component(data, type_):
        return next(c for c in data["components"] if c["type"] == type_)

    def set_(d, k, v):
        d[k] = v

    return {
        "lean": changed(lambda d: None),
        "join-0.05": changed(lambda d: set_(component(d, "cohort_popularity"), "min_child_score", 0.05)),
        "join-0.2": changed(lambda d: set_(component(d, "cohort_popularity"), "min_child_score", 0.2)),
        "no-join": changed(lambda d: set_(component(d, "cohort_popularity"), "weight", 0.0)),
        "no-knn": changed(lambda d: set_(component(d, "knn"), "weight", 0.0)),
        "no-window": changed(lambda d: set_(d["filters"], "candidate_window_h", None)),
        "knn-50": changed(lambda d: component(d, "knn").update(k=50, num_candidates=200)),
        "knn-20": changed(lambda d: component(d, "knn").update(k=20, num_candidates=100)),
        "tuned": changed(lambda d: (component(d, "knn").update(k=50, num_candidates=200),
                                    component(d, "cohort_popularity").update(min_child_score=0.05))),
    }


def _source_shape(body: dict) -> dict:
    out = {k: v for k, v in body.items() if k not in ("stored_fields", "docvalue_fields")}
    out["_source"] = {"excludes": ["embedding"]}
    return out


def _knn_without_region(body: dict, k: int) -> dict:
    """Return ``body`` with the region term dropped from the kNN pre-filter and kNN k set to ``k``."""
    body = json.loads(json.dumps(body))

    def walk(node):
        if isinstance(node, dict):
            if "knn" in node and isinstance(node["knn"], dict) and "query_vector" in node["knn"]:
                spec = node["knn"]
                spec["k"], spec["num_candidates"] = k, max(k, spec["num_candidates"])
                spec["filter"] = [f for f in spec["filter"] if not (isinstance(f, dict) and "region" in f.get("term", {}))]
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(body["query"])
    return body


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return round(values[min(len(values) - 1, int(len(values) * q))], 2)


def _profile_breakdown(engine, alias: str, body: dict) -> dict:
    answer = engine._request("POST", f"/{alias}/_search",
                             body=orjson.dumps(dialect.render_search(engine.kind, {**body, "profile": True})),
                             what="profiling the feed query")
    shard = answer["profile"]["shards"][0]
    search = shard["searches"][0]
    clauses = []

    def walk(node, depth):
        clauses.append({"depth": depth, "type": node["type"], "description": node["description"][:90],
                        "ms": round(node["time_in_nanos"] / 1e6, 2)})
        for child in node.get("children", []):
            if depth < 3:
                walk(child, depth + 1)

    for q in search["query"]:
        walk(q, 0)
    fetch = shard.get("fetch", {})
    return {
        "took_ms": answer["took"],
        "query_ms": round(sum(q["time_in_nanos"] for q in search["query"]) / 1e6, 2),
        "collector_ms": round(sum(c["time_in_nanos"] for c in search.get("collector", [])) / 1e6, 2),
        "fetch_ms": round(fetch.get("time_in_nanos", 0) / 1e6, 2),
        "clauses": clauses,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=300, help="queries per variant (default: %(default)s)")
    parser.add_argument("--users", type=int, default=300, help="viewers sampled (default: %(default)s)")
    parser.add_argument("--variants", default="source,lean,join-0.05,join-0.2,no-join,no-knn,no-window",
                        help="comma-separated (default: %(default)s)")
    args = parser.parse_args()
    settings = load_settings()
    fields = read_item_fields(settings.paths.mappings_dir)
    profiles = _profile_variants(fields)
    engine = open_engine(settings)
    alias = settings.engine.index_alias
    segments = RedisSegmentStore(settings.redis)
    import pandas as pd

    users = pd.read_parquet(settings.paths.data_dir / "synth" / "users.parquet", columns=["user_id", "region"])
    sample = users.sample(n=min(args.users, len(users)), random_state=3)
    now = datetime.now(timezone.utc)
    contexts = []
    for user_id, region in zip(sample["user_id"].astype(str), sample["region"].fillna("").astype(str)):
        viewer = segments.viewer(user_id, region=region or None)
        vector = viewer.centroid if viewer.centroid is not None and len(viewer.centroid) == settings.engine.embedding_dims else None
        contexts.append(FeedContext(cohorts=viewer.segments.cohorts, region=region,
                                    query_vector=tuple(vector) if vector is not None else None, page_size=20,
                                    exploration_salt=user_id))
    wanted = [v for v in args.variants.split(",") if v]

    def body_of(variant: str, context: FeedContext) -> dict:
        if variant == "source":
            return _source_shape(build_feed_query(profiles["lean"], context, now=now))
        if variant.startswith("knn-postregion"):
            k = int(variant.rsplit("-", 1)[1])
            return _knn_without_region(build_feed_query(profiles["tuned"], context, now=now), k)
        return build_feed_query(profiles[variant], context, now=now)

    for context in contexts[:20]:  # warm caches for every variant
        for variant in wanted:
            engine.search(alias, body_of(variant, context))
    took = {v: [] for v in wanted}
    client = {v: [] for v in wanted}
    hits = {v: [] for v in wanted}
    rng = random.Random(5)
    for _ in range(args.queries):
        context = contexts[rng.randrange(len(contexts))]
        order = wanted[:]
        rng.shuffle(order)
        for variant in order:
            started = time.perf_counter()
            result = engine.search(alias, body_of(variant, context))
            client[variant].append((time.perf_counter() - started) * 1000)
            took[variant].append(result.took_ms)
            hits[variant].append(len(result.hits))
    load = os.getloadavg()
    print(f"\nfeed query on {settings.engine.kind} index {alias!r}, {args.queries} queries per variant "
          f"(load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, {os.cpu_count()} cores)")
    print(f"{'variant':<11} {'took p50':>8} {'took p99':>8} {'client p50':>10} {'client p99':>10} {'hits':>5}")
    rows = []
    for v in wanted:
        row = {"variant": v, "took_p50_ms": statistics.median(took[v]), "took_p99_ms": _pct(took[v], 0.99),
               "client_p50_ms": round(statistics.median(client[v]), 2), "client_p99_ms": _pct(client[v], 0.99),
               "hits_mean": round(statistics.mean(hits[v]), 1)}
        rows.append(row)
        print(f"{v:<11} {row['took_p50_ms']:>8} {row['took_p99_ms']:>8} {row['client_p50_ms']:>10} "
              f"{row['client_p99_ms']:>10} {row['hits_mean']:>5}")
    profile = {v: _profile_breakdown(engine, alias, body_of(v, contexts[0])) for v in ("source", "lean") if v in wanted}
    for v, p in profile.items():
        print(f"\nprofile of {v!r}: took {p['took_ms']} ms = query {p['query_ms']} + collector {p['collector_ms']} "
              f"+ fetch {p['fetch_ms']} ms")
        for c in p["clauses"]:
            print(f"  {'  ' * c['depth']}{c['type']:<28} {c['ms']:>8} ms  {c['description']}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "engine_query.json"
    out.write_text(json.dumps({"rows": rows, "profile": profile, "load_avg": load, "engine": settings.engine.kind,
                               "at": time.time()}, indent=2))
    print(f"\nwrote {out}")
    engine.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
