"""Per-user segment features from the documented frames (recommender/data_model.py).

All steps are vectorized over events (pandas group-bys, numpy, torch scatter-adds);
nothing loops over event rows. Users are numbered by one index (``user_index``) that
every step shares.

Rules, stated once:

- Affinity of a user for a category: sum over their events of
  ``event_weights[type] * 2 ** (-age_h / half_life_h)``; events older than the segment TTL
  or after ``now`` are ignored. ``top_categories`` are the highest few, best first.
- Typical price: median price of the items the user engaged with. Price band: where that
  falls among the item price quartiles: budget (< q25), mid (< q50), upper (< q75), premium.
- Engagement: users without events in the window are "new"; the rest are "casual" up to
  the median of total decayed weight, "regular" up to the 90th percentile, else "heavy".
- Last active: the latest of the last event and the signup date; users listed with
  neither count as active ``now``.
- Platform: the profile's platform, else the platform of most of the user's events.
- User vector: the mean of the item embeddings of the user's ``recent_events`` latest
  events when embeddings are given, else the category-affinity vector over the
  ``affinity_dims`` categories with the most weight overall plus their top levels
  (``_affinity_vectors``); both L2-normalised. Users
  without a vector get no behaviour cluster.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from recommender.decay import half_life_decay
from recommender.cohorts import age_band_series, normalize_cohort_series
from recommender.errors import InvalidRequest, NotFound
from recommender.settings import ClusteringSettings

__all__ = [
    "PRICE_BANDS",
    "ENGAGEMENT_LEVELS",
    "ItemEmbeddings",
    "UserFeatures",
    "load_item_embeddings",
    "build_user_features",
]

PRICE_BANDS: tuple[str, ...] = ("budget", "mid", "upper", "premium")
ENGAGEMENT_LEVELS: tuple[str, ...] = ("new", "casual", "regular", "heavy")


@dataclass(frozen=True)
class ItemEmbeddings:
    """Item vectors (n x d float32) with their item ids, row i belonging to ``item_ids[i]``."""

    item_ids: pd.Index
    vectors: np.ndarray

    def __post_init__(self) -> None:
        if self.vectors.ndim != 2 or len(self.item_ids) != len(self.vectors):
            raise InvalidRequest(
                f"item embeddings: {len(self.item_ids)} ids for a matrix of shape {self.vectors.shape!r}; "
                f"pass one row per id"
            )


@dataclass
class UserFeatures:
    """Everything the job needs per user, rows aligned with ``segments``.

    ``segments`` columns: user_id, gender, age_band, region, platform, top_categories (JSON
    list text or <NA>), price_band, typical_price, engagement, last_active, n_events.
    ``vectors`` holds one row per user in ``vector_rows`` (positions into ``segments``).
    ``affinity`` is the long (row, category, weight) frame used for cluster summaries.
    """

    segments: pd.DataFrame
    vectors: np.ndarray
    vector_rows: np.ndarray
    vector_kind: str
    vector_labels: list[str]
    affinity: pd.DataFrame


def load_item_embeddings(path: str | Path) -> ItemEmbeddings:
    """Return item embeddings from ``.npz`` (arrays ``item_ids`` and ``vectors`` or ``embeddings``)
    or ``.parquet`` (columns ``item_id`` and ``embedding``, a list per row).

    Raises NotFound for a missing file and InvalidRequest for another format.
    """
    p = Path(path)
    if not p.exists():
        raise NotFound(f"embeddings file {str(p)!r} does not exist; export item embeddings first or leave it out")
    if p.suffix == ".npz":
        with np.load(p, allow_pickle=False) as data:
            key = "vectors" if "vectors" in data else "embeddings"
            if "item_ids" not in data or key not in data:
                raise InvalidRequest(f"{str(p)!r} holds {list(data.keys())!r}; it needs 'item_ids' and 'vectors'")
            return ItemEmbeddings(pd.Index(data["item_ids"].astype(str)), data[key].astype(np.float32))
    if p.suffix == ".parquet":
        df = pd.read_parquet(p)
        if "item_id" not in df or "embedding" not in df:
            raise InvalidRequest(f"{str(p)!r} has columns {list(df.columns)!r}; it needs 'item_id' and 'embedding'")
        return ItemEmbeddings(pd.Index(df["item_id"].astype(str)), np.stack(df["embedding"].to_numpy()).astype(np.float32))
    raise InvalidRequest(f"embeddings file {str(p)!r}: unsupported suffix {p.suffix!r}; use .npz or .parquet")


def _events_in_window(events: pd.DataFrame, *, now: pd.Timestamp, window_s: float) -> pd.DataFrame:
    ev = events[events["user_id"].notna()]
    age_s = (now - ev["ts"]).dt.total_seconds()
    return ev[(age_s >= 0) & (age_s <= window_s)].assign(age_h=age_s / 3600.0)


def _user_index(users: pd.DataFrame, events: pd.DataFrame) -> pd.Index:
    ids = pd.concat([users["user_id"].astype("string"), events["user_id"].astype("string")], ignore_index=True)
    return pd.Index(ids.dropna().unique(), dtype="string")


def _group_first_ranks(sorted_groups: np.ndarray) -> np.ndarray:
    """Return each row's 0-based rank within its run of equal values (input sorted by group)."""
    n = len(sorted_groups)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.r_[True, sorted_groups[1:] != sorted_groups[:-1]]
    start_pos = np.maximum.accumulate(np.where(starts, np.arange(n), 0))
    return np.arange(n) - start_pos


