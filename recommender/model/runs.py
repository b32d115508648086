"""`hotfeed train` and `hotfeed retrain`: the session model from an events file, and what
`hotfeed eval` (eval_run.py) shares with them.

They read events in the documented format (recommender/data_model.py; docs/session-model.md
shows how to convert Diginetica or YOOCHOOSE clicks). Hyper-parameters: see config.py for
the override order (flag > HOTFEED_MODEL_PARAMS > --config file > configs/<model>.yaml).
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import torch

from recommender.data_model import EVENTS_FILE_HELP as FORMAT_HELP, read_events, read_items
from recommender.errors import ConfigError, InvalidRequest, NotFound
from recommender.model.baselines import BASELINES
from recommender.model.hybrid import Blend, CategoryPrior, fit_blend
from recommender.model.session_knn import SESSION_BASELINES
from recommender.model.config import load_model_config, parse_assignments
from recommender.model.content import ContentEncoder, calibrate_offset, fit_content_encoder, listings_from_items
from recommender.model.data import (ItemVocabulary, SessionSplit, build_sessions, parts_split, prefix_examples,
                                    refit_split, serving_split, split_sessions)
from recommender.model.device import pick_device
from recommender.model.evaluate import ModelScorer, Scorer
from recommender.model.network import SessionModel
from recommender.model.trainer import Trainer
from recommender.settings import Settings

__all__ = ["run_train", "run_retrain", "load_split", "split_of", "model_config", "ALL_BASELINES"]

ALL_BASELINES = (*BASELINES, *SESSION_BASELINES)
# Baseline parameters and blend weights are picked on at most this many validation prefixes (a seeded sample).
TUNING_PREFIXES = 5000

_log = logging.getLogger("hotfeed.model")



def read_events_file(path: Path) -> pd.DataFrame:
    """Return the valid events of a file; raise InvalidRequest (NotFound for a missing file) with one
    clear line when it cannot be read or holds no valid row."""
    try:
        events, report = read_events(path)
    except (InvalidRequest, NotFound):
        raise
    except (ValueError, TypeError, OSError, UnicodeDecodeError, pd.errors.ParserError, pa.ArrowException) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InvalidRequest(f"events file {str(path)!r} cannot be read ({detail}); {FORMAT_HELP}") from None
    _log.info("%s", report.summary())
    if events.empty:
        raise InvalidRequest(f"events file {str(path)!r}: no valid rows ({report.summary()}); {FORMAT_HELP}")
    return events


def load_split(
    path: Path, *, test_days: float, min_item_support: int, gap_minutes: float, train_days: float | None = None,
    protocol: str = "filtered",
) -> SessionSplit:
    """Return the session split of an events file; raise InvalidRequest with one clear line when unusable."""
    events = read_events_file(path)
    clicks = build_sessions(events, gap_minutes=gap_minutes, collapse_repeats=protocol == "filtered")
    split = split_sessions(clicks, test_days=test_days, min_item_support=min_item_support, train_days=train_days,
                           protocol=protocol)
    _log.info("split: %s", split.summary())
    return split


def split_of(args: argparse.Namespace) -> SessionSplit:
    return load_split(args.events, test_days=args.test_days, min_item_support=args.min_item_support,
                      gap_minutes=args.gap_minutes, train_days=args.train_days,
                      protocol=getattr(args, "protocol", "filtered"))


def model_config(model: str, args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    flags = {"epochs": args.epochs, "seed": args.seed, "batch_size": args.batch_size, "lr": args.lr,
             **parse_assignments(args.set)}
    config = load_model_config(model, file=args.config, env=settings.model.params, flags=flags)
    if int(config["embedding_dim"]) != settings.engine.embedding_dims:
        _log.warning("embedding_dim %s differs from HOTFEED_ENGINE_EMBEDDING_DIMS %s: the exported vectors "
                     "will not fit the items index", config["embedding_dim"], settings.engine.embedding_dims)
    return config


def items_file_for(events: Path, items: Path | None) -> Path | None:
    """Return the items file (the content encoder's and the blend's categories): ``items`` when given
    (a path named "none" turns it off), else items.parquet or items.csv beside the events file, else None."""
    if items is not None:
        if str(items).lower() == "none":
            return None
        if not items.exists():
            raise NotFound(f"--items {str(items)!r} does not exist; pass the items file of the catalogue "
                           "(or --items none to go without item categories and content encoder)")
        return items
    for name in ("items.parquet", "items.csv"):
        if (events.parent / name).exists():
            return events.parent / name
    return None


@dataclass(frozen=True)
class CatalogueItems:
    """The items file read once for a split: its latest row per item (indexed by item id) and the
    row position of each vocabulary item without padding (-1 when the file lacks it)."""

    rows: pd.DataFrame
    position: np.ndarray


def catalogue_items(split: SessionSplit, items_path: Path | None) -> CatalogueItems | None:
    """Return the items file aligned to ``split``'s vocabulary (the content encoder's and the blend's
    categories read it), or None without one (with a warning naming what goes without it)."""
    if items_path is None:
        _log.warning("no items file beside the events (or --items): no category part in the blend and no "
                     "content encoder in a trained checkpoint (new listings get the catalogue's mean vector)")
        return None
    items, report = read_items(items_path)
    _log.info("items file %s: %s", items_path.name, report.summary())
    latest = items.drop_duplicates("item_id", keep="last")
    rows = latest.set_index(latest["item_id"].astype("string"))
    return CatalogueItems(rows, pd.Index(rows.index).get_indexer(pd.Index(split.vocab.to_list(), dtype="string")))


def fit_checkpoint_blend(model: SessionModel, split: SessionSplit, catalogue: CatalogueItems | None, *, knn_name: str,
                         device: torch.device | None, max_length: int, tail_bias: float | None) -> Blend:
    """Return a checkpoint's blend (`hotfeed train`, `hotfeed retrain`), picked on validation with counting
    parts as long as the published ones (``data.parts_split``)."""
    parts = parts_split(split)
    return fit_blend(ModelScorer(model, device=device), parts, knn_name=knn_name, max_length=max_length,
                     categories=item_categories(parts, catalogue), tail_bias=tail_bias)


def item_categories(split: SessionSplit, catalogue: CatalogueItems | None) -> CategoryPrior | None:
    """Return the blend's category part (hybrid.CategoryPrior) for ``split``'s items, or None without
    an items file; items the file lacks have no category."""
    if catalogue is None:
        return None
    categories = catalogue.rows["category"].astype("string").fillna("").to_numpy(dtype=object)
    names = ["", *(categories[p] if p >= 0 else "" for p in catalogue.position)]
    prior = CategoryPrior.from_names(names, split.item_counts)
    _log.info("blend category part: %d categories over %d of %d items", prior.num_categories,
              int((prior.codes >= 0).sum()), len(names) - 1)
    return prior


def fit_content(model: Any, split: SessionSplit, catalogue: CatalogueItems | None) -> ContentEncoder | None:
    """Return the content encoder fitted to ``model``'s item vectors on the items file, or None without one."""
    if catalogue is None:
        return None
    rows, position = catalogue.rows, catalogue.position
    ids = split.vocab.to_list()
    known = np.flatnonzero(position >= 0)
    if len(known) < 50:
        _log.warning("only %d of the model's %d items are in the items file: no content encoder", len(known), len(ids))
        return None
    vectors = model.items.weight.detach().float().cpu().numpy()[1:]
    listings = listings_from_items(rows.iloc[position[known]])
    encoder = fit_content_encoder(listings, vectors[known])
    # The scale offset, on validation prefixes whose next item has a listing (at most 20k).
    listing_of = {int(index) + 1: listing for index, listing in zip(known, listings)}
    examples = prefix_examples(split.valid or split.train, max_length=int(getattr(model, "max_length", 20)))
    rows_ok = np.flatnonzero([int(t) in listing_of for t in examples.targets])[:20_000]
    encoder.offset = calibrate_offset(model, examples.items[rows_ok], examples.lengths[rows_ok],
                                      examples.targets[rows_ok], [listing_of[int(t)] for t in examples.targets[rows_ok]],
                                      encoder)
    encoder.report["cold_offset"] = round(encoder.offset, 4)
    return encoder


