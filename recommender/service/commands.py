"""`hotfeed serve`: the gRPC recommender."""

from __future__ import annotations

import argparse

from recommender.cli import env_default
from recommender.settings import Settings

__all__ = ["register"]


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    from recommender.service.server import serve

    updates = {}
    if args.port is not None:
        updates["port"] = args.port
    if args.engine_timeout_ms is not None:
        updates["engine_timeout_ms"] = args.engine_timeout_ms
    if updates:
        settings = settings.model_copy(update={"server": settings.server.model_copy(update=updates)})
    return serve(settings)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="run the gRPC recommender (HomeFeed, ProductFeed, SimilarItems, RecordEvents)",
        description="Serves feeds from the items index (HOTFEED_ENGINE_*), segments, sessions and profiles in "
        "Redis (HOTFEED_REDIS_URL) and the session model checkpoint (HOTFEED_MODEL_CHECKPOINT). "
        "Health checking and reflection are on; Prometheus metrics on HOTFEED_SERVER_METRICS_PORT.",
    )
    parser.add_argument("--port", type=int, help=f"listen port; 0 picks a free one {env_default('server', 'port')}")
    parser.add_argument("--engine-timeout-ms", type=int, help="engine search deadline in ms; past it the popular "
                        f"fallback serves the page {env_default('server', 'engine_timeout_ms')}")
    parser.set_defaults(handler=_serve)
