"""``hotfeed cluster run`` (once) and ``hotfeed cluster schedule`` (every N minutes).

Registered through the ``hotfeed.commands`` entry-point group (pyproject.toml).
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from datetime import datetime, timezone
from pathlib import Path

from typing import TYPE_CHECKING

from recommender.cli import env_default
from recommender.errors import HotfeedError, InvalidRequest
from recommender.settings import Settings

if TYPE_CHECKING:
    import pandas as pd

    from clustering.job import ClusteringReport

# pandas, torch and the job are imported by the handlers: `hotfeed --help` stays fast.

__all__ = ["register"]

_log = logging.getLogger("hotfeed.clustering")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``cluster run`` and ``cluster schedule`` to the ``hotfeed`` command."""
    cluster = subparsers.add_parser(
        "cluster", help="user segments and behaviour clusters into Redis",
        description="Compute every active user's segment (cohorts, top categories, behaviour cluster) from the "
        "events and publish them to Redis (HOTFEED_REDIS_URL) as a new version, once or every N minutes.",
    )
    sub = cluster.add_subparsers(dest="cluster_command", metavar="ACTION", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data", type=Path, default=None,
                       help="folder with events.parquet, items.parquet, users.parquet, as written by "
                            f"`hotfeed data synth` {env_default('paths', 'data_dir', '/synth')}")
        p.add_argument("--embeddings", type=Path, default=None,
                       help="item embeddings (.npz with item_ids + vectors, or .parquet with item_id + "
                            "embedding); default: category-affinity user vectors")
        p.add_argument("--k", type=int, default=None, help="fix the number of clusters, 1-1024; left out, the setting "
                       f"decides, where 0 picks k by best silhouette {env_default('clustering', 'k')}")
        p.add_argument("--keep-previous", action="store_true", help="keep the replaced version for rollback")
        p.add_argument("--no-progress", action="store_true", help="hide progress bars")
        p.add_argument("--no-export", action="store_true",
                       help="skip writing $HOTFEED_PATHS_ARTIFACTS_DIR/clustering/user_segments.parquet")

    run = sub.add_parser(
        "run", help="segment every active user once, publish a new version",
        description="Segment every active user once from the data folder's events, write the segments to Redis "
        "as a new version, and print a summary.",
    )
    common(run)
    run.add_argument("--now", default=None,
                     help="reference time (ISO-8601); default: the latest event in the data")
    run.set_defaults(handler=_run_once)

    schedule = sub.add_parser(
        "schedule", help="run the clustering job every N minutes until SIGINT/SIGTERM",
        description="Run the clustering job now and then every N minutes until SIGINT or SIGTERM; a failed run "
        "publishes nothing and the next one tries again.",
    )
    common(schedule)
    schedule.add_argument("--every-minutes", type=int, default=None,
                          help=f"interval in minutes {env_default('clustering', 'every_minutes')}")
    schedule.set_defaults(handler=_run_scheduled)


def _one_run(args: argparse.Namespace, settings: Settings, *, now: pd.Timestamp | None) -> ClusteringReport:
    import torch

    from clustering.features import load_item_embeddings
    from clustering.job import load_frames, run_clustering
    from recommender.stores.segments import open_segment_store

    clustering = settings.clustering
    if args.k is not None:
        if not 1 <= args.k <= 1024:
            raise InvalidRequest(f"--k {args.k!r} must be between 1 and 1024; leave it out to use the k rule")
        clustering = clustering.model_copy(update={"k": args.k})
    if clustering.torch_threads:
        torch.set_num_threads(clustering.torch_threads)
    store = open_segment_store(settings.redis)
    try:
        # Fail in a second, not after a minute of features and k-means, when Redis is down.
        store.current_version()
        data_dir = args.data or settings.paths.data_dir / "synth"
        frames = load_frames(data_dir)
        embeddings = load_item_embeddings(args.embeddings) if args.embeddings else None
        export = None if args.no_export else settings.paths.artifacts_dir / "clustering" / "user_segments.parquet"
        return run_clustering(frames, store, clustering, now=now, item_embeddings=embeddings,
                              keep_previous=args.keep_previous, export_path=export, progress=not args.no_progress)
    finally:
        store.close()


def _parse_now(text: str | None) -> pd.Timestamp | None:
    import pandas as pd

    if text is None:
        return None
    try:
        ts = pd.Timestamp(text)
    except ValueError:
        raise InvalidRequest(f"--now {text!r} is not an ISO-8601 time; use e.g. 2026-11-22T15:00:00Z") from None
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts


def _run_once(args: argparse.Namespace, settings: Settings) -> int:
    report = _one_run(args, settings, now=_parse_now(args.now))
    print(report.summary())
    return 0


def _run_scheduled(args: argparse.Namespace, settings: Settings) -> int:
    # Imported here so `hotfeed --help` does not pay for apscheduler.
    from apscheduler.schedulers.background import BackgroundScheduler

    every = args.every_minutes or settings.clustering.every_minutes
    if every < 1:
        raise InvalidRequest(f"--every-minutes {every!r} must be at least 1")
    stop = threading.Event()
    runs = {"ok": 0, "failed": 0}

    def job() -> None:
        try:
            report = _one_run(args, settings, now=None)
        except HotfeedError as exc:
            # Redis or the data may be back by the next tick; a failed run publishes nothing.
            runs["failed"] += 1
            _log.error("clustering run failed: %s", exc)
            return
        runs["ok"] += 1
        print(report.summary(), flush=True)

    scheduler = BackgroundScheduler(timezone="UTC")
    # coalesce + max_instances=1: a slow run delays the next one instead of overlapping it.
    scheduler.add_job(job, "interval", minutes=every, next_run_time=datetime.now(timezone.utc),
                      max_instances=1, coalesce=True, id="cluster-run")

    def on_signal(signum: int, _frame: object) -> None:
        _log.info("got %s; finishing the current run, then stopping", signal.Signals(signum).name)
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    scheduler.start()
    _log.info("clustering every %d min; SIGINT or SIGTERM stops after the current run", every)
    try:
        while not stop.wait(1.0):
            pass
    finally:
        scheduler.shutdown(wait=True)
        for s, handler in previous.items():
            signal.signal(s, handler)
    print(f"cluster schedule: stopped after {runs['ok']} run(s), {runs['failed']} failed")
    return 0
