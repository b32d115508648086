"""One clustering run: frames -> segments and behaviour clusters -> a new published version.

Stages, in order (each named for what it does):

1. ``build_user_features``      demographics, affinity, price band, engagement, vectors
2. ``choose_k`` + ``minibatch_kmeans``  behaviour clusters over the user vectors
3. ``summarise_clusters``       size, top categories, typical price, common region/platform
4. ``pick_cold_start_clusters`` region / platform / all -> the cluster most of them are in
5. write every hash under a fresh version, then ``publish_version`` flips the pointer,
   then older versions are deleted (readers follow the pointer atomically, so this is safe).
6. optionally export the published segments as Parquet (``EXPORT_COLUMNS``, one row per
   user, ``cluster`` <NA> when unclustered), for batch consumers such as the indexer's
   cluster cohorts; the CLI writes ``<paths.artifacts_dir>/clustering/user_segments.parquet``.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from clustering.features import ItemEmbeddings, UserFeatures, build_user_features
from clustering.kmeans import KChoice, choose_k, minibatch_kmeans, silhouette_on_sample
from recommender.model.device import pick_device
from recommender.progress import progress_bar
from recommender.cohorts import normalize_cohort_series, user_cohorts_joined
from recommender.data_model import read_events, read_items, read_users
from recommender.errors import NotFound
from recommender.settings import ClusteringSettings
from recommender.stores.segments import SegmentWriter

__all__ = [
    "EXPORT_COLUMNS",
    "Frames",
    "ClusteringReport",
    "load_frames",
    "cluster_users",
    "summarise_clusters",
    "pick_cold_start_clusters",
    "run_clustering",
]

_log = logging.getLogger("hotfeed.clustering")

EXPORT_COLUMNS: tuple[str, ...] = (
    "user_id", "cluster", "gender", "age_band", "region", "platform", "price_band", "typical_price",
    "engagement", "cohorts", "last_active",
)


@dataclass
class Frames:
    """The validated input frames of one run."""

    events: pd.DataFrame
    items: pd.DataFrame
    users: pd.DataFrame


@dataclass
class ClusteringReport:
    """What one run did, for the summary line and the benchmark."""

    version: str = ""
    previous_version: str | None = None
    now: pd.Timestamp | None = None
    n_users: int = 0
    n_clustered: int = 0
    k: int = 0
    k_rule: str = ""
    k_scores: dict[int, float] = field(default_factory=dict)
    silhouette: float | None = None
    sizes: list[int] = field(default_factory=list)
    vector_kind: str = ""
    device: str = "cpu"
    features_s: float = 0.0
    cluster_s: float = 0.0
    write_s: float = 0.0
    keys_deleted: int = 0

    @property
    def writes_per_s(self) -> float:
        return self.n_users / self.write_s if self.write_s > 0 else 0.0

    def summary(self) -> str:
        """Return the one-line account printed at the end of a run."""
        sil = f"{self.silhouette:.3f}" if self.silhouette is not None else "n/a"
        return (
            f"segments {self.version}: {self.n_users:,} users ({self.n_clustered:,} clustered on "
            f"{self.vector_kind}, {self.device}), k={self.k} silhouette={sil}, sizes={self.sizes}; "
            f"features {self.features_s:.1f}s, clusters {self.cluster_s:.1f}s, "
            f"write {self.write_s:.1f}s ({self.writes_per_s:,.0f} users/s); "
            f"replaced {self.previous_version or 'nothing'}, deleted {self.keys_deleted:,} old keys"
        )


def load_frames(data_dir: Path) -> Frames:
    """Return validated frames from ``data_dir/{events,items,users}.parquet`` (users optional).

    Raises NotFound naming the missing file and how to make one.
    """
    for name in ("events", "items"):
        if not (data_dir / f"{name}.parquet").exists():
            raise NotFound(
                f"{str(data_dir / f'{name}.parquet')!r} does not exist; generate data with `hotfeed data synth` "
                f"or pass --data DIR holding events.parquet, items.parquet and (optionally) users.parquet"
            )
    events, ev_report = read_events(data_dir / "events.parquet")
    items, it_report = read_items(data_dir / "items.parquet")
    reports = [ev_report, it_report]
    if (data_dir / "users.parquet").exists():
        users, us_report = read_users(data_dir / "users.parquet")
        reports.append(us_report)
    else:
        users = pd.DataFrame({"user_id": pd.Series(dtype="string")})
    for report in reports:
        _log.info(report.summary())
    return Frames(events, items, users)


def cluster_users(
    features: UserFeatures, settings: ClusteringSettings, *, device: torch.device
) -> tuple[np.ndarray, np.ndarray, KChoice, float | None]:
    """Return (cluster per vector row, centroids, how k was chosen, silhouette on a sample)."""
    x = features.vectors
    if len(x) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32), KChoice(0, "no user vectors"), None
    choice = choose_k(x, k_fixed=settings.k, k_max=settings.k_max,
                      silhouette_sample=settings.silhouette_sample, seed=settings.seed, device=device)
    fit = minibatch_kmeans(x, max(choice.k, 1), seed=settings.seed, device=device)
    sil = (silhouette_on_sample(x, fit.labels, sample=settings.silhouette_sample, seed=settings.seed, device=device)
           if choice.k > 1 else None)
    return fit.labels, fit.centroids, choice, sil


def summarise_clusters(segments: pd.DataFrame, affinity: pd.DataFrame, *, top_n: int = 5) -> dict[int, dict]:
    """Return {cluster: {size, share, top_categories, typical_price, price_band, top_region, top_platform}}.

    ``segments`` carries a ``cluster`` column (Int64, <NA> for unclustered users) and
    ``affinity`` is the long (row, category, weight) frame; both from the same run.
    """
    clustered = segments[segments["cluster"].notna()]
    if clustered.empty:
        return {}
    total = len(clustered)
    cluster_of_row = segments["cluster"].to_numpy(dtype=float, na_value=np.nan)
    aff = affinity.assign(cluster=cluster_of_row[affinity["row"].to_numpy()]).dropna(subset=["cluster"])
    cat_weight = aff.groupby(["cluster", "category"])["weight"].sum().reset_index()
    cat_weight = cat_weight.sort_values(["cluster", "weight"], ascending=[True, False], kind="stable")
    top_cats = cat_weight.groupby("cluster").head(top_n).groupby("cluster")["category"].agg(list)

    def mode(col: str) -> pd.Series:
        valid = clustered[clustered[col].notna()]
        counts = valid.groupby(["cluster", col]).size().reset_index(name="n")
        return counts.sort_values(["cluster", "n"], ascending=[True, False], kind="stable").drop_duplicates(
            "cluster").set_index("cluster")[col]

    sizes = clustered.groupby("cluster").size()
    price = clustered.groupby("cluster")["typical_price"].median()
    band, region, platform = mode("price_band"), mode("region"), mode("platform")
    out: dict[int, dict] = {}
    for k, size in sizes.items():
        out[int(k)] = {
            "size": int(size),
            "share": round(int(size) / total, 4),
            "top_categories": list(top_cats.get(k, [])),
            "typical_price": None if pd.isna(price.get(k)) else round(float(price[k]), 2),
            "price_band": None if pd.isna(band.get(k, pd.NA)) else str(band[k]),
            "top_region": None if pd.isna(region.get(k, pd.NA)) else str(region[k]),
            "top_platform": None if pd.isna(platform.get(k, pd.NA)) else str(platform[k]),
        }
    return out


def pick_cold_start_clusters(segments: pd.DataFrame) -> dict[str, int]:
    """Return {cohort id: cluster} for cold users: the most common cluster per region, per
    platform, and overall (``all``), among clustered users.
    """
    clustered = segments[segments["cluster"].notna()]
    if clustered.empty:
        return {}
    out: dict[str, int] = {"all": int(clustered["cluster"].value_counts().idxmax())}
    for kind in ("region", "platform"):
        vals = normalize_cohort_series(clustered[kind])
        frame = pd.DataFrame({"v": vals, "cluster": clustered["cluster"]}).dropna()
        counts = frame.groupby(["v", "cluster"]).size().reset_index(name="n")
        best = counts.sort_values(["v", "n"], ascending=[True, False], kind="stable").drop_duplicates("v")
        out.update({f"{kind}:{v}": int(c) for v, c in zip(best["v"], best["cluster"])})
    return out


def run_clustering(
    frames: Frames,
    store: SegmentWriter,
    settings: ClusteringSettings,
    *,
    now: pd.Timestamp | None = None,
    item_embeddings: ItemEmbeddings | None = None,
    keep_previous: bool = False,
    export_path: Path | None = None,
    progress: bool = True,
) -> ClusteringReport:
    """Return the report of one full run: features, clusters, write, publish, clean up.

    ``now`` defaults to the latest event time, so replayed logs are segmented as of their
    end; TTLs count from it. ``keep_previous`` keeps the replaced version (for rollback)
    instead of deleting it. ``export_path`` also writes the segments there as Parquet
    (after publishing, so the file never runs ahead of Redis). Raises StoreUnavailable when Redis is down; the half-written
    version is then never published and the next run deletes it.
    """
    if now is None:
        now = frames.events["ts"].max() if len(frames.events) else pd.Timestamp.now(tz="UTC")
    now = pd.Timestamp(now)
    now = now.tz_convert("UTC") if now.tzinfo else now.tz_localize("UTC")
    device = pick_device(settings.device, variable="HOTFEED_CLUSTERING_DEVICE")
    report = ClusteringReport(now=now, device=device.type)

    t0 = time.perf_counter()
    features = build_user_features(frames.events, frames.items, frames.users, settings=settings, now=now,
                                   item_embeddings=item_embeddings, device=device)
    report.features_s = time.perf_counter() - t0
    _log.info("features: %d users, %d with a %s vector (%.1fs)", len(features.segments), len(features.vectors),
              features.vector_kind, report.features_s)

    t0 = time.perf_counter()
    labels, centroids, choice, sil = cluster_users(features, settings, device=device)
    segments = features.segments
    cluster = np.full(len(segments), -1, dtype=np.int64)
    cluster[features.vector_rows] = labels
    segments["cluster"] = pd.array(np.where(cluster >= 0, cluster, 0), dtype="Int64")
    segments.loc[cluster < 0, "cluster"] = pd.NA
    summaries = summarise_clusters(segments, features.affinity)
    cold = pick_cold_start_clusters(segments)
    report.cluster_s = time.perf_counter() - t0
    report.n_users, report.n_clustered = len(segments), len(labels)
    report.k, report.k_rule, report.k_scores, report.silhouette = choice.k, choice.rule, choice.scores, sil
    report.sizes = np.bincount(labels, minlength=choice.k).tolist() if len(labels) else []
    report.vector_kind = features.vector_kind
    _log.info("clusters: k=%d by %s, silhouette %s (%.1fs)", choice.k, choice.rule,
              "n/a" if sil is None else f"{sil:.3f}", report.cluster_s)

    segments["cohorts"] = user_cohorts_joined(segments)
    segments["updated_at"] = f"{time.time():.3f}"
    idle_s = (now - segments["last_active"]).dt.total_seconds().to_numpy()
    ttl_s = np.maximum(settings.segment_ttl_s - idle_s, 1).astype(np.int64)

    t0 = time.perf_counter()
    version = store.start_version()
    report.version = version
    with progress_bar(total=len(segments), desc=f"write segments {version}", unit="user", disable=not progress,
              mininterval=0.5) as bar:
        store.write_user_segments(version, segments, ttl_s=ttl_s, progress=bar.update,
                                  batch_users=settings.write_batch_users)
    store.write_clusters(
        version,
        centroids=centroids,
        summaries=summaries,
        cold_clusters=cold,
        meta={
            "created_at": f"{time.time():.3f}",
            "now": now.isoformat(),
            "n_users": report.n_users,
            "n_clustered": report.n_clustered,
            "k": choice.k,
            "k_rule": choice.rule,
            "silhouette": "" if sil is None else f"{sil:.4f}",
            "sizes": json.dumps(report.sizes),
            "vector_kind": features.vector_kind,
            "dims": int(centroids.shape[1]) if centroids.ndim == 2 and len(centroids) else 0,
            "vector_labels": json.dumps(features.vector_labels),
        },
        ttl_s=settings.segment_ttl_s,
    )
    report.write_s = time.perf_counter() - t0
    report.previous_version = store.publish_version(version)
    keep = [version] + ([report.previous_version] if keep_previous and report.previous_version else [])
    report.keys_deleted = store.delete_versions_except(keep)
    if export_path is not None:
        export_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = export_path.with_suffix(".tmp.parquet")
        segments.loc[:, list(EXPORT_COLUMNS)].to_parquet(tmp, index=False)
        tmp.replace(export_path)  # readers see the old file or the new one, never half a file
    return report
