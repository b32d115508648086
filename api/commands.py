"""``hotfeed gateway``: run the HTTP gateway (mobile feeds, events, score profile admin).

Registered through the ``hotfeed.commands`` entry-point group (pyproject.toml).
"""

from __future__ import annotations

import argparse
import logging

from recommender.cli import env_default
from recommender.settings import Settings

__all__ = ["register"]

_log = logging.getLogger("hotfeed.gateway")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``gateway`` to the ``hotfeed`` command."""
    gateway = subparsers.add_parser(
        "gateway", help="HTTP gateway: feeds and events for apps over the gRPC recommender, profile admin at /admin",
        description="Run the HTTP gateway: the apps' feed and event endpoints, forwarded to the gRPC recommender "
        "(`hotfeed serve`), and the score profile admin page at /admin.",
    )
    gateway.add_argument("--host", default=None, help=f"listen address {env_default('gateway', 'host')}")
    gateway.add_argument("--port", type=int, default=None, help=f"listen port {env_default('gateway', 'port')}")
    gateway.add_argument("--grpc-target", default=None,
                         help=f"recommender host:port {env_default('gateway', 'grpc_target')}")
    gateway.add_argument("--preview-deadline-ms", type=int, default=None,
                         help="engine deadline of the admin console's previews, instead of the recommender's production "
                         f"deadline {env_default('gateway', 'preview_deadline_ms')}")
    gateway.set_defaults(handler=_serve)


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    # Imported here so other `hotfeed` subcommands do not pay for FastAPI and uvicorn.
    import uvicorn

    from api.app import create_app

    given = {"host": args.host, "port": args.port, "grpc_target": args.grpc_target,
             "preview_deadline_ms": args.preview_deadline_ms}
    overrides = {k: v for k, v in given.items() if v is not None}
    gateway = settings.gateway.model_validate({**settings.gateway.model_dump(), **overrides})
    settings = settings.model_copy(update={"gateway": gateway})
    _log.info("gateway on http://%s:%d -> recommender %s (admin page: /admin)", gateway.host, gateway.port, gateway.grpc_target)
    uvicorn.run(create_app(settings), host=gateway.host, port=gateway.port, log_level="info", access_log=False)
    return 0
