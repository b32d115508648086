"""Cohort popularity of items: the rows that become the items' child documents.

For an item i, a cohort c and a reference time ``now``::

    decayed_weight(i, c) = sum over events e of i by viewers in c with now - lookback < ts_e <= now
                           of  weight[type_e] * 0.5 ** ((now - ts_e) / half_life)
    score(i, c)          = decayed_weight(i, c) / max over items j of decayed_weight(j, c)   in [0, 1]
    count_<w>(i, c)      = number of those events with now - w < ts_e <= now, w in 1 h, 24 h, 7 d

Events after ``now`` are ignored (they would weigh more than 1). An item gets a row in a
cohort only when at least one of its events in the lookback falls in that cohort. Every event
counts for ``all``; the other cohorts come from the viewer's user record (``cohorts.py``),
except that an event carrying a platform counts for ``platform:<p>`` when its user has no
platform on record (anonymous visitors included).

``decayed_weight`` is kept next to the normalized score so an incremental update can decay a
stored row to a later time (multiply by ``0.5 ** (dt / half_life)``) and add new events.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

import numpy as np
import pandas as pd

from recommender.decay import half_life_decay
from recommender.data_model import EVENT_TYPES
from recommender.errors import ConfigError
from indexer._time import epoch_ns, utc_timestamp
from recommender.cohorts import ALL_COHORT, normalize_cohort_series

__all__ = [
    "POPULARITY_COLUMNS",
    "COUNT_WINDOWS",
    "compute_cohort_popularity",
    "compute_popular_fallback",
]

POPULARITY_COLUMNS: tuple[str, ...] = (
    "item_id", "cohort", "score", "decayed_weight", "count_1h", "count_24h", "count_7d", "updated_at",
)
# Above this many (item x cohort) bins, aggregate by hashing instead of dense bincount (8 bytes a bin).
_DENSE_KEY_LIMIT = 50_000_000
COUNT_WINDOWS: dict[str, pd.Timedelta] = {
    "count_1h": pd.Timedelta(hours=1),
    "count_24h": pd.Timedelta(hours=24),
    "count_7d": pd.Timedelta(days=7),
}


def _type_weights(event_type: pd.Series, event_weights: Mapping[str, float]) -> np.ndarray:
    unknown = sorted(set(event_weights) - set(EVENT_TYPES))
    negative = {k: v for k, v in event_weights.items() if not (v >= 0)}
    if unknown or negative:
        raise ConfigError(
            f"event weights: unknown type(s) {unknown!r} or negative weight(s) {negative!r}; use types of "
            f"{list(EVENT_TYPES)!r} with weights >= 0 (HOTFEED_INDEXER_EVENT_WEIGHTS)"
        )
    weights = event_type.astype("string").map({k: float(v) for k, v in event_weights.items()})
    return weights.astype("float64").fillna(0.0).to_numpy()


def _factorize_text(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Return (int64 codes, -1 for missing, and the distinct values as an object array)."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    return codes.astype(np.int64), np.asarray(uniques.astype("string"), dtype=object)


def _codes_in(values: pd.Series, index: pd.Index) -> np.ndarray:
    """Return each value's position in ``index`` (-1 when absent), looking up distinct values only."""
    codes, uniques = _factorize_text(values)
    lookup = np.append(index.get_indexer(pd.Index(uniques, dtype="string")), -1)
    return lookup[codes]  # code -1 (missing) picks the appended -1


