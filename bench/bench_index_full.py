"""Benchmark: a full rebuild of the items index (100k items, ~1M popularity children) on this machine.

    .venv/bin/python bench/bench_index_full.py [--data DIR] [--concurrency N] [--chunk-docs N] [--no-recall]

Reads the synthetic marketplace from --data (default <data_dir>/synth; made with
``hotfeed data synth --items 100000 --users 50000 --days 14 --seed 7`` when missing), then runs
one ``rebuild_index`` exactly as ``hotfeed index full`` does, but under a throw-away alias
(``hfbench-<id>-items``) and Redis key prefix, so the live index and fallback are untouched.
Everything it wrote is deleted at the end (unless --keep).

Figures: wall time of load + rebuild against the 120 s target, each stage (popularity,
vectors, bulk, verify, swap), bulk docs/s per part with the p50/p99 latency of one bulk
request, CPU seconds spent by this process and by the engine, the load average (the machine
has 2 cores and other jobs may run), and recall@10 of the index's kNN against exact search
over the same vectors (the HNSW build settings trade that against bulk speed).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from indexer.embeddings import item_vectors
from indexer.rebuild import load_marketplace, rebuild_index
from recommender.engine import open_engine
from recommender.settings import Settings, load_settings
from recommender.stores import open_redis
from recommender.stores.cohort_maxima import CohortMaxima
from recommender.stores.popular import PopularStore

RESULTS_DIR = Path(__file__).resolve().parent / "results"
TARGET_S = 120.0
SYNTH_ARGS = ["--items", "100000", "--users", "50000", "--days", "14", "--seed", "7"]


def _percentile_ms(seconds: list[float], q: float) -> float:
    return round(float(np.percentile(seconds, q)) * 1000, 1) if seconds else 0.0


def _engine_cpu_s(engine) -> float:
    """Return the engine node's total process CPU seconds (from node stats)."""
    stats = engine._request("GET", "/_nodes/_local/stats/process", what="reading node stats")
    node = next(iter(stats["nodes"].values()))
    return node["process"]["cpu"]["total_in_millis"] / 1000


def _engine_info(engine) -> dict:
    info = engine._request("GET", "/_nodes/_local/jvm", params={"filter_path": "nodes.*.jvm"}, what="reading jvm")
    jvm = next(iter(info["nodes"].values()))["jvm"]
    return {
        "kind": engine.kind,
        "version": engine.capabilities().version,
        "java": jvm.get("version"),
        "heap_max_mb": round(jvm["mem"]["heap_max_in_bytes"] / 2**20),
    }


def _index_stats(engine, index: str) -> dict:
    """Return where the engine spent its time on the new index: indexing, merges, refresh, flush."""
    stats = engine._request("GET", f"/{index}/_stats/indexing,merge,refresh,flush,segments",
                            what="reading index stats")["_all"]["primaries"]
    return {
        "index_time_s": round(stats["indexing"]["index_time_in_millis"] / 1000, 1),
        "merge_time_s": round(stats["merges"]["total_time_in_millis"] / 1000, 1),
        "merges": stats["merges"]["total"],
        "merges_running": stats["merges"]["current"],
        "refresh_time_s": round(stats["refresh"]["total_time_in_millis"] / 1000, 1),
        "flushes": stats["flush"]["total"],
        "segments": stats["segments"]["count"],
    }


def _knn_recall(engine, index: str, vectors: np.ndarray, item_ids: list[str], *, queries: int, k: int,
                num_candidates: int, seed: int = 0) -> float:
    """Return mean recall@k of the engine's kNN against exact cosine search over ``vectors``."""
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(item_ids), size=min(queries, len(item_ids)), replace=False)
    found = []
    for pos in picks:
        exact = np.argpartition(-(vectors @ vectors[pos]), k)[:k]
        body = {
            "size": k,
            "_source": False,
            "query": {"knn": {"field": "embedding", "query_vector": vectors[pos].tolist(), "k": k,
                              "num_candidates": num_candidates}},
        }
        got = {hit.id for hit in engine.search(index, body).hits}
        found.append(len(got & {item_ids[i] for i in exact}) / k)
    return float(np.mean(found))


