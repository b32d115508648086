"""Benchmark: cold items (listings the serving model never learned) in feeds vs in clicks, and how
well their content vectors stand in for learned ones.

    .venv/bin/python bench/bench_cold_start.py [--feeds 500] [--target HOST:PORT]

Needs the 100k-item data set and index (bash bench/prepare_100k.sh). Cold = not in the serving
checkpoint's vocabulary (HOTFEED_MODEL_CHECKPOINT). Prints and writes bench/results/cold_start.json:

- clicks: the share of the last day's click-type events (click, like, cart, chat, purchase)
  that went to cold items, and the share of the last day's active items that are cold;
- feeds: the share of first-page slots (HomeFeed, page 20, random users of the data with their
  last 5 items as the session) that hold cold items, and how many of those pages hold any;
- the checkpoint's content-encoder report: held-out items' cosine to their learned vector and
  recall of their 20 learned nearest neighbours, content vector vs the category-mean fill-in;
- every score in those pages is finite (the reranker scores cold items from their vectors).

Starts `hotfeed serve` here unless --target names a running recommender.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys

import grpc
import pandas as pd

from _report import RESULTS, load_line, print_measures, write_report
from recommender._generated.hotfeed.v1 import recommender_pb2 as pb
from recommender._generated.hotfeed.v1 import recommender_pb2_grpc as pb_grpc
from recommender.model.checkpoint import load_checkpoint
from recommender.model.publish import serving_checkpoint
from recommender.settings import load_settings

_CLICKS = ("click", "like", "cart", "chat", "purchase")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--feeds", type=int, default=500, help="first pages requested (default: %(default)s)")
    parser.add_argument("--target", default="", help="HOST:PORT of a running recommender (default: start one)")
    parser.add_argument("--port", type=int, default=50091, help="port of the one started here (default: %(default)s)")
    args = parser.parse_args()
    settings = load_settings()
    data = settings.paths.data_dir / "synth"
    path = serving_checkpoint(settings)
    if path is None:
        raise SystemExit("no serving model: run bash bench/prepare_100k.sh first")
    checkpoint = load_checkpoint(path)
    known = set(checkpoint.vocab.to_list())
    events = pd.read_parquet(data / "events.parquet", columns=["ts", "user_id", "item_id", "event_type"])
    items = pd.read_parquet(data / "items.parquet", columns=["item_id", "status"])
    last_day = events[events["ts"] >= events["ts"].max() - pd.Timedelta(days=1)]
    clicks = last_day[last_day["event_type"].astype(str).isin(_CLICKS)]
    active = items.loc[items["status"] == "active", "item_id"].astype(str)
    report: dict = {
        "checkpoint": str(path), "model_version": checkpoint.version, "model_items": len(known),
        "clicks_last_day": len(clicks),
        "cold_share_of_clicks": round(float((~clicks["item_id"].astype(str).isin(known)).mean()), 4),
        "cold_share_of_active_items": round(float((~active.isin(known)).mean()), 4),
        "content_encoder": checkpoint.content.report if checkpoint.content is not None else None,
    }

    server = None
    target = args.target or f"127.0.0.1:{args.port}"
    if not args.target:
        env = {**os.environ, "HOTFEED_DEV_MODE": "1", "HOTFEED_SERVER_PORT": str(args.port),
               "HOTFEED_SERVER_METRICS_PORT": "0", "HOTFEED_MODEL_POLL_MS": "0"}
        RESULTS.mkdir(parents=True, exist_ok=True)
        log = open(RESULTS / "cold-start-serve.log", "w")
        server = subprocess.Popen([sys.executable, "-m", "recommender.cli", "serve"], env=env, stdout=log, stderr=log)
    try:
        grpc.channel_ready_future(grpc.insecure_channel(target)).result(timeout=180)
        stub = pb_grpc.RecommenderStub(grpc.insecure_channel(target))
        users = pd.read_parquet(data / "users.parquet", columns=["user_id", "region"]).sample(
            n=args.feeds, random_state=11)
        recent = events[events["user_id"].isin(set(users["user_id"]))].sort_values("ts").groupby("user_id")[
            "item_id"].agg(lambda s: tuple(s.astype(str).tail(5)))
        slots = cold = pages_with_cold = engine_pages = 0
        finite = True
        for user, region in zip(users["user_id"].astype(str), users["region"].fillna("").astype(str)):
            page = stub.HomeFeed(pb.HomeFeedRequest(user_id=user, region=region, page_size=20,
                                                    session_id=f"cold-{user}", recent_item_ids=recent.get(user, ()),
                                                    explain=True), timeout=30)
            if page.served_from != pb.SERVED_FROM_ENGINE:
                continue
            engine_pages += 1
            ids = [i.item_id for i in page.items]
            n_cold = sum(i not in known for i in ids)
            slots, cold, pages_with_cold = slots + len(ids), cold + n_cold, pages_with_cold + (n_cold > 0)
            finite &= all(math.isfinite(i.score) and all(math.isfinite(v) for v in i.component_scores.values())
                          for i in page.items)
        report.update({"engine_pages": engine_pages, "slots": slots,
                       "cold_share_of_feed_slots": round(cold / slots, 4) if slots else None,
                       "pages_with_a_cold_item": round(pages_with_cold / engine_pages, 4) if engine_pages else None,
                       "all_scores_finite": finite, "load_avg": os.getloadavg()})
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)

    enc = report["content_encoder"] or {}
    rows = [
        ("model items (learned vectors)", report["model_items"]),
        ("cold share of active items", report["cold_share_of_active_items"]),
        ("cold share of last-day clicks", report["cold_share_of_clicks"]),
        ("cold share of feed slots", report.get("cold_share_of_feed_slots")),
        ("pages with a cold item", report.get("pages_with_a_cold_item")),
        ("all scores finite", report.get("all_scores_finite")),
        ("content: cosine to learned", enc.get("cosine_content")),
        ("category mean: cosine to learned", enc.get("cosine_category_mean")),
        ("content: neighbour recall@20", enc.get("neighbour_recall@20_content")),
        ("category mean: neighbour recall@20", enc.get("neighbour_recall@20_category_mean")),
        ("random: neighbour recall@20", enc.get("neighbour_recall@20_random")),
    ]
    print_measures(rows, name_width=38, value_width=12)
    print(f"{load_line()}; {report.get('engine_pages')} engine-served pages of {args.feeds}")
    write_report(report, "cold_start.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
