"""`hotfeed index full|incremental|rollback|status|schedule` and `hotfeed events push|dead`."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from pathlib import Path

from typing import TYPE_CHECKING

from recommender.cli import env_default
from recommender.engine import open_engine
from recommender.errors import InvalidRequest, NotFound, StoreUnavailable
from recommender.events import parse_event
from recommender.settings import Settings
from recommender.stores.cohort_maxima import CohortMaxima
from recommender.stores.events import INDEXER_GROUP, EventStream
from recommender.stores.popular import PopularStore
from recommender.stores.segments import RedisSegmentStore

if TYPE_CHECKING:
    import pandas as pd

    from indexer.incremental import IncrementalIndexer

# The indexer modules (pandas, torch) are imported by the handlers: `hotfeed --help` stays fast.

__all__ = ["register"]

_log = logging.getLogger("hotfeed.indexer")


def _data_dir(args: argparse.Namespace, settings: Settings) -> Path:
    return Path(args.data) if args.data else settings.paths.data_dir / "synth"


def _maxima(settings: Settings) -> CohortMaxima:
    return CohortMaxima(settings.redis, half_life_h=settings.indexer.popularity_half_life_h)


def behaviour_clusters(settings: Settings, user_ids: list[str], *, chunk: int = 1000) -> pd.Series | None:
    """Return user id -> behaviour cluster from the segment store (None when there are none yet)."""
    import pandas as pd

    store = RedisSegmentStore(settings.redis)
    try:
        if store.current_version() is None:
            _log.info("no user segments in Redis yet: no cluster cohorts (run `hotfeed cluster run` first)")
            return None
        found: dict[str, int] = {}
        for start in range(0, len(user_ids), chunk):
            for seg in store.segments_for_many(user_ids[start:start + chunk]):
                if seg.cluster is not None and seg.cluster_source != "cold_start":
                    found[seg.user_id] = seg.cluster
    except StoreUnavailable as exc:
        _log.warning("segments unreadable, indexing without cluster cohorts: %s", exc)
        return None
    _log.info("cluster cohorts for %d of %d users", len(found), len(user_ids))
    return pd.Series(found, dtype="object") if found else None


def run_full_rebuild(settings: Settings, data_dir: Path, *, show_progress: bool = True):
    """Return the report of one full rebuild from a data folder (used by the CLI, schedule and demo)."""
    from indexer.rebuild import load_marketplace, rebuild_index

    engine = open_engine(settings)
    try:
        # Both services answer before minutes of loading and encoding, or we stop with why.
        engine.health()
        check = RedisSegmentStore(settings.redis)
        try:
            check.current_version()
        finally:
            check.close()
        data = load_marketplace(data_dir)
        clusters = behaviour_clusters(settings, data.users["user_id"].astype(str).tolist())
        return rebuild_index(
            engine, data, settings, popular=PopularStore(settings.redis), maxima=_maxima(settings),
            clusters=clusters, show_progress=show_progress,
        )
    finally:
        engine.close()


def _incremental_indexer(settings: Settings, engine, consumer: str | None = None) -> IncrementalIndexer:
    from indexer.incremental import IncrementalIndexer

    return IncrementalIndexer(
        engine, EventStream(settings.redis), RedisSegmentStore(settings.redis), _maxima(settings), settings,
        consumer=consumer,
    )


def _full(args: argparse.Namespace, settings: Settings) -> int:
    report = run_full_rebuild(settings, _data_dir(args, settings), show_progress=not args.quiet)
    print(report.summary())
    return 0


def _incremental(args: argparse.Namespace, settings: Settings) -> int:
    engine = open_engine(settings)
    indexer = _incremental_indexer(settings, engine, args.consumer)
    if args.follow:
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        print(f"consuming {indexer.stream.key} as {indexer.consumer}; Ctrl-C stops after the current batch", flush=True)
        report = indexer.run_forever(stop)
    else:
        report = indexer.run_until_idle()
    engine.close()
    print(report.summary())
    if report.failed and not args.follow:
        print(f"hotfeed index incremental: {report.failed:,} events are still pending after "
              f"{indexer.drain_retries} replays (the engine did not accept their writes; see the log); "
              "they are kept and replayed by the next run", file=sys.stderr)
        return 1
    return 0


def _rollback(args: argparse.Namespace, settings: Settings) -> int:
    from indexer.rebuild import rollback_index

    engine = open_engine(settings)
    old, new = rollback_index(engine, settings.engine.index_alias)
    print(f"alias {settings.engine.index_alias}: {old} -> {new}")
    return 0


def _status(args: argparse.Namespace, settings: Settings) -> int:
    from indexer.rebuild import index_status

    engine = open_engine(settings)
    status = index_status(engine, settings.engine.index_alias)
    status["stream"] = EventStream(settings.redis).backlog(INDEXER_GROUP)
    print(json.dumps(status, indent=2))
    return 0


def _schedule(args: argparse.Namespace, settings: Settings) -> int:
    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.triggers.cron import CronTrigger

    data_dir = _data_dir(args, settings)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    scheduler = BackgroundScheduler(timezone="UTC")

    def full_job() -> None:
        try:
            _log.info("nightly full rebuild: %s", run_full_rebuild(settings, data_dir, show_progress=False).summary())
        except Exception:  # noqa: BLE001 - a failed night must not stop the scheduler
            _log.exception("nightly full rebuild failed; the alias still points at the previous index")

    scheduler.add_job(full_job, CronTrigger.from_crontab(args.full_cron, timezone="UTC"), id="full-rebuild",
                      max_instances=1, coalesce=True)
    scheduler.start()
    print(f"scheduled: full rebuild '{args.full_cron}' (UTC) from {data_dir}; incremental consumer running", flush=True)
    engine = open_engine(settings)
    report = _incremental_indexer(settings, engine).run_forever(stop)
    scheduler.shutdown(wait=True)
    engine.close()
    print(f"stopped: {report.summary()}")
    return 0


def _push(args: argparse.Namespace, settings: Settings) -> int:
    path = Path(args.file)
    if not path.exists():
        raise NotFound(f"events file {str(path)!r} does not exist")
    now_s = time.time()
    good: list[str] = []
    bad: list[str] = []
    for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            parse_event(json.loads(line), now_s=now_s)
        except (ValueError, InvalidRequest) as exc:
            bad.append(f"{path}:{n}: {exc}")
            continue
        good.append(line)
    if bad and args.strict:
        raise InvalidRequest(f"{len(bad)} bad line(s), nothing appended (--strict); first: " + "; ".join(bad[:5]))
    for problem in bad[:20]:
        print(problem, file=sys.stderr)
    if len(bad) > 20:
        print(f"... and {len(bad) - 20} more bad lines", file=sys.stderr)
    stream = EventStream(settings.redis)
    started = time.monotonic()
    ids = stream.append(good) if good else []
    print(f"{len(ids):,} events appended to {stream.key} in {time.monotonic() - started:.2f}s; "
          f"{len(bad):,} bad line(s) skipped")
    return 1 if bad else 0


def _dead(args: argparse.Namespace, settings: Settings) -> int:
    for row in EventStream(settings.redis).dead_letters(count=args.count):
        print(json.dumps(row))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    index = subparsers.add_parser(
        "index", help="build and maintain the items index",
        description="Full rebuilds (new index, alias swap, rollback) and the near-real-time event consumer.",
    )
    actions = index.add_subparsers(dest="action", metavar="ACTION", required=True)
    full = actions.add_parser(
        "full", help="rebuild the whole index from a data folder and swap the alias",
        description="Build a new items index from a data folder (items, model vectors, cohort popularity, "
        "behaviour clusters from Redis), check it, then point the alias HOTFEED_ENGINE_INDEX_ALIAS at it; "
        "the previous index is kept for `hotfeed index rollback`.",
    )
    full.add_argument("--data", help="folder with items, users and events (.parquet or .csv) "
                      f"{env_default('paths', 'data_dir', '/synth')}")
    full.add_argument("--quiet", action="store_true", help="no progress output")
    full.set_defaults(handler=_full)
    inc = actions.add_parser(
        "incremental", help="consume the event stream into the index",
        description="Consume the Redis event stream into the live index (cohort popularity, item status); "
        "malformed events and events for unknown items go to the dead letters (`hotfeed events dead`).",
    )
    inc.add_argument("--follow", action="store_true", help="keep consuming until Ctrl-C (default: until idle)")
    inc.add_argument("--consumer", metavar="NAME", help="consumer name in the group; a restarted process with the "
                     "same name replays its own pending events at once instead of waiting for them to go stale "
                     "(default: <hostname>-<pid>)")
    inc.set_defaults(handler=_incremental)
    actions.add_parser(
        "rollback", help="point the alias back at the previous index",
        description="Point the alias HOTFEED_ENGINE_INDEX_ALIAS back at the newest index older than the live one.",
    ).set_defaults(handler=_rollback)
    actions.add_parser(
        "status", help="live index, kept indexes, stream backlog",
        description="Print the live index, the kept indexes and the event stream's backlog as JSON.",
    ).set_defaults(handler=_status)
    sched = actions.add_parser(
        "schedule", help="run the incremental consumer and a nightly full rebuild",
        description="Run the incremental consumer until SIGINT/SIGTERM, and a full rebuild on the --full-cron "
        "schedule; a failed rebuild leaves the alias on the previous index.",
    )
    sched.add_argument("--data", help=f"folder for the nightly rebuild {env_default('paths', 'data_dir', '/synth')}")
    sched.add_argument("--full-cron", default="0 3 * * *", help="crontab for full rebuilds, UTC (default: 0 3 * * *)")
    sched.set_defaults(handler=_schedule)

    events = subparsers.add_parser(
        "events", help="append events to the stream, read dead letters",
        description="Append events to the Redis event stream that `hotfeed index incremental` consumes, and read "
        "the events it rejected (dead letters).",
    )
    ev_actions = events.add_subparsers(dest="action", metavar="ACTION", required=True)
    push = ev_actions.add_parser(
        "push", help="append a JSON-lines file of events (see recommender/events.py)",
        description="Check a JSON-lines file, one event object per line (formats in recommender/events.py), and "
        "append its valid events to the Redis event stream; bad lines are listed and make the exit status 1.",
    )
    push.add_argument("file", metavar="FILE", help="JSON-lines file of events, e.g. "
                      '{"type": "view", "item_id": "i1", "user_id": "u1"} per line')
    push.add_argument("--strict", action="store_true",
                      help="append nothing when any line is bad (default: append the good lines, list the bad ones "
                           "with their line numbers and exit 1)")
    push.set_defaults(handler=_push)
    dead = ev_actions.add_parser(
        "dead", help="print the latest dead-lettered events with their reason",
        description="Print the latest dead-lettered events (payload, reason, source id), oldest first, one JSON "
        "object per line.",
    )
    dead.add_argument("--count", type=int, default=20, help="how many to print (default: %(default)s)")
    dead.set_defaults(handler=_dead)
