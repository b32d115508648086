"""`hotfeed train` and `hotfeed eval`: argument parsing only; the work is in runs.py and eval_run.py, imported
when a command runs so `hotfeed --help` does not load torch."""

from __future__ import annotations

import argparse
import functools
from pathlib import Path

from recommender.cli import env_default, setting_value
from recommender.data_model import EVENTS_FILE_HELP as FORMAT_HELP
from recommender.errors import HotfeedError
from recommender.model.metrics import DEFAULT_METRICS
from recommender.settings import Settings

__all__ = ["register", "MODEL_NAMES"]

# The names of recommender.model.network.MODELS (a unit test keeps the two equal).
MODEL_NAMES = ("gru4rec", "sasrec", "tailnet")
# The names of runs.ALL_BASELINES, kept here so `--help` does not import torch (a unit test keeps them equal).
_BASELINE_NAMES = ("POP", "S-POP", "ItemKNN", "SR", "SKNN", "V-SKNN", "STAN", "VSTAN")



@functools.lru_cache(maxsize=1)
def _shipped_configs() -> dict[str, dict]:
    from recommender.model.config import load_model_config

    return {name: load_model_config(name) for name in MODEL_NAMES}


def _param_default(key: str) -> str:
    """Help text for a hyper-parameter flag: where its default comes from and what it is now."""
    params = setting_value("model", "params")
    if isinstance(params, dict) and key in params:
        return f"(default: $HOTFEED_MODEL_PARAMS {key} = {params[key]})".replace("%", "%%")
    try:
        shipped = {name: config[key] for name, config in _shipped_configs().items()}
    except (HotfeedError, KeyError):
        return "(default: recommender/model/configs/<model>.yaml)"
    values = set(shipped.values())
    shown = str(values.pop()) if len(values) == 1 else ", ".join(f"{m} {v}" for m, v in shipped.items())
    return f"(default: {shown}, from recommender/model/configs/<model>.yaml)"


def _add_data_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--events", type=Path, required=True, metavar="FILE", help=FORMAT_HELP)
    p.add_argument("--test-days", type=float, default=1.0, help="sessions ending in the last N days are the test "
                   "set, the N days before that validation (default 1; spans under 4N: the last 20%% of sessions)")
    p.add_argument("--min-item-support", type=int, default=5, help="drop items seen fewer times (default 5)")
    p.add_argument("--gap-minutes", type=float, default=30.0, help="inactivity in minutes that ends a session "
                   "when session_id is absent (default: %(default)s)")
    p.add_argument("--train-days", type=float, help="train on sessions of the last N days before validation only "
                   "(default: all); models and baselines see the same sessions; train and retrain pick a "
                   "checkpoint's blend with counting parts as long as the published ones (N days plus as many "
                   "before them as validation and test add)")


def _add_training_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, metavar="YAML", help="hyper-parameter file (any subset of keys) "
                   "overriding recommender/model/configs/<model>.yaml (default: none)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override one hyper-parameter, e.g. "
                   "--set lr=0.002; repeatable (default: none)")
    p.add_argument("--epochs", type=int,
                   help=f"maximum epochs, early stopping may end sooner {_param_default('epochs')}")
    p.add_argument("--seed", type=int, help=f"random seed {_param_default('seed')}")
    p.add_argument("--batch-size", type=int, help=f"session prefixes per optimizer step {_param_default('batch_size')}")
    p.add_argument("--lr", type=float, help=f"learning rate {_param_default('lr')}")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help="auto picks cuda when torch sees a GPU "
                   f"{env_default('model', 'device')}")


# The neighbourhood methods a checkpoint can serve in its blend (hybrid.SERVABLE_KNN; a unit test keeps them equal).
_BLEND_NAMES = ("SKNN", "V-SKNN", "STAN", "VSTAN")


