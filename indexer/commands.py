"""The indexer's `hotfeed` subcommands, one ``_register_<group>`` function per command group.

    hotfeed data import taobao|rees46 [--src PATH] [--out DIR]
    hotfeed data import nginx LOG [--item-regex RE] [--burst-hits N] [--burst-window-s S] [--out DIR]
    hotfeed data synth --items N --users M --days D --seed S [--events E] [--end TIME] [--out DIR]
    hotfeed data validate FILE --kind events|items|users

Handlers take ``(args, settings)`` and return an exit status; they print what they derived,
what they left out and a one-line summary.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from recommender.progress import progress_bar
from recommender.cli import env_default
from recommender.data_model import read_frame, validate_events, validate_items, validate_users, write_frame
from recommender.settings import Settings
from indexer.importers import REES46_SAMPLE, TAOBAO_SAMPLE, import_rees46, import_taobao, locate_sample, write_import
from indexer.synth import DEFAULT_SYNTH_END, SYNTH_STAGES, generate_marketplace
from indexer.weblogs import clean_weblog, read_log_lines

__all__ = ["register"]

_SHOW_BAD_ROWS = 20


def _out_dir(args: argparse.Namespace, settings: Settings, name: str) -> Path:
    return Path(args.out) if args.out else settings.paths.data_dir / name


def _print_written(paths: dict[str, Path]) -> None:
    for kind, path in paths.items():
        print(f"wrote {kind}: {path}")


def _import_sample(name: str, relative: Path, importer: Callable) -> Callable[[argparse.Namespace, Settings], int]:
    def handler(args: argparse.Namespace, settings: Settings) -> int:
        started = time.perf_counter()
        src = locate_sample(settings.paths.shared_data_dir, relative, src=args.src)
        print(f"{name}: reading {src}")
        result = importer(src, session_gap_min=settings.indexer.session_gap_min)
        for line in result.summary_lines():
            print(line)
        _print_written(write_import(result, _out_dir(args, settings, name)))
        report = result.reports["events"]
        print(
            f"{name}: imported {len(result.events):,} events, {len(result.items):,} items, "
            f"{len(result.users):,} users; {report.rejected:,} rows left out; {time.perf_counter() - started:.1f} s"
        )
        return 0

    return handler


def _import_nginx(args: argparse.Namespace, settings: Settings) -> int:
    started = time.perf_counter()
    lines = read_log_lines(Path(args.log))
    result = clean_weblog(
        lines,
        item_regex=args.item_regex or settings.indexer.nginx_item_regex,
        burst_min_hits=args.burst_hits or settings.indexer.burst_min_hits,
        burst_window_s=args.burst_window_s or settings.indexer.burst_window_s,
        session_gap_min=settings.indexer.session_gap_min,
    )
    for line in result.summary_lines():
        print(line)
    report = result.report()
    if report.bad_rows:
        print(f"validation: {report.summary()}")
    path = write_frame(result.events, _out_dir(args, settings, "nginx") / "events.parquet")
    print(f"wrote events: {path}")
    print(
        f"nginx: {len(result.events):,} events from {result.lines_in:,} lines "
        f"({result.events['session_id'].nunique():,} sessions); {time.perf_counter() - started:.1f} s"
    )
    return 0


def _synth(args: argparse.Namespace, settings: Settings) -> int:
    with progress_bar(total=len(SYNTH_STAGES), desc="synth", unit="stage") as bar:
        def on_stage(name: str) -> None:
            bar.set_postfix_str(name)
            if name != SYNTH_STAGES[0]:
                bar.update(1)

        # "now" is read here, at the edge; the generator itself never reads the clock.
        end = pd.Timestamp.now(tz="UTC").floor("min") if args.end == "now" else args.end
        market = generate_marketplace(
            n_items=args.items, n_users=args.users, days=args.days, seed=args.seed,
            n_events=args.events, end=end, on_stage=on_stage,
        )
        bar.update(1)
    out = _out_dir(args, settings, "synth")
    written_at = time.perf_counter()
    _print_written({kind: write_frame(getattr(market, kind), out / f"{kind}.parquet")
                    for kind in ("items", "users", "events")})
    print(market.summary() + f"; written in {time.perf_counter() - written_at:.1f} s (seed {args.seed})")
    return 0


_VALIDATORS = {"events": validate_events, "items": validate_items, "users": validate_users}


def _validate(args: argparse.Namespace, settings: Settings) -> int:
    _, report = _VALIDATORS[args.kind](read_frame(Path(args.file)))
    for bad in report.bad_rows[:_SHOW_BAD_ROWS]:
        print(f"row {bad.row}: {bad.reason}")
    if len(report.bad_rows) > _SHOW_BAD_ROWS:
        print(f"... and {len(report.bad_rows) - _SHOW_BAD_ROWS:,} more bad rows")
    print(report.summary())
    return 1 if report.bad_rows else 0


def _register_data(subparsers: argparse._SubParsersAction) -> None:
    data = subparsers.add_parser(
        "data",
        help="import, clean, generate and validate items/users/events files",
        description="Data files in the documented format of recommender/data_model.py, written as Parquet "
        "under HOTFEED_PATHS_DATA_DIR/<name>/ (events.parquet, items.parquet, users.parquet).",
    )
    actions = data.add_subparsers(dest="action", metavar="ACTION", required=True)

    imp = actions.add_parser(
        "import", help="import a real sample or an nginx access log",
        description="Import a real public sample (taobao, rees46) or an nginx access log as cleaned items/users/"
        "events Parquet files; each prints how many rows its rules left out.",
    )
    sources = imp.add_subparsers(dest="source", metavar="SOURCE", required=True)
    for name, relative, importer, text in (
        ("taobao", TAOBAO_SAMPLE, import_taobao, "the Taobao UserBehavior sample (no header; pv/cart/fav/buy)"),
        ("rees46", REES46_SAMPLE, import_rees46, "the REES46 multi-category store sample (header; user sessions)"),
    ):
        p = sources.add_parser(name, help=f"import {text}", description=f"Import {text}; default file: "
                               f"HOTFEED_PATHS_SHARED_DATA_DIR/{relative.as_posix()}.")
        p.add_argument("--src", type=Path, metavar="PATH", help="the raw file "
                       f"{env_default('paths', 'shared_data_dir', '/' + relative.as_posix())}")
        p.add_argument("--out", type=Path, metavar="DIR",
                       help=f"output folder {env_default('paths', 'data_dir', '/' + name)}")
        p.set_defaults(handler=_import_sample(name, relative, importer))

    ngx = sources.add_parser(
        "nginx", help="import an nginx combined access log as cleaned events",
        description="Parse an nginx combined log, keep item pages, drop non-2xx, exact duplicate lines and "
        "abusive bursts, sessionize by inactivity; print how many rows each rule removed.",
    )
    ngx.add_argument("log", metavar="LOG", help="access log file (.gz accepted)")
    ngx.add_argument("--item-regex", metavar="RE",
                     help="path regex with a named group item_id (and optionally event_type) "
                     f"{env_default('indexer', 'nginx_item_regex')}")
    ngx.add_argument("--burst-hits", type=int, metavar="N",
                     help=f"hits that make a burst {env_default('indexer', 'burst_min_hits')}")
    ngx.add_argument("--burst-window-s", type=float, metavar="S",
                     help=f"burst window in seconds {env_default('indexer', 'burst_window_s')}")
    ngx.add_argument("--out", type=Path, metavar="DIR",
                     help=f"output folder {env_default('paths', 'data_dir', '/nginx')}")
    ngx.set_defaults(handler=_import_nginx)

    syn = actions.add_parser(
        "synth", help="generate a synthetic marketplace (deterministic by seed)",
        description="Generate items, users and events with power-law popularity, cohort-dependent category "
        "appeal, ~70% of views on items under 8 h old, drifting sessions and item status changes.",
    )
    syn.add_argument("--items", type=int, default=100_000, metavar="N", help="items (default: %(default)s)")
    syn.add_argument("--users", type=int, default=50_000, metavar="M", help="users (default: %(default)s)")
    syn.add_argument("--days", type=float, default=14, metavar="D", help="days of events (default: %(default)s)")
    syn.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (default: %(default)s)")
    syn.add_argument("--events", type=int, metavar="E", help="target event count (default: 40 per user)")
    syn.add_argument("--end", default=DEFAULT_SYNTH_END.isoformat(), metavar="TIME",
                     help="end of the event window, ISO-8601 or 'now'; use 'now' for a live demo "
                     "(default: %(default)s)")
    syn.add_argument("--out", type=Path, metavar="DIR",
                     help=f"output folder {env_default('paths', 'data_dir', '/synth')}")
    syn.set_defaults(handler=_synth)

    val = actions.add_parser("validate", help="validate a CSV/Parquet file against the data model",
                             description="Print each bad row (1-based data row, header not counted) with "
                             "its reason and a summary; exit 1 when any row is rejected.")
    val.add_argument("file", metavar="FILE", help="the CSV or Parquet file to check")
    val.add_argument("--kind", required=True, choices=sorted(_VALIDATORS), help="which frame the file holds")
    val.set_defaults(handler=_validate)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the indexer's command groups to the `hotfeed` parser."""
    _register_data(subparsers)
