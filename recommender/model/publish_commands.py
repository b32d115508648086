"""`hotfeed model publish|current|rollback|refresh`: argument parsing only; the work is in publish.py
and refresh.py, imported when a command runs so `hotfeed --help` does not load torch."""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING

from recommender.cli import env_default
from recommender.settings import Settings

if TYPE_CHECKING:
    from recommender.stores.published_models import PublishedModel

__all__ = ["register"]


def _describe(published: PublishedModel) -> str:
    when = dt.datetime.fromtimestamp(published.published_at, dt.UTC).isoformat(timespec="seconds")
    return (f"model {published.version} published {when} (previous: {published.previous or 'none'}); "
            f"file {published.path}")


def _publish(args: argparse.Namespace, settings: Settings) -> int:
    from recommender.model.publish import publish_checkpoint

    published = publish_checkpoint(args.path, settings)
    print(f"published {_describe(published)}")
    return 0


def _current(args: argparse.Namespace, settings: Settings) -> int:
    from recommender.model.publish import read_published

    published = read_published(settings)
    if published is None:
        print(f"no model published under Redis key prefix {settings.redis.key_prefix!r}; recommenders serve "
              f"HOTFEED_MODEL_CHECKPOINT ({settings.model.checkpoint or 'none'})")
        return 0
    print(_describe(published))
    return 0


def _rollback(args: argparse.Namespace, settings: Settings) -> int:
    from recommender.model.publish import roll_back_published

    published = roll_back_published(settings)
    print(f"rolled back to {_describe(published)}")
    return 0


def _refresh(args: argparse.Namespace, settings: Settings) -> int:
    from recommender.model.runs import run_on_schedule

    if not args.every_hours:
        return _refresh_once(args, settings)
    return run_on_schedule(lambda: _refresh_once(args, settings), every_hours=args.every_hours, what="refresh",
                           started=f"refreshing the served blend every {args.every_hours:g} h from {args.events}")


def _refresh_once(args: argparse.Namespace, settings: Settings) -> int:
    import time

    from recommender.errors import ConfigError
    from recommender.model.checkpoint import load_checkpoint
    from recommender.model.publish import publish_trained, read_published, serving_checkpoint
    from recommender.model.refresh import refresh_checkpoint
    from recommender.model.runs import read_events_file

    # Refreshing the published model: publish the result only while that model is still the published
    # one, so a refresh never undoes a retrain that published in the meantime.
    published = None if args.checkpoint else read_published(settings)
    source = args.checkpoint or (published.path if published is not None else serving_checkpoint(settings))
    if source is None:
        raise ConfigError("no checkpoint to refresh: none is published and HOTFEED_MODEL_CHECKPOINT names no file; "
                          "pass --checkpoint PATH")
    checkpoint = load_checkpoint(source)
    events = read_events_file(args.events)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out = args.out or settings.paths.artifacts_dir / "model" / "refresh" / f"{checkpoint.model_name}-{stamp}.pt"
    result = refresh_checkpoint(checkpoint, events, out, days=args.days, gap_minutes=args.gap_minutes)
    print(f"{result.summary()} (refreshed from {checkpoint.version}: the same model weights and blend weights)",
          flush=True)
    if args.publish:
        print(publish_trained(result.path, settings, expected=published.version if published else None), flush=True)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `model publish`, `model current`, `model rollback` and `model refresh`."""
    model = subparsers.add_parser(
        "model", help="publish a trained checkpoint to the running recommenders, show or roll back the published one",
        description="A published checkpoint is copied to an immutable versioned file and pointed at from Redis "
        "(HOTFEED_REDIS_URL, key <HOTFEED_REDIS_KEY_PREFIX>model:current); every `hotfeed serve` loads it within "
        "HOTFEED_MODEL_POLL_MS, checks it and swaps it in without a restart, keeping the old model when the new "
        "one fails. docs/lifecycle.md explains the lifecycle.",
    )
    sub = model.add_subparsers(dest="action", metavar="ACTION", required=True)

    publish = sub.add_parser(
        "publish", help="check a checkpoint and make it the model every recommender serves",
        description="Check that the checkpoint loads and that its embedding size equals "
        "HOTFEED_ENGINE_EMBEDDING_DIMS, copy it to <HOTFEED_PATHS_ARTIFACTS_DIR>/model/versions/<version>.pt and "
        "point Redis at the copy. Publishing the version already published changes nothing.",
    )
    publish.add_argument("path", type=Path, metavar="PATH",
                         help="checkpoint file written by `hotfeed train` (e.g. artifacts/model/model.pt)")
    publish.set_defaults(handler=_publish)

    current = sub.add_parser(
        "current", help="print the published model version, its file and the version it replaced",
        description="Print the published model: version, publish time, the version it replaced and its file. "
        f"Recommenders serve HOTFEED_MODEL_CHECKPOINT {env_default('model', 'checkpoint')} until one is published.",
    )
    current.set_defaults(handler=_current)

    rollback = sub.add_parser(
        "rollback", help="publish again the version before the current one",
        description="Point Redis back at the version published before the current one (its versioned file is "
        "checked again first). The current version leaves the history, so a second rollback goes one further back.",
    )
    rollback.set_defaults(handler=_rollback)

    refresh = sub.add_parser(
        "refresh", help="rebuild the serving model's blend (its KNN sessions, category shares, item counts) from "
        "recent events, without training, and publish it",
        description="Keep the model, its vocabulary and its blend weights; build the blend's counting parts "
        "again from the sessions that end in the last --days of --events (clicks on items the model does not know "
        "are left out), write a new checkpoint and publish it. Where listings churn, counting parts go stale "
        "faster than the model: refresh them between retrains (docs/lifecycle.md).",
    )
    refresh.add_argument("--events", type=Path, required=True, metavar="PATH",
                         help="events file (csv, jsonl or parquet; the documented format)")
    refresh.add_argument("--checkpoint", type=Path, metavar="PATH",
                         help="checkpoint to refresh; without it the published one, else HOTFEED_MODEL_CHECKPOINT "
                         f"{env_default('model', 'checkpoint')}")
    refresh.add_argument("--days", type=float, default=3.0,
                         help="use the sessions ending in the last N days of the events (default: %(default)s)")
    refresh.add_argument("--gap-minutes", type=float, default=30.0,
                         help="inactivity in minutes that ends a session without a session_id (default: %(default)s)")
    refresh.add_argument("--out", type=Path, metavar="PATH", help="file to write "
                         f"{env_default('paths', 'artifacts_dir', '/model/refresh/<model>-<UTC time>.pt')}")
    refresh.add_argument("--publish", action=argparse.BooleanOptionalAction, default=True,
                         help="publish the refreshed checkpoint, unless another model was published while it ran "
                         "(default: --publish)")
    refresh.add_argument("--every-hours", type=float, metavar="H", help="refresh now and then every H hours until "
                         "SIGINT/SIGTERM, reading --events again each time (default: once)")
    refresh.set_defaults(handler=_refresh)
