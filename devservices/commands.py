"""`hotfeed services up|down|status`: the local Redis and search engines."""

from __future__ import annotations

import argparse
import time

from devservices.local import local_services
from recommender.settings import Settings

__all__ = ["register"]

_NAMES_HELP = "which services (default: all): redis, opensearch, elasticsearch"


def _names(args: argparse.Namespace) -> list[str] | None:
    return args.only.split(",") if args.only else None


def _up(args: argparse.Namespace, settings: Settings) -> int:
    for service in local_services(settings.services, _names(args)):
        started = time.monotonic()
        print(f"{service.name}: starting (first run downloads and assembles it) ...", flush=True)
        status = service.up()
        print(f"  {status.line()}  [{time.monotonic() - started:.1f}s]", flush=True)
    return 0


def _down(args: argparse.Namespace, settings: Settings) -> int:
    for service in reversed(local_services(settings.services, _names(args))):
        stopped = service.down()
        print(f"{service.name}: {'stopped' if stopped else 'was not running (started by us)'}")
    return 0


def _status(args: argparse.Namespace, settings: Settings) -> int:
    statuses = [s.status() for s in local_services(settings.services, _names(args))]
    for status in statuses:
        print(status.line())
    return 0 if all(s.running for s in statuses) else 3


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "services",
        help="install, start, stop and inspect the local Redis, OpenSearch and Elasticsearch",
        description="Local services under HOTFEED_SERVICES_DIR (default .services/): Redis 7 (Debian) on "
        "127.0.0.1:6379, OpenSearch with parent-join + k-NN on :9200 (the default engine), Elasticsearch 8 "
        "on :9201. Idempotent: `up` on a running service only reports it. Ports: HOTFEED_SERVICES_*_PORT.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    for name, fn, text in (
        ("up", _up, "install if needed, start, wait for health, print versions and plugins"),
        ("down", _down, "stop the services this folder started"),
        ("status", _status, "print each service's state; exit 3 if any is down"),
    ):
        p = actions.add_parser(name, help=text, description=text)
        p.add_argument("--only", metavar="NAMES", help=_NAMES_HELP)
        p.set_defaults(handler=fn)