def _top_categories_json(aff: pd.DataFrame, categories: pd.Index, n_users: int, top_n: int) -> pd.Series:
    """Return per user row a JSON list of the top ``top_n`` categories (best first), <NA> if none."""
    order = np.lexsort((-aff["weight"].to_numpy(), aff["row"].to_numpy()))
    rows = aff["row"].to_numpy()[order]
    cats = aff["cat"].to_numpy()[order]
    ranks = _group_first_ranks(rows)
    literals = np.array([json.dumps(c) for c in categories], dtype=object)
    out = pd.Series(pd.NA, index=range(n_users), dtype="string")
    for r in range(top_n):
        sel = ranks == r
        part = pd.Series(pd.NA, index=range(n_users), dtype="string")
        part.iloc[rows[sel]] = literals[cats[sel]]
        out = part if r == 0 else out + ("," + part).fillna("")
    return "[" + out + "]"


def _price_bands(typical: pd.Series, item_prices: pd.Series) -> pd.Series:
    q = item_prices.dropna().quantile([0.25, 0.5, 0.75]).to_numpy() if item_prices.notna().any() else np.zeros(3)
    edges = np.r_[-np.inf, np.maximum.accumulate(q), np.inf]
    idx = np.searchsorted(edges[1:-1], typical.to_numpy(dtype=float, na_value=np.nan), side="right")
    bands = np.asarray(PRICE_BANDS, dtype=object)[idx]
    return pd.Series(np.where(typical.notna(), bands, None), index=typical.index, dtype="string")


def _engagement(score: pd.Series, n_events: pd.Series) -> pd.Series:
    active = n_events > 0
    if not active.any():
        return pd.Series("new", index=score.index, dtype="string")
    p50, p90 = score[active].quantile([0.5, 0.9]).to_numpy()
    level = np.where(score <= p50, "casual", np.where(score <= p90, "regular", "heavy"))
    return pd.Series(np.where(active, level, "new"), index=score.index, dtype="string")


def _l2_normalised(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)


def _embedding_vectors(
    ev: pd.DataFrame, emb: ItemEmbeddings, n_users: int, recent: int, device: torch.device
) -> tuple[np.ndarray, np.ndarray]:
    """Return (L2-normalised mean embedding of each user's latest events, their user rows)."""
    pos = emb.item_ids.get_indexer(ev["item_id"].astype(str))
    keep = pos >= 0
    rows = ev["row"].to_numpy()[keep]
    age_h = ev["age_h"].to_numpy()[keep]
    pos = pos[keep]
    order = np.lexsort((age_h, rows))  # per user, latest (smallest age) first
    rows, pos = rows[order], pos[order]
    latest = _group_first_ranks(rows) < recent
    rows, pos = rows[latest], pos[latest]
    vecs = torch.as_tensor(emb.vectors, device=device)
    r = torch.as_tensor(rows, device=device)
    sums = torch.zeros((n_users, vecs.shape[1]), device=device).index_add_(0, r, vecs[torch.as_tensor(pos, device=device)])
    counts = torch.bincount(r, minlength=n_users)
    have = (counts > 0).nonzero().flatten()
    return _l2_normalised(sums[have] / counts[have].unsqueeze(1)).cpu().numpy(), have.cpu().numpy()