def blend_tail_bias(text: str) -> float | None:
    """Parse --blend-tail-bias: "auto" (None: picked on validation) or a number >= 0."""
    if text.strip().lower() == "auto":
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither 'auto' nor a number") from None
    if not (value >= 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number >= 0")
    return value


def seed_list(text: str) -> list[int]:
    """Parse --seeds: comma-separated distinct integers, e.g. "42,1,2"."""
    parts = [part.strip() for part in text.split(",") if part.strip()]
    try:
        seeds = [int(part) for part in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers") from None
    if not seeds:
        raise argparse.ArgumentTypeError("no seed given")
    if len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"{text!r} repeats a seed")
    return seeds


def _add_tail_bias_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--blend-tail-bias", type=blend_tail_bias, default=None, metavar="auto|X",
                   help="offset added to tail items' blended score: 'auto' picks, with the category exponent, the "
                   "largest of 0.025..1.5 whose validation HR@20 and MRR@20 lose less than 2%% without the "
                   "loss being significant, or are shown to lose less than 2%%; a number fixes it, 0 turns "
                   "it off (default: auto)")


def _add_blend_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--blend", choices=[*_BLEND_NAMES, "none"], default="VSTAN",
                   help="serve the model blended with this session-KNN over the training sessions, the "
                   "session's own items and their categories, weights picked on validation "
                   "(recommender/model/hybrid.py); 'none' serves the model's logits alone (default: %(default)s)")
    _add_tail_bias_flag(p)


