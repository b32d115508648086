"""The README's demo: the whole pipeline on this machine, printed as it goes.

    services up -> synthetic marketplace -> session model trained -> user segments in Redis
    -> index built (model vectors, cohort popularity incl. behaviour clusters) -> gRPC
    recommender started -> home feeds with explanations, a product feed, similar items -> a burst of requests timed

Sizes are small by default so it finishes in a few minutes on 2 cores; `--items`,
`--users`, `--days` and `--epochs` scale it. Every step runs the same code as its `hotfeed`
command; the demo's data lives in data/demo, its model at the default checkpoint
(HOTFEED_MODEL_CHECKPOINT, artifacts/model/model.pt), where `hotfeed serve` finds it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc

from recommender._generated.hotfeed.v1 import recommender_pb2 as pb
from recommender._generated.hotfeed.v1 import recommender_pb2_grpc as pb_grpc
from recommender.engine import open_engine
from recommender.errors import HotfeedError
from recommender.redact import redact_url
from devservices.local import local_services
from recommender.settings import load_settings

HOTFEED = [sys.executable, "-m", "recommender.cli"]


def _stage(title: str) -> float:
    print(f"\n== {title}", flush=True)
    return time.monotonic()


def _done(started: float) -> None:
    print(f"   ({time.monotonic() - started:.1f}s)", flush=True)


def _run(*args: str, env: dict[str, str] | None = None) -> None:
    print("   $ hotfeed " + " ".join(args), flush=True)
    proc = subprocess.run([*HOTFEED, *args], env=env)
    if proc.returncode != 0:
        raise HotfeedError(f"`hotfeed {' '.join(args)}` failed with exit code {proc.returncode}")


def _export_item_vectors(checkpoint: Path, out: Path) -> Path:
    """Write the model's item vectors as .npz (item_ids, vectors), the clustering job's input."""
    import numpy as np

    from recommender.model.serving import SessionScorer

    ids, vectors = SessionScorer.load(checkpoint, device="cpu").item_embeddings()
    np.savez(out, item_ids=np.asarray(ids), vectors=vectors)
    print(f"   item vectors of {len(ids):,} items -> {out}")
    return out


def _print_feed(title: str, page: pb.FeedResponse, *, explain: bool, limit: int = 5) -> None:
    served = pb.ServedFrom.Name(page.served_from).removeprefix("SERVED_FROM_").lower()
    print(f"   {title}: {len(page.items)} items from {served}, profile {page.profile_version}, "
          f"model {page.model_version or 'none'}")
    for d in page.degradations:
        print(f"     degraded at {d.stage}: {d.reason}")
    for item in page.items[:limit]:
        line = f"     {item.item_id:<10} score {item.score:.3f}"
        if explain and item.component_scores:
            parts = sorted(item.component_scores.items(), key=lambda kv: -kv[1])
            line += "  " + " ".join(f"{k}={v:.2f}" for k, v in parts if v)
        print(line)


def _burst(target: str, user_ids: list[str], region: str, *, requests: int, clients: int) -> tuple[list[float], float, int]:
    """Return (latencies in ms, wall seconds, feeds served by the popular fallback)."""
    channel = grpc.insecure_channel(target)
    stub = pb_grpc.RecommenderStub(channel)
    latencies: list[float] = []
    fallbacks = 0
    lock = threading.Lock()

    def one(n: int) -> None:
        nonlocal fallbacks
        started = time.perf_counter()
        page = stub.HomeFeed(pb.HomeFeedRequest(user_id=user_ids[n % len(user_ids)], region=region, page_size=20,
                                                session_id=f"burst-{n}"))
        with lock:
            latencies.append((time.perf_counter() - started) * 1000)
            fallbacks += page.served_from == pb.SERVED_FROM_FALLBACK

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, range(requests)))
    wall = time.perf_counter() - started
    channel.close()
    return latencies, wall, fallbacks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=20_000, help="items in the synthetic marketplace "
                        "(default: %(default)s)")
    parser.add_argument("--users", type=int, default=8_000, help="users in the synthetic marketplace "
                        "(default: %(default)s)")
    parser.add_argument("--days", type=float, default=7, help="days of synthetic events (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=2, help="training epochs of the session model "
                        "(default: %(default)s)")
    parser.add_argument("--requests", type=int, default=200, help="HomeFeed calls in the timed burst "
                        "(default: %(default)s)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients in the burst (default: %(default)s)")
    args = parser.parse_args()

    # The demo is a development run: the public cursor secret and no service token are fine here.
    os.environ.setdefault("HOTFEED_DEV_MODE", "1")
    base = load_settings()
    data_dir = base.paths.data_dir / "demo"
    # The default checkpoint (HOTFEED_MODEL_CHECKPOINT) that `hotfeed train` writes and
    # `hotfeed serve` loads, so serving after the demo reranks with the demo's model.
    checkpoint = base.model.checkpoint or base.paths.artifacts_dir / "model" / "model.pt"

    env = {**os.environ, "HOTFEED_MODEL_CHECKPOINT": str(checkpoint)}
    settings = base.model_copy(update={"model": base.model.model_copy(update={"checkpoint": checkpoint})})

    t = _stage("1/7 services")
    for service in local_services(settings.services):
        print("   " + service.up().line(), flush=True)
    engine = open_engine(settings)
    caps = engine.capabilities()
    print(f"   engine for the demo: {caps.kind} {caps.version} at {redact_url(settings.engine.url)} "
          f"(join={'yes' if caps.join else 'no'}, knn={'yes' if caps.knn else 'no'})")
    _done(t)

    t = _stage("2/7 synthetic marketplace (ends now, so freshness is live)")
    _run("data", "synth", "--items", str(args.items), "--users", str(args.users), "--days", str(args.days),
         "--seed", "7", "--end", "now", "--out", str(data_dir))
    _done(t)

    t = _stage("3/7 session model (TailNet-style) trained on the synthetic sessions")
    _run("train", "--events", str(data_dir / "events.parquet"), "--model", "tailnet", "--epochs", str(args.epochs),
         "--out", str(checkpoint), env=env)
    _done(t)

    t = _stage("4/7 user segments and behaviour clusters into Redis")
    # Clustering on the model's item vectors puts the cluster centroids in the index's vector
    # space, so a cold user's cluster centroid can serve as the kNN query vector.
    vectors = _export_item_vectors(checkpoint, checkpoint.with_suffix(".vectors.npz"))
    _run("cluster", "run", "--data", str(data_dir), "--embeddings", str(vectors), "--no-progress", env=env)
    _done(t)

    t = _stage("5/7 items index: model vectors + cohort popularity children, alias swap")
    _run("index", "full", "--data", str(data_dir), env=env)
    _done(t)

    t = _stage("6/7 gRPC recommender")
    from recommender.service.server import start_server

    running = start_server(settings, port=0)
    target = f"127.0.0.1:{running.port}"
    print(f"   listening on {target}; engine deadline {settings.server.engine_timeout_ms} ms")
    # start_server warmed the engine and the model with a few feeds before listening.
    warm = pb_grpc.RecommenderStub(grpc.insecure_channel(target))
    warm_ms = []
    for n in range(3):
        started = time.perf_counter()
        warm.HomeFeed(pb.HomeFeedRequest(session_id=f"warm-{n}", page_size=5))
        warm_ms.append((time.perf_counter() - started) * 1000)
    print("   first calls: " + ", ".join(f"{ms:.0f} ms" for ms in warm_ms))
    _done(t)

    import pandas as pd

    users = pd.read_parquet(data_dir / "users.parquet")
    known = users.dropna(subset=["gender", "birth_year", "region"]).head(3)
    region = str(known["region"].iloc[0])
    stub = pb_grpc.RecommenderStub(grpc.insecure_channel(target))
    t = _stage("7/7 feeds")
    for row in known.itertuples():
        started = time.perf_counter()
        page = stub.HomeFeed(pb.HomeFeedRequest(user_id=row.user_id, region=row.region, page_size=10, explain=True))
        ms = (time.perf_counter() - started) * 1000
        _print_feed(f"home feed of {row.user_id} ({row.gender}, born {row.birth_year}, {row.region}) in {ms:.0f} ms",
                    page, explain=True)
    first = known.iloc[0]
    item = page.items[0].item_id
    page = stub.ProductFeed(pb.ProductFeedRequest(user_id=first.user_id, region=first.region, item_id=item,
                                                  page_size=10, explain=True))
    _print_feed(f"product feed for {first.user_id} on item {item}", page, explain=True)
    page = stub.SimilarItems(pb.SimilarItemsRequest(item_id=item, page_size=5))
    _print_feed(f"similar to {item}", page, explain=False)
    second = stub.HomeFeed(pb.HomeFeedRequest(user_id=first.user_id, region=first.region, page_size=10,
                                              cursor=stub.HomeFeed(pb.HomeFeedRequest(
                                                  user_id=first.user_id, region=first.region, page_size=10)).next_cursor))
    _print_feed("infinite scroll, page 2", second, explain=False, limit=3)

    latencies, wall, fallbacks = _burst(target, users["user_id"].head(500).tolist(), region,
                                        requests=args.requests, clients=args.clients)
    latencies.sort()
    p50 = statistics.median(latencies)
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    load = os.getloadavg()
    print(f"\n   burst: {args.requests} HomeFeed calls from {args.clients} clients: p50 {p50:.1f} ms, "
          f"p99 {p99:.1f} ms, {args.requests / wall:.0f} requests/s, {fallbacks} of {args.requests} "
          f"({100 * fallbacks / args.requests:.1f}%) served by the popular fallback "
          f"(load average {load[0]:.2f}; bench/bench_grpc_feed.py measures this properly, open loop)")
    _done(t)
    running.stop(grace_s=1)
    engine.close()
    print(f"\ndemo done. Services keep running (`hotfeed services down` stops them); `hotfeed serve` "
          f"serves this index with the demo's model ({checkpoint}).")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except HotfeedError as exc:
        print(f"demo: error: {exc}", file=sys.stderr)
        sys.exit(1)
