"""The `hotfeed` console command.

Each deployable contributes its subcommands through the ``hotfeed.commands`` entry-point
group in pyproject.toml: an entry point names a ``register(subparsers)`` function that adds
parsers and sets ``handler=fn`` on each, where ``fn(args, settings) -> int``. This module
imports none of the deployables itself.
"""

from __future__ import annotations

import argparse
import logging
import sys
from importlib.metadata import entry_points

from recommender.errors import HotfeedError
from recommender.settings import load_settings

__all__ = ["build_parser", "main"]

_log = logging.getLogger("hotfeed")


def build_parser() -> argparse.ArgumentParser:
    """Return the top-level parser with every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog="hotfeed",
        description="hotfeed: near-real-time marketplace feed recommender. "
        "Settings come from HOTFEED_* environment variables (see recommender/settings.py).",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug detail")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for ep in sorted(entry_points(group="hotfeed.commands"), key=lambda e: e.name):
        ep.load()(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one hotfeed subcommand; return its exit status.

    A HotfeedError prints its message (no traceback) and exits 1.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("elastic_transport", "opensearch", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        return int(handler(args, load_settings()) or 0)
    except HotfeedError as exc:
        print(f"hotfeed {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"hotfeed {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