def _add_items_flag(p: argparse.ArgumentParser, purpose: str) -> None:
    p.add_argument("--items", type=Path, metavar="FILE", help=f"items file (title, category, price, region) to "
                   f"{purpose}; 'none' skips it (default: items.parquet or items.csv beside --events when present)")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `train` and `eval` subcommands."""
    train = subparsers.add_parser(
        "train", help="train a session model on an events file and write a checkpoint",
        description="Train tailnet, sasrec or gru4rec on sessions built from an events file and write a checkpoint. "
        "Hyper-parameters: recommender/model/configs/<model>.yaml, overridden by --config, then "
        "HOTFEED_MODEL_PARAMS (JSON), then flags.",
    )
    _add_data_flags(train)
    train.add_argument("--model", choices=MODEL_NAMES, default="tailnet", help="session model to train "
                       "(default: %(default)s)")
    train.add_argument("--out", type=Path, metavar="PATH", help="checkpoint file (.pt) or directory "
                       f"(writes <model>.pt) {env_default('model', 'checkpoint')}")
    _add_items_flag(train, "fit the cold-start content encoder and the blend's category part on")
    train.add_argument("--publish", action=argparse.BooleanOptionalAction, default=True,
                       help="publish the checkpoint to the running recommenders (`hotfeed model publish`); with "
                       "Redis unreachable it is only written (default: --publish)")
    _add_blend_flag(train)
    train.add_argument("--refit", action=argparse.BooleanOptionalAction, default=False,
                       help="after picking the epoch count, tail bias and blend weights on validation, train again "
                       "on train + validation and write that model (about twice the training time; "
                       "default: --no-refit)")
    _add_training_flags(train)
    train.set_defaults(handler=run_train)

    ev = subparsers.add_parser(
        "eval", help="evaluate session models against POP, S-POP, ItemKNN, SR, SKNN, V-SKNN, STAN and VSTAN",
        description="Train (or load with --checkpoint) models, score every test prefix, print a table, "
        "write results.json and one PNG bar chart per metric into --out.",
    )
    _add_data_flags(ev)
    ev.add_argument("--models", default="tailnet,sasrec,gru4rec", help="comma-separated models to train and "
                    "evaluate (default: %(default)s)")
    ev.add_argument("--checkpoint", type=Path, action="append", metavar="PT",
                    help="evaluate this trained checkpoint instead of training: its model, and its blend as the "
                    "recommender serves it (row '<model>+<KNN> as published'); repeatable (default: none, "
                    "train each of --models)")
    ev.add_argument("--protocol", choices=["filtered", "next-click"], default="filtered",
                    help="filtered: repeats collapsed, test clicks on rare or unseen items removed; next-click: every "
                    "test click a target, repeats kept, unseen items unhittable (default: %(default)s)")
    ev.add_argument("--baselines", default=",".join(_BASELINE_NAMES), help="comma-separated baselines, '' for none "
                    "(default: %(default)s)")
    ev.add_argument("--tune-baselines", action=argparse.BooleanOptionalAction, default=True,
                    help="tune SKNN, V-SKNN, STAN and VSTAN on the validation sessions (a small grid around the "
                    "papers' defaults); --no-tune-baselines uses the defaults (default: --tune-baselines)")
    ev.add_argument("--refit", action=argparse.BooleanOptionalAction, default=False,
                    help="after picking every parameter, epoch count and blend weight on validation, fit the "
                    "baselines and models again on train + validation before the test (default: --no-refit)")
    ev.add_argument("--hybrids", default="VSTAN", help="session-KNN baselines to blend with each model into a "
                    "hybrid row (weights picked on validation; recommender/model/hybrid.py), '' for none "
                    "(default: %(default)s)")
    _add_items_flag(ev, "read the blends' category part from")
    _add_tail_bias_flag(ev)
    ev.add_argument("--metrics", default=",".join(DEFAULT_METRICS), help="comma-separated metric names "
                    "(default: %(default)s)")
    ev.add_argument("--out", type=Path, metavar="DIR", help="report folder (results.json, charts, trained "
                    f"checkpoints) {env_default('paths', 'artifacts_dir', '/eval/<events name>')}")
    _add_training_flags(ev)
    ev.add_argument("--seeds", type=seed_list, metavar="S,S,...",
                    help="train every model, and pick its blends, once per seed; each model and blend row is the "
                    "mean over the seeds, and each blend is compared with the baselines on every test prefix's "
                    "mean over them (on a few hundred test prefixes one seed's verdict is partly luck); "
                    "checkpoints in --out/seed-<S>/ (default: one run with --seed)")
    ev.set_defaults(handler=run_eval)
    _register_retrain(subparsers)


def _register_retrain(subparsers: argparse._SubParsersAction) -> None:
    retrain = subparsers.add_parser(
        "retrain", help="retrain on recent sessions from the serving model; publish only if not worse",
        description="One continual-retraining round (recommender/model/retrain.py): train on the last "
        "--train-days of sessions, warm-started from the serving (published) checkpoint, compare with the "
        "serving model on the last --test-days, publish when not worse and write the changed item vectors "
        "to the index. --every-hours repeats it on a schedule until SIGINT/SIGTERM.",
    )
    _add_data_flags(retrain)
    retrain.set_defaults(train_days=3.0)
    for action in retrain._actions:
        if action.dest == "train_days":
            action.help = "train on sessions of the last N days before validation (default: 3)"
    retrain.add_argument("--model", choices=MODEL_NAMES, default="tailnet", help="session model (default: %(default)s)")
    _add_items_flag(retrain, "fit the cold-start content encoder and the blend's category part on")
    retrain.add_argument("--out", type=Path, metavar="DIR", help="folder of the retrained checkpoints, one file "
                         "per round (default: <artifacts>/model/retrain)")
    retrain.add_argument("--metric", default="MRR@20", help="held-out metric the new model must not be worse "
                         "on (default: %(default)s)")
    retrain.add_argument("--publish", action=argparse.BooleanOptionalAction, default=True,
                         help="publish a model that is not worse (default: --publish)")
    retrain.add_argument("--every-hours", type=float, metavar="H", help="run a round now and then every H hours "
                         "(default: one round, then exit)")
    _add_blend_flag(retrain)
    _add_training_flags(retrain)
    retrain.set_defaults(handler=run_retrain)


def run_retrain(args: argparse.Namespace, settings: Settings) -> int:
    from recommender.model.runs import run_retrain as run

    return run(args, settings)


def run_train(args: argparse.Namespace, settings: Settings) -> int:
    from recommender.model.runs import run_train as run

    return run(args, settings)


def run_eval(args: argparse.Namespace, settings: Settings) -> int:
    from recommender.model.eval_run import run_eval as run

    return run(args, settings)