def _print_table(result: dict) -> None:
    r = result["rebuild"]
    print()
    print(f"{'stage':<28}{'seconds':>10}{'share':>8}")
    total = result["wall_s"]
    for name, seconds in [("load (read + validate)", result["load_s"])] + list(r["stage_s"].items()):
        print(f"{name:<28}{seconds:>10.1f}{seconds / total:>8.0%}")
    print(f"{'total (load + rebuild)':<28}{total:>10.1f}   target <= {TARGET_S:.0f} s: "
          f"{'MET' if total <= TARGET_S else 'MISSED'}")
    print()
    print(f"{'bulk part':<12}{'docs':>11}{'seconds':>9}{'docs/s':>9}{'req p50 ms':>12}{'req p99 ms':>12}"
          f"{'retries':>9}{'failed':>8}")
    for part, b in r["bulk"].items():
        print(f"{part:<12}{b['docs']:>11,}{b['seconds']:>9.1f}{b['docs_per_s']:>9,.0f}{b['request_p50_ms']:>12.0f}"
              f"{b['request_p99_ms']:>12.0f}{b['retries']:>9}{b['failed']:>8}")
    print()
    m = result["machine"]
    print(f"docs/s over the whole rebuild: {r['docs_per_s']:,.0f}; CPU: python {m['python_cpu_s']:.0f} s, "
          f"engine {m['engine_cpu_s']:.0f} s; load average {m['loadavg_before']} before, {m['loadavg_after']} after "
          f"({m['cpus']} cores); engine heap {m['engine']['heap_max_mb']} MB, Java {m['engine']['java']}")
    st = result["engine_index_stats"]
    print(f"engine on the new index: indexing {st['index_time_s']:.0f} s, merges {st['merge_time_s']:.0f} s "
          f"({st['merges']} done, {st['merges_running']} running), refresh {st['refresh_time_s']:.0f} s, "
          f"{st['flushes']} flushes, {st['segments']} segments")
    if result.get("knn"):
        q = result["knn"]
        print(f"kNN recall@{q['k']} (num_candidates {q['num_candidates']}, {q['queries']} queries) vs exact: "
              f"{q['recall']:.3f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, help="folder with items/users/events.parquet (default: <data_dir>/synth)")
    parser.add_argument("--concurrency", type=int, help="bulk requests in flight (default: the setting)")
    parser.add_argument("--chunk-docs", type=int, help="documents per bulk request (default: the setting)")
    parser.add_argument("--no-recall", action="store_true", help="skip the kNN recall check")
    parser.add_argument("--keep", action="store_true", help="keep the index and Redis keys")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)

    base = load_settings()
    data_dir = args.data or base.paths.data_dir / "synth"
    if not (data_dir / "events.parquet").exists():
        print(f"{data_dir} has no data: generating it (hotfeed data synth {' '.join(SYNTH_ARGS)})", flush=True)
        subprocess.run([sys.executable, "-m", "recommender.cli", "data", "synth", *SYNTH_ARGS, "--out", str(data_dir)],
                       check=True)
    run_id = uuid.uuid4().hex[:8]
    indexer = base.indexer.model_copy(update={
        k: v for k, v in {"bulk_concurrency": args.concurrency, "bulk_chunk_docs": args.chunk_docs}.items()
        if v is not None
    })
    settings: Settings = base.model_copy(update={
        "engine": base.engine.model_copy(update={"index_alias": f"hfbench-{run_id}-items"}),
        "redis": base.redis.model_copy(update={"key_prefix": f"hfbench-{run_id}:"}),
        "indexer": indexer,
    })
    engine = open_engine(settings)
    request_s: list[float] = []
    send = engine._bulk_request

    def timed_bulk_request(payload, *, what):
        # Wraps the one bulk primitive so the benchmark sees each request's latency.
        started = time.perf_counter()
        try:
            return send(payload, what=what)
        finally:
            request_s.append(time.perf_counter() - started)

    engine._bulk_request = timed_bulk_request
    redis = open_redis(settings.redis)
    loadavg_before = [round(x, 2) for x in os.getloadavg()]
    engine_cpu0, python_cpu0 = _engine_cpu_s(engine), time.process_time()
    alias = settings.engine.index_alias
    try:
        started = time.monotonic()
        data = load_marketplace(data_dir)
        load_s = time.monotonic() - started
        report = rebuild_index(
            engine, data, settings, popular=PopularStore(settings.redis),
            maxima=CohortMaxima(settings.redis, half_life_h=settings.indexer.popularity_half_life_h),
            show_progress=not args.quiet,
        )
        wall_s = time.monotonic() - started
        engine_cpu_s, python_cpu_s = _engine_cpu_s(engine) - engine_cpu0, time.process_time() - python_cpu0
        loadavg_after = [round(x, 2) for x in os.getloadavg()]
        # Bulk requests ran parents first, then children: split the latencies by count.
        n_parent_requests = -(-report.bulk["parents"].ok // settings.indexer.bulk_chunk_docs)
        latencies = {"parents": request_s[:n_parent_requests], "children": request_s[n_parent_requests:]}
        result = {
            "benchmark": "index_full",
            "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "params": {
                "data": str(data_dir),
                "items": len(data.items),
                "users": len(data.users),
                "events": len(data.events),
                "bulk_concurrency": settings.indexer.bulk_concurrency,
                "bulk_chunk_docs": settings.indexer.bulk_chunk_docs,
                "combined_cohorts": settings.indexer.combined_cohorts,
                "refresh_interval_after": settings.engine.refresh_interval,
            },
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "loadavg_before": loadavg_before,
                "loadavg_after": loadavg_after,
                "python_cpu_s": round(python_cpu_s, 1),
                "engine_cpu_s": round(engine_cpu_s, 1),
                "engine": _engine_info(engine),
            },
            "load_s": round(load_s, 2),
            "wall_s": round(wall_s, 2),
            "target_s": TARGET_S,
            "met": wall_s <= TARGET_S,
            "rebuild": {
                "index": report.index,
                "seconds": round(report.seconds, 2),
                "docs": report.parents + report.children,
                "docs_per_s": round(report.docs_per_s),
                "stage_s": {k: round(v, 2) for k, v in report.stage_seconds.items()},
                "bulk": {
                    part: {
                        "docs": b.ok,
                        "seconds": round(b.seconds, 2),
                        "docs_per_s": round(b.ok / b.seconds) if b.seconds else 0,
                        "requests": len(latencies[part]),
                        "request_p50_ms": _percentile_ms(latencies[part], 50),
                        "request_p99_ms": _percentile_ms(latencies[part], 99),
                        "retries": b.retries,
                        "failed": len(b.failed),
                    }
                    for part, b in report.bulk.items()
                },
                "model_version": report.model_version,
                "summary": report.summary(),
            },
        }
        result["engine_index_stats"] = _index_stats(engine, report.index)
        if not args.no_recall:
            # Same inputs and seed as the rebuild, so these are the indexed vectors (not timed).
            vectors = item_vectors(data.items, data.events, dims=settings.engine.embedding_dims,
                                   checkpoint=settings.model.checkpoint).vectors
            ids = data.items["item_id"].astype(str).tolist()
            result["knn"] = {
                "k": 10, "num_candidates": 100, "queries": 200,
                "recall": round(_knn_recall(engine, alias, vectors, ids, queries=200, k=10, num_candidates=100), 4),
            }
    finally:
        if not args.keep:
            engine.drop_items_alias(alias)
            keys = list(redis.scan_iter(match=f"{settings.redis.key_prefix}*"))
            if keys:
                redis.delete(*keys)
        engine.close()
    _print_table(result)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = RESULTS_DIR / f"index-full-{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
