"""`hotfeed eval`: models and baselines through one evaluator, each served blend against the bar.

Baselines are fitted once (they have no seed). Models are trained, and their blends picked on
validation, once per training seed: with ``--seeds`` a row's metrics are the mean over the
seeds, and each blend is compared with the baselines on every test prefix's mean over the seeds.
On a log of a few hundred test prefixes one seed's verdict is partly that seed's luck (the
picks on a small validation set move with the model), so the mean over seeds is what says
whether a method beats another.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from recommender.errors import InvalidRequest
from recommender.model.baselines import Popularity, SessionItemKNN, SessionPopularity
from recommender.model.checkpoint import load_checkpoint
from recommender.model.data import SessionSplit, refit_split
from recommender.model.device import pick_device
from recommender.model.evaluate import ModelScorer, Scorer, format_table, rank_scorers, write_report
from recommender.model.hybrid import HybridScorer, tune_blend
from recommender.model.metrics import RankedLists, metric_by_name
from recommender.model.network import MODELS
from recommender.model.runs import (ALL_BASELINES, TUNING_PREFIXES, VocabularyMapped, model_config, split_of,
                                    catalogue_items, item_categories, items_file_for)
from recommender.model.session_knn import KNN_DEFAULTS, SESSION_BASELINES, build_session_baseline, tune_knn
from recommender.model.significance import PairedDifference, compare
from recommender.model.trainer import Trainer
from recommender.settings import Settings

__all__ = ["run_eval"]

_log = logging.getLogger("hotfeed.model")

# The baselines each served blend must beat (issue 13): the strongest neighbourhood methods, and
# GRU4Rec alone (the long-tail bar: Tail@20 at least 1.5x GRU4Rec's "at no lower HR@20").
_BAR_BASELINES: tuple[str, ...] = ("V-SKNN", "VSTAN", "gru4rec")


@dataclass
class _SeedRun:
    """The models of one training seed (or of the given checkpoints) and the blends picked with them."""

    seed: int | None
    models: dict[str, Scorer]  # as evaluated (with --refit: fitted again on train + validation)
    picked: dict[str, Scorer] = field(default_factory=dict)  # fitted on train only: blends are picked with these
    training: dict[str, Any] = field(default_factory=dict)
    blends: dict[str, Scorer] = field(default_factory=dict)
    hybrids: dict[str, Any] = field(default_factory=dict)
    lists: dict[str, RankedLists] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return "" if self.seed is None else f" (seed {self.seed})"


def run_eval(args: argparse.Namespace, settings: Settings) -> int:
    """Evaluate models and baselines on one events file; print the table, write the report; return 0."""
    started = time.monotonic()
    device = pick_device(args.device or settings.model.device)
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    for name in metrics:
        metric_by_name(name)  # fail on a typo before minutes of training
    baselines = [b.strip() for b in args.baselines.split(",") if b.strip()]
    unknown = [b for b in baselines if b not in ALL_BASELINES]
    if unknown:
        raise InvalidRequest(f"--baselines: unknown {unknown!r}; choose from {list(ALL_BASELINES)!r}")
    hybrids = [b.strip() for b in args.hybrids.split(",") if b.strip()]
    unknown = [b for b in hybrids if b not in SESSION_BASELINES]
    if unknown:
        raise InvalidRequest(f"--hybrids: unknown {unknown!r}; choose from {list(SESSION_BASELINES)!r}")
    seeds = list(args.seeds or [])
    if seeds and args.seed is not None:
        raise InvalidRequest("give --seed or --seeds, not both")
    if seeds and args.checkpoint:
        raise InvalidRequest("--seeds trains every model once per seed; a --checkpoint is already trained")
    names: list[str] = []
    if not args.checkpoint:
        names = [m.strip() for m in args.models.split(",") if m.strip()]
        unknown = [m for m in names if m not in MODELS]
        if unknown:
            raise InvalidRequest(f"--models: unknown {unknown!r}; choose from {sorted(MODELS)!r}")
    items_path = items_file_for(args.events, args.items)  # a missing --items fails before any training
    split = split_of(args)
    tuned: dict[str, Any] = {}

    # --refit: every scorer is picked on train vs validation, then fitted again on train + validation.
    final = refit_split(split) if args.refit else split
    simple = {
        "POP": lambda: Popularity(final.item_counts),
        "S-POP": lambda: SessionPopularity(final.item_counts),
        "ItemKNN": lambda: SessionItemKNN(final.item_counts, final.train),
    }
    knn_params: dict[str, Any] = {}

    def baseline(name: str, on: SessionSplit) -> Scorer:
        if name in simple:
            return simple[name]()
        if name not in knn_params:
            knn_params[name] = None
            if args.tune_baselines and name in KNN_DEFAULTS:
                params, info = tune_knn(name, split, max_examples=TUNING_PREFIXES)
                tuned[name] = {"params": params.__dict__, **info}
                knn_params[name] = params
                print(f"{name}: {params} picked on validation ({info})")
        return build_session_baseline(name, on.item_counts, on.train, knn_params[name])

    scorers: dict[str, Scorer] = {name: baseline(name, final) for name in baselines}
    out = args.out or settings.paths.artifacts_dir / "eval" / args.events.stem.replace(".", "_")
    if out == settings.paths.artifacts_dir / "eval" / "events":
        out = out.parent / args.events.parent.name
    published: dict[str, Scorer] = {}  # the checkpoints' own blends, as the recommender serves them
    if args.checkpoint:
        runs = [_load_checkpoints(args.checkpoint, split, device, published)]
    else:
        runs = [_train_models(names, args, settings, split, final, device, seed=seed,
                              out=out / f"seed-{seed}" if len(seeds) > 1 else out)
                for seed in (seeds or [None])]
    max_length = max([int(c["config"]["max_length"]) for run in runs for c in run.training.values()] + [20])
    has_models = any(run.models for run in runs)
    categories = item_categories(split, catalogue_items(split, items_path)) if hybrids and has_models else None
    final_categories = categories.refitted(final.item_counts) if categories is not None and args.refit else categories
    for knn_name in hybrids:
        knn = baseline(knn_name, split)  # on train only, like the models the weights are picked with
        final_knn = scorers.get(knn_name) or baseline(knn_name, final)
        for run in runs:
            for model_name, model in run.models.items():
                weights, info = tune_blend(run.picked.get(model_name, model), knn, split, max_length=max_length,
                                           max_examples=TUNING_PREFIXES, categories=categories,
                                           tail_bias=args.blend_tail_bias)
                name = f"{model_name}+{knn_name}"
                run.blends[name] = HybridScorer(model, final_knn, weights=weights, name=name,
                                                categories=final_categories, is_tail=final.is_tail)
                run.hybrids[name] = {"weights": weights.to_dict(), "validation_HR@20+MRR@20": info}
                print(f"{name}{run.label}: weights {weights.to_dict()} picked on validation ({info})")
    # At least top-20 lists: the comparisons below read HR@20 and MRR@20 whatever --metrics holds.
    k = max([20] + [metric_by_name(m).k for m in metrics])
    fixed = rank_scorers(scorers, final, k=k, max_length=max_length)
    for run in runs:
        run.lists = rank_scorers({**run.models, **run.blends}, final, k=k, max_length=max_length)
    fixed.update(rank_scorers(published, final, k=k, max_length=max_length))
    # Every row's lists: one for a baseline or a published blend, one per seed for a model or its blend.
    rows: dict[str, list[RankedLists]] = {name: [fixed[name]] for name in scorers}
    for run in runs:
        for name, ranked in run.lists.items():
            rows.setdefault(name, []).append(ranked)
    rows.update({name: [fixed[name]] for name in published})
    results = {name: _mean_metrics(lists, metrics) for name, lists in rows.items()}
    blend_rows = [*runs[0].hybrids, *published]
    comparisons = _blends_against_baselines(rows, blend_rows)
    several = len(runs) > 1
    extra: dict[str, Any] = {
        "events": str(args.events), "protocol": split.params["protocol"], "split": split.summary(),
        "split_params": final.params, "refit": bool(args.refit), "device": device.type,
        "seeds": [run.seed for run in runs] if several else None,
        "training": {str(run.seed): run.training for run in runs} if several else runs[0].training,
        "hybrids": {str(run.seed): run.hybrids for run in runs} if several else runs[0].hybrids,
        "tuned_baselines": tuned,
        "comparisons": {pair: [asdict(d) | {"verdict": d.verdict} for d in diffs] for pair, diffs in comparisons.items()},
    }
    if several:
        extra["per_seed"] = {str(run.seed): {name: _mean_metrics([ranked], metrics) for name, ranked in run.lists.items()}
                             for run in runs}
    written = write_report(results, out, extra=extra)
    print(f"protocol: {split.params['protocol']} (recommender/model/data.py); "
          + ("fitted again on train + validation (--refit)" if args.refit else "fitted on train only"))
    if several:
        for run in runs:
            print(f"seed {run.seed}:\n{format_table(extra['per_seed'][str(run.seed)])}")
        print(f"mean over seeds {', '.join(str(run.seed) for run in runs)} (models and blends; baselines have no seed):")
    print(format_table(results))
    if comparisons:
        over = "each prefix's mean over the seeds, " if several else ""
        print(f"each blend against the strongest baselines and GRU4Rec alone on the same test prefixes ({over}"
              "difference [95% paired-bootstrap interval]; 'tie' when the interval spans 0; "
              "recommender/model/significance.py)")
        for pair, diffs in comparisons.items():
            print(f"  {pair}: " + "; ".join(d.describe() for d in diffs) + _tail_ratio(pair, rows))
    print(f"evaluated {len(rows)} scorers on {split.summary()} in {time.monotonic() - started:.0f}s; "
          f"report in {out} ({len(written)} files)")
    return 0


def _load_checkpoints(paths: Sequence[Path], split: SessionSplit, device, published: dict[str, Scorer]) -> _SeedRun:
    """Return the checkpoints' models as one run; put their own blends, as served, into ``published``."""
    run = _SeedRun(seed=None, models={})
    for path in paths:
        loaded = load_checkpoint(path, device=device)
        model_scorer = ModelScorer(loaded.model, device=device)
        served: dict[str, Scorer] = {loaded.model_name: model_scorer}
        if loaded.blend is not None:
            blend_of = loaded.blend
            served[f"{loaded.model_name}+{blend_of.knn.name} as published"] = HybridScorer(
                model_scorer, blend_of.knn, weights=blend_of.weights, categories=blend_of.categories,
                is_tail=loaded.is_tail)
        for name, scorer in served.items():
            if loaded.vocab != split.vocab:
                scorer = VocabularyMapped(scorer, split_vocab=split.vocab, model_vocab=loaded.vocab)
            (run.models if name == loaded.model_name else published)[name] = scorer
    return run