def run_train(args: argparse.Namespace, settings: Settings) -> int:
    """Train one model and write its checkpoint; return 0."""
    device = pick_device(args.device or settings.model.device)
    config = model_config(args.model, args, settings)
    items_path = items_file_for(args.events, args.items)
    split = split_of(args)
    catalogue = catalogue_items(split, items_path)
    out = args.out or settings.model.checkpoint
    if out is None:
        raise ConfigError("HOTFEED_MODEL_CHECKPOINT is 'none' and no --out was given; pass --out PATH.pt")
    path = out if out.suffix == ".pt" else out / f"{args.model}.pt"
    trainer = Trainer(config, device=device)
    model = trainer.build(args.model, split)
    report = trainer.fit(model, split)
    blend = None
    if args.blend != "none":
        blend = fit_checkpoint_blend(model, split, catalogue, knn_name=args.blend, device=device,
                                     max_length=int(config["max_length"]), tail_bias=args.blend_tail_bias)
        print(f"blend with {args.blend}: weights {blend.weights.to_dict()} picked on validation "
              f"({blend.info['weights_tuning']})")
    picked = split
    if args.refit:
        # The epoch count, tail bias and blend weights picked on validation; the model fitted again on
        # train + validation (what `hotfeed eval --refit` measures; the blend's KNN below, from every session).
        split = refit_split(split)
        trainer = Trainer({**trainer.config, "epochs": max(report.best_epoch, 1)}, device=device)
        model = trainer.build(args.model, split)
        report = trainer.fit(model, split)
    content = fit_content(model, picked, catalogue)  # its scale offset is calibrated on validation
    # Nothing is measured on the validation and test sessions any more: the checkpoint's item counts
    # and the blend's counting parts are built from every session of the log.
    serving = serving_split(split)
    if blend is not None:
        blend = blend.refitted(serving)
    trainer.save(path, model, serving, report, content=content, blend=blend)
    print(f"{report.summary()} on {device.type}; checkpoint {path}"
          + (f" (the blend's KNN over all {len(serving.train):,} sessions of the log)" if blend is not None else ""))
    if content is not None and content.report.get("held_out"):
        r = content.report
        print(f"content encoder ({r['held_out']} held-out items): cosine to the learned vector {r['cosine_content']} "
              f"(category mean {r['cosine_category_mean']}), neighbour recall@20 {r['neighbour_recall@20_content']} "
              f"(category mean {r['neighbour_recall@20_category_mean']})")
    if getattr(args, "publish", False):
        from recommender.model.publish import publish_trained

        print(publish_trained(path, settings))
    return 0


