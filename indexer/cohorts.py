"""Viewer cohorts of users, for cohort popularity: the shared ids of ``recommender.cohorts`` plus combinations.

The ids themselves (``all``, ``g:<m|f>``, ``age:<band>``, ``ga:<g>:<band>``, ``region:<r>``,
``platform:<p>``, ``cluster:<k>``) and the age bands (<18, 18-24, 25-34, 35-44, 45-54, 55+)
are defined once in ``recommender/cohorts.py``; this module maps the users frame onto them:
age band from ``birth_year`` as of the year of ``now`` (passed in, never read from the
clock), the behaviour cluster from a user -> cluster mapping the clustering job provides.

Combined cohorts, where configured (``HOTFEED_INDEXER_COMBINED_COHORTS``), cross two axes of
``COMBINABLE_AXES`` and read ``<a>+<b>:<value a>:<value b>``, e.g. ``region+age:north:25-34``.
A user with a missing attribute is in none of the cohorts that need it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

import pandas as pd

from recommender.cohorts import AGE_BANDS, ALL_COHORT, age_band_series, normalize_cohort_series, user_cohorts_frame
from recommender.errors import ConfigError
from indexer._time import utc_timestamp

__all__ = [
    "ALL_COHORT",
    "AGE_BANDS",
    "COMBINABLE_AXES",
    "parse_combined_cohorts",
    "combined_cohort_id",
    "assign_user_cohorts",
]

COMBINABLE_AXES: tuple[str, ...] = ("g", "age", "region", "platform")


def parse_combined_cohorts(specs: Sequence[str]) -> list[tuple[str, str]]:
    """Return each "<axis>+<axis>" spec as a pair of axis names.

    Raises ConfigError naming the bad spec and the allowed axes.
    """
    pairs: list[tuple[str, str]] = []
    for spec in specs:
        parts = [p.strip() for p in str(spec).split("+")]
        if len(parts) != 2 or any(p not in COMBINABLE_AXES for p in parts) or parts[0] == parts[1]:
            raise ConfigError(
                f"combined cohort {spec!r} is not '<axis>+<axis>' with two different axes of "
                f"{list(COMBINABLE_AXES)!r}; fix HOTFEED_INDEXER_COMBINED_COHORTS (e.g. '[\"region+age\"]')"
            )
        pairs.append((parts[0], parts[1]))
    return pairs


def combined_cohort_id(axes: tuple[str, str], values: tuple[str, str]) -> str:
    """Return the id of a combined cohort, e.g. ``region+age:north:25-34`` for (region, age), (north, 25-34)."""
    return f"{axes[0]}+{axes[1]}:{values[0]}:{values[1]}"


def _user_axes(users: pd.DataFrame, *, year: int) -> pd.DataFrame:
    """Return per user the normalized axis values the shared cohort builder expects (<NA> if unknown)."""
    idx = users.index
    empty = pd.Series(pd.NA, index=idx, dtype="string")
    gender = normalize_cohort_series(users["gender"]) if "gender" in users else empty
    return pd.DataFrame(
        {
            "user_id": users["user_id"].astype("string"),
            "gender": gender,
            "age_band": age_band_series(users["birth_year"], year=year) if "birth_year" in users else empty,
            "region": normalize_cohort_series(users["region"]) if "region" in users else empty,
            "platform": normalize_cohort_series(users["platform"]) if "platform" in users else empty,
        },
        index=idx,
    )


def assign_user_cohorts(
    users: pd.DataFrame,
    *,
    now: datetime | pd.Timestamp | str,
    clusters: Mapping[str, int] | pd.Series | None = None,
    combined: Sequence[str] = (),
) -> pd.DataFrame:
    """Return the long frame (user_id, cohort) of each user's cohorts, ``all`` left out.

    ``users`` is the documented users frame (missing optional columns count as unknown);
    ``clusters`` maps user_id to a behaviour cluster id (int >= 0); ``combined`` holds
    "<axis>+<axis>" specs (see ``parse_combined_cohorts``). Each user's rows come most
    specific first, in the order of ``recommender.cohorts.COHORT_KINDS``, then combinations.
    Raises ConfigError for a bad combined spec.
    """
    pairs = parse_combined_cohorts(combined)
    axes = _user_axes(users, year=utc_timestamp(now).year)
    if clusters is not None:
        mapping = clusters if isinstance(clusters, pd.Series) else pd.Series(dict(clusters), dtype="object")
        mapping = pd.Series(pd.to_numeric(mapping, errors="coerce").to_numpy(), index=mapping.index.astype("string"))
        axes["cluster"] = axes["user_id"].map(mapping).astype("Int64")
    frames = [user_cohorts_frame(axes, include_all=False)]
    names = {"g": "gender", "age": "age_band", "region": "region", "platform": "platform"}
    for a, b in pairs:
        gender_ok = axes["gender"].isin(["m", "f"])
        va, vb = (axes[names[x]].where(gender_ok) if x == "g" else axes[names[x]] for x in (a, b))
        cohort = (f"{a}+{b}:" + va + ":" + vb).astype("string")
        frames.append(pd.DataFrame({"user_id": axes["user_id"], "cohort": cohort}).dropna())
    long = pd.concat(frames, ignore_index=True).drop_duplicates()
    return long.sort_values("user_id", kind="stable").reset_index(drop=True)