def _train_models(names: Sequence[str], args: argparse.Namespace, settings: Settings, split: SessionSplit,
                  final: SessionSplit, device, *, seed: int | None, out: Path) -> _SeedRun:
    """Train each model (with ``seed`` when given, else the config's) and save its checkpoint in ``out``."""
    run = _SeedRun(seed=seed, models={})
    for name in names:
        config = model_config(name, args, settings)
        if seed is not None:
            config["seed"] = seed
        trainer = Trainer(config, device=device)
        model = trainer.build(name, split)
        report = trainer.fit(model, split)
        # The effective config: with the tail_bias picked on validation, and how it was picked.
        run.training[name] = {"config": dict(trainer.config), "history": report.history,
                              "best_epoch": report.best_epoch, "seconds": round(report.seconds, 1)}
        if report.tail_bias_scores:
            run.training[name]["tail_bias_scan"] = report.tail_bias_scan
        run.picked[name] = ModelScorer(model, device=device)
        if args.refit:
            # The epoch count and tail_bias picked on validation, trained again on train + validation.
            trainer = Trainer({**trainer.config, "epochs": max(report.best_epoch, 1)}, device=device)
            model = trainer.build(name, final)
            report = trainer.fit(model, final)
            run.training[name]["refit_seconds"] = round(report.seconds, 1)
        # Kept next to the report so a table row can be re-scored or served later.
        path = trainer.save(out / f"{name}.pt", model, final, report)
        print(f"{report.summary()}{run.label}; checkpoint {path}")
        run.training[name]["checkpoint"] = str(path)
        run.models[name] = ModelScorer(model, device=device)
    return run