def _affinity_block(rows: np.ndarray, cols: np.ndarray, weights: np.ndarray, have: np.ndarray,
                    width: int) -> np.ndarray:
    """Return a dense (len(have) x width) matrix of summed weights, each row L2-normalised."""
    mat = np.zeros((len(have), width), dtype=np.float32)
    np.add.at(mat, (np.searchsorted(have, rows), cols), weights)
    return mat / np.maximum(np.linalg.norm(mat, axis=1, keepdims=True), 1e-12)


def _affinity_vectors(
    aff: pd.DataFrame, categories: pd.Index, dims: int
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Return (affinity vectors, their user rows, column labels).

    A vector is the L2-normalised affinity over the ``dims`` categories with the most weight,
    concatenated with the L2-normalised affinity over their top levels (the path before the
    first ``/``), then normalised again. The top-level half lets two users who like the same
    area but different leaves (``electronics/phones`` vs ``electronics/laptops``) land near
    each other, which leaf columns alone cannot see with a handful of events per user.
    """
    totals = aff.groupby("cat")["weight"].sum().sort_values(ascending=False, kind="stable")
    top = totals.index[:dims].to_numpy()
    col_of = np.full(len(categories), -1, dtype=np.int64)
    col_of[top] = np.arange(len(top))
    cols = col_of[aff["cat"].to_numpy()]
    sel = cols >= 0
    rows, weights = aff["row"].to_numpy()[sel], aff["weight"].to_numpy()[sel].astype(np.float32)
    have = np.unique(rows)
    leaf_names = [str(categories[c]) for c in top]
    top_level, top_labels = pd.factorize(pd.Series([n.split("/", 1)[0] for n in leaf_names], dtype="string"))
    leaf_part = _affinity_block(rows, cols[sel], weights, have, len(top))
    top_part = _affinity_block(rows, top_level[cols[sel]], weights, have, len(top_labels))
    mat = np.hstack([leaf_part, top_part])
    mat /= np.maximum(np.linalg.norm(mat, axis=1, keepdims=True), 1e-12)
    return mat, have, leaf_names + [f"{t}/*" for t in top_labels]


def build_user_features(
    events: pd.DataFrame,
    items: pd.DataFrame,
    users: pd.DataFrame,
    *,
    settings: ClusteringSettings,
    now: pd.Timestamp,
    item_embeddings: ItemEmbeddings | None = None,
    device: torch.device | None = None,
) -> UserFeatures:
    """Return the segment features of every user active within the segment TTL (rules above).

    ``events``, ``items``, ``users`` are validated frames (recommender/data_model.py); the
    users frame may be empty or lack optional columns. ``now`` is the reference time.
    """
    device = device or torch.device("cpu")
    now = pd.Timestamp(now).tz_convert("UTC") if pd.Timestamp(now).tzinfo else pd.Timestamp(now, tz="UTC")
    window_s = float(settings.segment_ttl_s)
    ev = _events_in_window(events, now=now, window_s=window_s)
    index = _user_index(users, ev)
    n = len(index)
    ev = ev.assign(row=index.get_indexer(ev["user_id"].astype("string")))

    weights = pd.Series(settings.event_weights, dtype="float64")
    w = ev["event_type"].astype("string").map(weights).astype("float64").fillna(0.0).to_numpy()
    ev = ev.assign(weight=w * half_life_decay(ev["age_h"].to_numpy(dtype=np.float64), settings.half_life_h))

    item_index = pd.Index(items["item_id"].astype("string"))
    item_pos = item_index.get_indexer(ev["item_id"].astype("string"))
    cat_codes, categories = pd.factorize(items["category"].astype("string"))
    known_item = item_pos >= 0
    ev_cat = np.where(known_item, cat_codes[np.maximum(item_pos, 0)] if len(cat_codes) else -1, -1)
    ev_price = np.where(known_item, items["price"].to_numpy(dtype=float, na_value=np.nan)[np.maximum(item_pos, 0)]
                        if len(items) else np.nan, np.nan)

    # Affinity: one row per (user, category) with the summed decayed weight.
    with_cat = ev_cat >= 0
    aff = (
        pd.DataFrame({"row": ev["row"].to_numpy()[with_cat], "cat": ev_cat[with_cat],
                      "weight": ev["weight"].to_numpy()[with_cat]})
        .groupby(["row", "cat"], sort=False, as_index=False)["weight"].sum()
    )
    aff = aff[aff["weight"] > 0].reset_index(drop=True)

    # Ages in hours rather than timestamps: tz-aware timestamps would box into objects here.
    per_user = pd.DataFrame({"row": ev["row"].to_numpy(), "weight": ev["weight"].to_numpy(),
                             "age_h": ev["age_h"].to_numpy(), "price": ev_price})
    grouped = per_user.groupby("row")
    rows = pd.RangeIndex(n)
    n_events = grouped.size().reindex(rows, fill_value=0)
    score = grouped["weight"].sum().reindex(rows, fill_value=0.0)
    last_event = now - pd.to_timedelta(grouped["age_h"].min().reindex(rows), unit="h")
    typical = grouped["price"].median().reindex(rows)

    prof = users.assign(row=index.get_indexer(users["user_id"].astype("string"))).set_index("row").reindex(rows)

    def profile(col: str) -> pd.Series:
        return prof[col].astype("string") if col in prof else pd.Series(pd.NA, index=rows, dtype="string")

    event_platform = pd.Series(pd.NA, index=rows, dtype="string")
    if "platform" in ev and ev["platform"].notna().any():
        pf = ev.loc[ev["platform"].notna(), ["row", "platform"]].astype({"platform": "string"})
        counts = pf.groupby(["row", "platform"]).size().reset_index(name="n")
        counts = counts.sort_values(["row", "n"], ascending=[True, False], kind="stable").drop_duplicates("row")
        event_platform.iloc[counts["row"].to_numpy()] = counts["platform"].to_numpy()

    signup = (pd.to_datetime(prof["signup_date"], utc=True) if "signup_date" in prof
              else pd.Series(pd.NaT, index=rows, dtype="datetime64[ns, UTC]"))
    last_active = pd.concat([pd.to_datetime(last_event, utc=True), signup.where(signup <= now)], axis=1).max(axis=1)
    last_active = last_active.fillna(now)

    birth = prof["birth_year"] if "birth_year" in prof else pd.Series(pd.NA, index=rows, dtype="Int64")
    segments = pd.DataFrame({
        "user_id": index.to_series(index=rows),
        "gender": profile("gender").where(profile("gender").isin(["m", "f"])),
        "age_band": age_band_series(birth, year=now.year),
        "region": normalize_cohort_series(profile("region")),
        "platform": normalize_cohort_series(profile("platform").fillna(event_platform)),
        "top_categories": _top_categories_json(aff, categories, n, settings.top_categories),
        "price_band": _price_bands(typical, items["price"] if "price" in items else pd.Series(dtype=float)),
        "typical_price": typical.round(2),
        "engagement": _engagement(score, n_events),
        "last_active": last_active,
        "n_events": n_events,
    })

    if item_embeddings is not None:
        vectors, vector_rows = _embedding_vectors(ev, item_embeddings, n, settings.recent_events, device)
        kind, labels = "item_embedding", []
    else:
        vectors, vector_rows, labels = _affinity_vectors(aff, categories, settings.affinity_dims)
        kind = "category_affinity"

    # Drop users idle longer than the TTL; keep vectors aligned with the surviving rows.
    idle_s = (now - segments["last_active"]).dt.total_seconds()
    alive = (idle_s <= window_s).to_numpy()
    new_pos = np.cumsum(alive) - 1
    keep_vec = alive[vector_rows] if len(vector_rows) else np.zeros(0, dtype=bool)
    aff = aff[alive[aff["row"].to_numpy()]].assign(row=lambda d: new_pos[d["row"].to_numpy()])
    aff["category"] = np.asarray(categories, dtype=object)[aff["cat"].to_numpy()]
    return UserFeatures(
        segments=segments[alive].reset_index(drop=True),
        vectors=vectors[keep_vec],
        vector_rows=new_pos[vector_rows[keep_vec]],
        vector_kind=kind,
        vector_labels=labels,
        affinity=aff.reset_index(drop=True),
    )