class VocabularyMapped:
    """Scores a checkpoint trained on another vocabulary in this split's index space.

    Session clicks unknown to the checkpoint become padding and its unknown items score -inf.
    """

    def __init__(self, scorer: Scorer, *, split_vocab: ItemVocabulary, model_vocab: ItemVocabulary):
        self.scorer = scorer
        self.to_model = model_vocab.index_of(split_vocab.ids)
        self.to_model[0] = 0

    def score_sessions(self, items: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        scores = self.scorer.score_sessions(self.to_model[items], lengths)[:, self.to_model]
        scores[:, self.to_model == 0] = -np.inf
        return scores


def run_retrain(args: argparse.Namespace, settings: Settings) -> int:
    """Run one retraining round, or one every --every-hours until a signal; return 0 (1: the last round failed)."""
    from recommender.model.metrics import metric_by_name
    from recommender.model.retrain import retrain_once

    metric_by_name(args.metric)
    device = pick_device(args.device or settings.model.device)
    config = model_config(args.model, args, settings)
    items_path = items_file_for(args.events, args.items)
    folder = args.out or settings.paths.artifacts_dir / "model" / "retrain"

    def round_() -> int:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        split = split_of(args)
        result = retrain_once(settings, split, model_name=args.model, config=config,
                              out=folder / f"{args.model}-{stamp}.pt", items_path=items_path, metric=args.metric,
                              publish=args.publish, device=device, blend=args.blend,
                              blend_tail_bias=args.blend_tail_bias)
        print(result.summary(), flush=True)
        return 0

    if not args.every_hours:
        return round_()
    return run_on_schedule(round_, every_hours=args.every_hours, what="retraining",
                           started=f"retraining every {args.every_hours:g} h from {args.events}")


def run_on_schedule(round_: Callable[[], int], *, every_hours: float, what: str, started: str) -> int:
    """Run ``round_`` now and then every ``every_hours`` hours until SIGINT/SIGTERM; return the last
    round's status (1 when it raised: a failed round is logged, and the schedule goes on)."""
    import signal
    import threading

    from apscheduler.schedulers.background import BackgroundScheduler

    if not every_hours > 0:
        raise InvalidRequest(f"--every-hours must be > 0, got {every_hours!r}")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    status = {"last": 0}

    def job() -> None:
        try:
            status["last"] = round_()
        except Exception:  # noqa: BLE001 - a failed round must not stop the schedule
            status["last"] = 1
            _log.exception("%s round failed; the serving model is unchanged", what)

    scheduler = BackgroundScheduler(timezone="UTC")
    scheduler.add_job(job, "interval", hours=every_hours, id=what, max_instances=1, coalesce=True,
                      next_run_time=dt.datetime.now(dt.timezone.utc))
    scheduler.start()
    print(f"{started}; Ctrl-C stops", flush=True)
    stop.wait()
    scheduler.shutdown(wait=True)
    print(f"{what} schedule stopped", flush=True)
    return status["last"]