def _mean_metrics(runs: Sequence[RankedLists], metrics: Sequence[str]) -> dict[str, float]:
    """Return {metric name: its mean over the runs' lists} (one run: its value)."""
    chosen = [metric_by_name(m) for m in metrics]
    return {m.name: statistics.fmean(m.compute(ranked) for ranked in runs) for m in chosen}


def _tail_ratio(pair: str, rows: Mapping[str, Sequence[RankedLists]]) -> str:
    """Return "; Tail@20 a vs b (r x)" for a blend against GRU4Rec (the long-tail bar), else "";
    with several seeds, of the mean Tail@20 over the seeds."""
    blend, base = pair.split(" vs ")
    if base != "gru4rec":
        return ""
    ours, theirs = (_mean_metrics(rows[name], ["Tail@20"])["Tail@20"] for name in (blend, base))
    ratio = f"{ours / theirs:.2f}x" if theirs > 0 else "GRU4Rec has none"
    return f"; Tail@20 {ours:.4f} vs {theirs:.4f} ({ratio})"


def _blends_against_baselines(rows: Mapping[str, Sequence[RankedLists]],
                              hybrids: Iterable[str]) -> dict[str, list[PairedDifference]]:
    """Return {"<blend> vs <baseline>": paired HR@20 and MRR@20 differences} for every blend row
    and every one of _BAR_BASELINES that was evaluated (a blend is not compared with its own model);
    a row with several seeds' lists is compared on each prefix's mean over them."""
    return {f"{blend} vs {base}": compare(rows[blend], rows[base])
            for blend in hybrids for base in _BAR_BASELINES
            if base in rows and blend in rows and not blend.startswith(f"{base}+")}
