"""`hotfeed model publish|current|rollback`: argument parsing only; the work is in publish.py,
imported when a command runs so `hotfeed --help` does not load torch."""

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


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `model publish`, `model current` and `model rollback`."""
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
