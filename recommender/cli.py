"""The `hotfeed` console command.

Each deployable contributes its subcommands through the ``hotfeed.commands`` entry-point
group in pyproject.toml: an entry point names a ``register(subparsers)`` function that adds
parsers and sets ``handler=fn`` on each, where ``fn(args, settings) -> int``. This module
imports none of the deployables itself.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from importlib.metadata import PackageNotFoundError, entry_points, version
from typing import Any

from pydantic import ValidationError

from recommender.errors import HotfeedError
from recommender.redact import redact
from recommender.settings import REPO_ROOT, Settings, env_var, load_settings

__all__ = ["build_parser", "main", "hotfeed_version", "setting_value", "env_default"]

_log = logging.getLogger("hotfeed")


def hotfeed_version() -> str:
    """Return the installed package's version, else the one in pyproject.toml (a bare checkout)."""
    try:
        return version("hotfeed")
    except PackageNotFoundError:
        import tomllib

        try:
            return tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"]
        except (OSError, KeyError, tomllib.TOMLDecodeError):
            return "unknown"


def setting_value(section: str, field: str) -> Any:
    """Return the current value of setting ``<section>.<field>``, for help texts.

    That is its ``HOTFEED_<SECTION>_<FIELD>`` environment variable read through the settings
    class, or the setting's default when the variable is unset. When the section does not
    validate, the raw variable (or the default) is shown: help must not fail on a bad setting.
    """
    section_cls = Settings.model_fields[section].annotation
    try:
        return getattr(section_cls(), field)
    except ValidationError:
        return os.environ.get(env_var(section_cls, field),
                              section_cls.model_fields[field].get_default(call_default_factory=True))


def env_default(section: str, field: str, suffix: str = "") -> str:
    """Return ``(default: $HOTFEED_<SECTION>_<FIELD> = <current value>)`` for a flag's help text.

    ``suffix`` is appended to both the variable and its value, e.g. ``"/synth"`` for a folder
    under a path setting. ``%`` is doubled because argparse %-formats help texts.
    """
    var = env_var(Settings.model_fields[section].annotation, field)
    value = redact(setting_value(section, field))
    return f"(default: ${var}{suffix} = {value}{suffix})".replace("%", "%%")


def build_parser() -> argparse.ArgumentParser:
    """Return the top-level parser with every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog="hotfeed",
        description="hotfeed: near-real-time marketplace feed recommender. "
        "Settings come from HOTFEED_* environment variables (see recommender/settings.py); "
        "`hotfeed COMMAND --help` describes a command and its flags.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug detail")
    parser.add_argument("--version", action="version", version=f"hotfeed {hotfeed_version()}",
                        help="print the hotfeed version and exit")
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
    # The engine clients log every failed request with a traceback before raising; hotfeed
    # translates those errors into one clear line of its own, so only their errors show.
    for noisy in ("elastic_transport", "elasticsearch", "opensearch", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
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
