"""`hotfeed train` and `hotfeed eval`: argument parsing only; the work is in runs.py, imported
when a command runs so `hotfeed --help` does not load torch."""

from __future__ import annotations

import argparse
from pathlib import Path

from recommender.model.metrics import DEFAULT_METRICS
from recommender.settings import Settings

__all__ = ["register", "MODEL_NAMES", "FORMAT_HELP"]

# The names of recommender.model.network.MODELS (a unit test keeps the two equal).
MODEL_NAMES = ("gru4rec", "sasrec", "tailnet")

FORMAT_HELP = (
    "events file: CSV or Parquet with columns ts (ISO-8601 or unix seconds), item_id, event_type "
    "(view|click|like|cart|chat|purchase) and user_id and/or session_id; sessions are cut at 30-minute "
    "gaps when session_id is absent. Diginetica/YOOCHOOSE: rename sessionId->session_id, itemId->item_id, "
    "timestamp/eventdate->ts, add event_type=click (see docs/session-model.md)."
)


def _add_data_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--events", type=Path, required=True, metavar="FILE", help=FORMAT_HELP)
    p.add_argument("--test-days", type=float, default=1.0, help="sessions ending in the last N days are the test "
                   "set, the N days before that validation (default 1; spans under 4N: the last 20%% of sessions)")
    p.add_argument("--min-item-support", type=int, default=5, help="drop items seen fewer times (default 5)")
    p.add_argument("--gap-minutes", type=float, default=30.0, help="session cut when session_id is absent")
    p.add_argument("--train-days", type=float, help="train on sessions of the last N days before validation only "
                   "(default: all); models and baselines see the same sessions")


def _add_training_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, metavar="YAML", help="hyper-parameter file overriding configs/<model>.yaml")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override one hyper-parameter (repeatable)")
    p.add_argument("--epochs", type=int, help="maximum epochs (early stopping may end sooner)")
    p.add_argument("--seed", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help="default: HOTFEED_MODEL_DEVICE (auto)")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `train` and `eval` subcommands."""
    train = subparsers.add_parser(
        "train", help="train a session model on an events file and write a checkpoint",
        description="Train tailnet, sasrec or gru4rec on sessions built from an events file.",
    )
    _add_data_flags(train)
    train.add_argument("--model", choices=MODEL_NAMES, default="tailnet")
    train.add_argument("--out", type=Path, metavar="PATH", help="checkpoint file (.pt) or directory "
                       "(writes <model>.pt); default HOTFEED_MODEL_CHECKPOINT")
    _add_training_flags(train)
    train.set_defaults(handler=run_train)

    ev = subparsers.add_parser(
        "eval", help="evaluate session models and POP/S-POP/ItemKNN baselines on an events file",
        description="Train (or load with --checkpoint) models, score every test prefix, print a table, "
        "write results.json and one PNG bar chart per metric into --out.",
    )
    _add_data_flags(ev)
    ev.add_argument("--models", default="tailnet,sasrec,gru4rec", help="comma-separated models to train and evaluate")
    ev.add_argument("--checkpoint", type=Path, action="append", metavar="PT",
                    help="evaluate this trained checkpoint instead of training (repeatable)")
    ev.add_argument("--metrics", default=",".join(DEFAULT_METRICS), help="comma-separated, e.g. HR@20,Tail@20")
    ev.add_argument("--out", type=Path, metavar="DIR", help="report folder (results.json, charts, trained "
                    "checkpoints); default <artifacts>/eval/<events name>")
    _add_training_flags(ev)
    ev.set_defaults(handler=run_eval)


def run_train(args: argparse.Namespace, settings: Settings) -> int:
    from recommender.model.runs import run_train as run

    return run(args, settings)


def run_eval(args: argparse.Namespace, settings: Settings) -> int:
    from recommender.model.runs import run_eval as run

    return run(args, settings)