def _expand_to_cohorts(
    user_codes: np.ndarray, indptr: np.ndarray, cohort_codes: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Return (event position, cohort code) for every event x cohort-of-its-user pair.

    ``indptr``/``cohort_codes`` are a CSR table of user -> cohorts; user code -1 has none.
    """
    known = user_codes >= 0
    n_per_event = np.zeros(len(user_codes), dtype=np.int64)
    n_per_event[known] = indptr[user_codes[known] + 1] - indptr[user_codes[known]]
    event_pos = np.repeat(np.arange(len(user_codes)), n_per_event)
    # Offset of each pair inside its event's block, added to the user's first cohort slot.
    block_start = np.repeat(np.cumsum(n_per_event) - n_per_event, n_per_event)
    within = np.arange(len(event_pos)) - block_start
    slots = indptr[user_codes[event_pos]] + within
    return event_pos, cohort_codes[slots]


def compute_cohort_popularity(
    events: pd.DataFrame,
    user_cohorts: pd.DataFrame,
    *,
    now: datetime | pd.Timestamp | str,
    event_weights: Mapping[str, float],
    half_life_h: float,
    lookback_days: float | None = None,
) -> pd.DataFrame:
    """Return one row per (item, cohort) with signal: item_id, cohort, score, decayed_weight, counts, updated_at.

    ``events`` is the documented events frame (ts, user_id, item_id, event_type, platform);
    ``user_cohorts`` the long (user_id, cohort) frame of ``cohorts.assign_user_cohorts``.
    The formulas are in the module docstring. Rows are ordered by cohort, then score
    descending, then item_id. Raises ConfigError for a non-positive half-life or bad weights.
    """
    if not half_life_h > 0:
        raise ConfigError(f"popularity half-life {half_life_h!r} h must be > 0 (HOTFEED_INDEXER_POPULARITY_HALF_LIFE_H)")
    now_ts = utc_timestamp(now)
    now_ns = now_ts.as_unit("ns").value
    ts_ns = epoch_ns(events["ts"])
    keep = ts_ns <= now_ns
    if lookback_days is not None:
        keep &= ts_ns > now_ns - int(lookback_days * 86_400e9)
    ev = events.loc[keep]
    age_ns = (now_ns - ts_ns[keep]).astype(np.float64)
    weight = _type_weights(ev["event_type"], event_weights) * half_life_decay(age_ns, half_life_h * 3600e9)
    in_window = {name: age_ns < span.value for name, span in COUNT_WINDOWS.items()}

    item_codes, item_uniques = _factorize_text(ev["item_id"])
    uc = user_cohorts.dropna(subset=["user_id", "cohort"])
    uc_user, user_uniques = _factorize_text(uc["user_id"])
    uc_cohort, cohort_names = _factorize_text(uc["cohort"])
    # Code 0 is "all"; user cohorts follow.
    cohort_names = np.concatenate([[ALL_COHORT], cohort_names]).astype(object)
    uc_cohort = uc_cohort + 1
    # CSR table user -> cohort codes.
    order = np.argsort(uc_user, kind="stable")
    indptr = np.zeros(len(user_uniques) + 1, dtype=np.int64)
    np.cumsum(np.bincount(uc_user, minlength=len(user_uniques)), out=indptr[1:])
    user_codes = (
        _codes_in(ev["user_id"], pd.Index(user_uniques)) if "user_id" in ev else np.full(len(ev), -1, dtype=np.int64)
    )

    event_pos, cohort_of_pair = _expand_to_cohorts(user_codes, indptr, uc_cohort[order])
    pos_parts = [np.arange(len(ev)), event_pos]
    cohort_parts = [np.zeros(len(ev), dtype=np.int64), cohort_of_pair.astype(np.int64)]

    if "platform" in ev:
        is_platform_cohort = np.char.startswith(cohort_names.astype(str), "platform:")
        user_has_platform = np.zeros(len(user_uniques) + 1, dtype=bool)  # last slot: unknown user (-1)
        user_has_platform[uc_user[is_platform_cohort[uc_cohort]]] = True
        # Normalize the few distinct platform values, not every event's text.
        platform_codes, platform_values = _factorize_text(ev["platform"])
        labels = ("platform:" + normalize_cohort_series(pd.Series(platform_values, dtype="string"))).to_numpy(
            dtype=object, na_value=None
        )
        use = (platform_codes >= 0) & ~user_has_platform[user_codes]
        use[use] = pd.notna(labels[platform_codes[use]])
        if use.any():
            known = pd.Index(cohort_names)
            extra = [lab for lab in pd.unique(labels[platform_codes[use]]) if lab not in known]
            cohort_names = np.concatenate([cohort_names, np.array(extra, dtype=object)])
            label_code = pd.Index(cohort_names).get_indexer(pd.Series(labels).fillna(""))
            pos_parts.append(np.flatnonzero(use))
            cohort_parts.append(label_code[platform_codes[use]].astype(np.int64))

    pos = np.concatenate(pos_parts)
    cohort = np.concatenate(cohort_parts)
    n_cohorts = len(cohort_names)
    key = item_codes[pos].astype(np.int64) * n_cohorts + cohort
    if len(item_uniques) * n_cohorts <= _DENSE_KEY_LIMIT:
        # Dense bins are faster than hashing tens of millions of keys.
        bins, n_bins = key, len(item_uniques) * n_cohorts
        keys = np.flatnonzero(np.bincount(bins, minlength=n_bins))
    else:
        bins, keys = pd.factorize(key, sort=True)
        n_bins = len(keys)
    dense = n_bins != len(keys)

    def group_sum(w: np.ndarray) -> np.ndarray:
        sums = np.bincount(bins, weights=w, minlength=n_bins)
        return sums[keys] if dense else sums

    decayed = group_sum(weight[pos])
    counts = {name: np.rint(group_sum(mask[pos].astype(np.float64))).astype(np.int64) for name, mask in in_window.items()}

    cohort_code = keys % n_cohorts
    item_code = keys // n_cohorts
    cohort_max = np.zeros(n_cohorts)
    np.maximum.at(cohort_max, cohort_code, decayed)
    denom = cohort_max[cohort_code]
    score = np.divide(decayed, denom, out=np.zeros_like(decayed), where=denom > 0)

    # Order by cohort name, score descending, item id: ranks of the names turn it into a numeric sort.
    cohort_rank = np.argsort(np.argsort(cohort_names.astype(str), kind="stable"), kind="stable")
    item_rank = np.argsort(np.argsort(np.asarray(item_uniques, dtype=str), kind="stable"), kind="stable")
    final = np.lexsort((item_rank[item_code], -score, cohort_rank[cohort_code]))
    out = pd.DataFrame(
        {
            "item_id": pd.array(np.asarray(item_uniques, dtype=object)[item_code[final]], dtype="string"),
            "cohort": pd.array(cohort_names[cohort_code[final]], dtype="string"),
            "score": score[final],
            "decayed_weight": decayed[final],
            **{name: c[final] for name, c in counts.items()},
        }
    )
    out["updated_at"] = now_ts
    return out[list(POPULARITY_COLUMNS)]


def compute_popular_fallback(
    popularity: pd.DataFrame,
    *,
    items: pd.DataFrame | None = None,
    size: int = 100,
) -> dict[str, list[str]]:
    """Return the top ``size`` item ids for "global" and for each "region:<r>", best first.

    "global" ranks by the ``all`` cohort, a region by its ``region:<r>`` cohort. When ``items``
    is given, only items whose status is "active" qualify. A region with fewer than ``size``
    items of its own is topped up with global items it does not already hold, so the
    fallback feed is always full when the catalog allows.
    """
    rows = popularity[["item_id", "cohort", "score"]]
    if items is not None:
        active = set(items.loc[items["status"].astype("string") == "active", "item_id"].astype("string"))
        rows = rows.loc[rows["item_id"].astype("string").isin(active)]
    cohort = rows["cohort"].astype("string")
    scoped = rows.loc[(cohort == ALL_COHORT) | cohort.str.startswith("region:")]
    scoped = scoped.sort_values(["cohort", "score", "item_id"], ascending=[True, False, True], kind="stable")
    top = scoped.groupby("cohort", sort=True).head(size)
    lists = {str(c): group["item_id"].astype(str).tolist() for c, group in top.groupby("cohort", sort=True)}
    global_list = lists.pop(ALL_COHORT, [])
    out: dict[str, list[str]] = {"global": global_list}
    for scope, own in lists.items():
        seen = set(own)
        out[scope] = own + [i for i in global_list if i not in seen][: max(0, size - len(own))]
    return out
