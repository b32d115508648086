"""Full rebuild: a new physical items index, verified, then an atomic alias swap.

Steps: cohorts and popularity from the event log, item vectors, then a new index
``<alias>-<utc timestamp>`` written parents first and children after (routed to their
parent), refresh, count check, alias swap, popular fallback to Redis, and pruning of
indexes older than the retention (the previous one is kept for ``rollback``).
Refresh is switched off and the translog is synced asynchronously while the bulk load runs
(one refresh at the end is much cheaper than one per second of loading, and the new index is
not live yet, so a crash only loses a half-built index that the next run replaces); both are
restored before the count check and the swap. Bulk requests run ``bulk_concurrency`` at a
time so Python builds the next chunk while the engine indexes the previous one.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from recommender.progress import progress_bar
from recommender.data_model import read_events, read_items, read_users
from recommender.engine import SearchEngine
from recommender.errors import HotfeedError, NotFound
from recommender.settings import Settings
from recommender.stores.popular import PopularStore
from indexer.cohorts import assign_user_cohorts
from indexer.documents import engagement_counts, item_documents, popularity_documents
from indexer.embeddings import item_vectors
from indexer.popularity import compute_cohort_popularity, compute_popular_fallback
from indexer.warmup import warm_index
from recommender.engine import BulkResult
from recommender.stores.cohort_maxima import CohortMaxima

__all__ = ["MarketplaceData", "RebuildReport", "load_marketplace", "rebuild_index", "rollback_index", "index_status"]

_log = logging.getLogger(__name__)


@dataclass
class MarketplaceData:
    items: pd.DataFrame
    users: pd.DataFrame
    events: pd.DataFrame


@dataclass
class RebuildReport:
    index: str
    parents: int
    children: int
    seconds: float
    previous: list[str] = field(default_factory=list)
    pruned: list[str] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)
    model_version: str = ""
    stage_seconds: dict[str, float] = field(default_factory=dict)
    # "parents" and "children": each bulk write's own counts, retries and seconds.
    bulk: dict[str, BulkResult] = field(default_factory=dict)

    @property
    def docs_per_s(self) -> float:
        return (self.parents + self.children) / self.seconds if self.seconds else 0.0

    def summary(self) -> str:
        """Return the one-line summary of the rebuild."""
        stages = ", ".join(f"{k} {v:.1f}s" for k, v in self.stage_seconds.items())
        return (
            f"index {self.index}: {self.parents:,} items + {self.children:,} popularity docs in {self.seconds:.1f}s "
            f"({self.docs_per_s:,.0f} docs/s; {stages}); vectors {self.model_version}; "
            f"{len(self.failures)} failures; alias moved from {self.previous or 'nothing'}; pruned {self.pruned or 'none'}"
        )


def load_marketplace(data_dir: Path) -> MarketplaceData:
    """Return the items, users and events files of a data folder, validated.

    Each is ``<name>.parquet`` or, when there is none, ``<name>.csv`` (docs/your-data.md).
    Raises NotFound naming the folder, the files it lacks and the commands that make them.
    """
    names = ("items", "users", "events")
    paths = {n: next((p for p in (data_dir / f"{n}.parquet", data_dir / f"{n}.csv") if p.exists()), None) for n in names}
    missing = [f"{n}.parquet|.csv" for n, p in paths.items() if p is None]
    if missing:
        raise NotFound(
            f"data folder {str(data_dir)!r} lacks {missing}; make it with `hotfeed data synth` "
            f"or `hotfeed data import taobao|rees46`, or put your own files there (docs/your-data.md)"
        )
    items, items_report = read_items(paths["items"])
    users, users_report = read_users(paths["users"])
    events, events_report = read_events(paths["events"])
    for report in (items_report, users_report, events_report):
        _log.info("%s", report.summary())
    return MarketplaceData(items, users, events)


def data_time(data: MarketplaceData) -> datetime:
    """Return the time of the newest event: the "now" of a rebuild from a log.

    Popularity decays relative to this moment, so a historic log (a public dataset, last
    month's synthetic run) gives the same scores it gave when it was fresh; for a live
    log it is a few seconds behind the wall clock.
    """
    if len(data.events) == 0:
        return datetime.now(timezone.utc)
    return pd.Timestamp(data.events["ts"].max()).to_pydatetime()


# While a new index loads it serves no reader: no refreshes, and translog fsyncs every few
# seconds instead of per request.
_LOADING_SETTINGS = {"refresh_interval": "-1", "translog.durability": "async"}


def _new_index_name(alias: str, now: datetime) -> str:
    return f"{alias}-{now.strftime('%Y%m%d-%H%M%S-%f')}"


def rebuild_index(
    engine: SearchEngine,
    data: MarketplaceData,
    settings: Settings,
    *,
    now: datetime | None = None,
    clusters: pd.Series | None = None,
    popular: PopularStore | None = None,
    maxima: CohortMaxima | None = None,
    show_progress: bool = True,
) -> RebuildReport:
    """Build a new physical index from ``data``, swap the alias to it and return the report.

    ``now`` defaults to the newest event (``data_time``). ``clusters`` maps user id -> behaviour cluster (from the clustering job) for cluster
    cohorts. Raises HotfeedError if the bulk load fails or the counts do not match; the
    alias then still points at the previous index, and the half-built index is deleted.
    """
    now = now or data_time(data)
    alias = settings.engine.index_alias
    stages: dict[str, float] = {}
    started = time.monotonic()

    def stage(name: str, t0: float, done: str = "") -> float:
        stages[name] = time.monotonic() - t0
        _log.info("rebuild: %s%s in %.1fs", name, f" ({done})" if done else "", stages[name])
        return time.monotonic()

    t = time.monotonic()
    cfg = settings.indexer
    user_cohorts = assign_user_cohorts(data.users, now=now, clusters=clusters, combined=cfg.combined_cohorts)
    popularity = compute_cohort_popularity(
        data.events,
        user_cohorts,
        now=now,
        event_weights=cfg.event_weights,
        half_life_h=cfg.popularity_half_life_h,
        lookback_days=cfg.popularity_lookback_days,
    )
    # Children only for items that exist as parents (events can name items not in the catalog).
    popularity = popularity.loc[popularity["item_id"].isin(set(data.items["item_id"].astype("string")))]
    t = stage("popularity", t, f"{len(popularity):,} item x cohort rows, {popularity['cohort'].nunique()} cohorts")
    # The model the recommenders serve (the published one, else HOTFEED_MODEL_CHECKPOINT), so the
    # index's item vectors and the sessions' query vectors come from the same model.
    from recommender.model.publish import serving_checkpoint

    vectors = item_vectors(
        data.items, data.events, dims=settings.engine.embedding_dims, checkpoint=serving_checkpoint(settings)
    )
    t = stage("vectors", t, f"{vectors.model_version}, {vectors.warm:,} of {len(data.items):,} items learned")

    # Named by build time (not data time): names sort in build order, which rollback relies on.
    index = _new_index_name(alias, datetime.now(timezone.utc))
    engine.create_items_index(index, alias=alias)
    join = engine.capabilities().join
    bulk: dict[str, BulkResult] = {}
    failures: list[tuple[str, str]] = []
    try:
        engine.put_index_settings(index, _LOADING_SETTINGS)
        parts = [(
            "parents",
            len(data.items),
            item_documents(data.items, vectors=vectors.vectors, model_version=vectors.model_version,
                           engagement=engagement_counts(data.events), join=join),
        )]
        if join:
            parts.append(("children", len(popularity), popularity_documents(popularity)))
        else:
            _log.warning("%s has no parent-join module: popularity children are not indexed", engine.kind)
        for part, total, docs in parts:
            with progress_bar(total=total, desc=f"bulk {part}", unit="doc", disable=not show_progress, mininterval=1,
                      unit_scale=True) as bar:
                bulk[part] = engine.bulk_upsert(
                    index, docs, chunk_docs=cfg.bulk_chunk_docs, max_retries=cfg.bulk_max_retries,
                    concurrency=cfg.bulk_concurrency, progress=bar,
                )
            failures += bulk[part].failed
            _log.info("rebuild: bulk %s: %s", part, bulk[part].summary())
        children_ok = bulk["children"].ok if "children" in bulk else 0
        t = stage("bulk", t)
        engine.put_index_settings(
            index, {"refresh_interval": settings.engine.refresh_interval, "translog.durability": "request"}
        )
        engine.refresh(index)
        if failures:
            raise HotfeedError(f"{len(failures)} documents failed to index (first: {failures[0]!r}); alias not moved")
        counted = engine.count(index)
        expected = bulk["parents"].ok + children_ok
        if counted != expected:
            raise HotfeedError(f"index {index} holds {counted} docs, expected {expected}; alias not moved")
        t = stage("verify", t)
        if cfg.merge_segments:
            # One segment per index: kNN walks one HNSW graph instead of one per segment and
            # every query clause runs once; the served feed query took 13 instead of 17.5 ms
            # (docs/performance.md). Done before the swap, so serving never pays for it.
            engine.force_merge(index, max_segments=cfg.merge_segments)
            t = stage("merge", t, f"{cfg.merge_segments} segment(s)")
    except BaseException:
        engine.delete_index(index)
        raise

    regions = data.items["region"].dropna().astype(str).unique().tolist() if "region" in data.items else []
    warm_index(engine, index, settings, regions=regions, now=now)
    t = stage("warm", t)
    previous = engine.swap_alias(alias, index)
    if popular is not None:
        popular.write(
            compute_popular_fallback(popularity, items=data.items, size=cfg.popular_fallback_size), index=index
        )
    if maxima is not None:
        maxima.reset_from(popularity, now=now)
    pruned = prune_indexes(engine, alias, keep=cfg.retention_indexes)
    stage("swap", t)
    return RebuildReport(
        index=index,
        parents=bulk["parents"].ok,
        children=children_ok,
        seconds=time.monotonic() - started,
        previous=previous,
        pruned=pruned,
        failures=failures,
        model_version=vectors.model_version,
        stage_seconds=stages,
        bulk=bulk,
    )


def prune_indexes(engine: SearchEngine, alias: str, *, keep: int) -> list[str]:
    """Delete all but the newest ``keep`` physical indexes of the alias (never the live one)."""
    live = set(engine.alias_targets(alias))
    indexes = [name for name in engine.list_indices(f"{alias}-*") if name.startswith(f"{alias}-2")]
    old = [name for name in indexes[:-keep] if name not in live] if keep < len(indexes) else []
    for name in old:
        engine.delete_index(name)
    return old


def rollback_index(engine: SearchEngine, alias: str) -> tuple[str, str]:
    """Point the alias back at the newest index older than the live one; return (from, to).

    Raises NotFound when there is no older index to return to.
    """
    live = engine.alias_targets(alias)
    if not live:
        raise NotFound(f"alias {alias!r} points at no index; run `hotfeed index full` first")
    indexes = [name for name in engine.list_indices(f"{alias}-*") if name.startswith(f"{alias}-2")]
    older = [name for name in indexes if name < live[0]]
    if not older:
        raise NotFound(f"no index older than {live[0]!r} is kept to roll back to (retention keeps {len(indexes)})")
    engine.swap_alias(alias, older[-1])
    return live[0], older[-1]


def index_status(engine: SearchEngine, alias: str) -> dict:
    """Return the live index, its document count and the kept older indexes."""
    live = engine.alias_targets(alias)
    indexes = [name for name in engine.list_indices(f"{alias}-*") if name.startswith(f"{alias}-2")]
    return {
        "alias": alias,
        "live": live[0] if live else None,
        "docs": engine.count(alias) if live else 0,
        "kept": [name for name in indexes if name not in live],
    }
