"""Cohort ids: the one definition shared by the indexer (popularity per item x cohort),
the clustering job (which cohorts a user belongs to) and the query (which cohorts to score).

A cohort id is a short text key, ``<kind>:<value>`` except for ``all``:

    all                 every viewer, the last-resort cohort
    g:<gender>          g:m, g:f
    age:<band>          age:25-34 (bands in AGE_BANDS)
    ga:<gender>:<band>  ga:m:25-34
    region:<region>     region:seoul
    platform:<p>        platform:ios
    cluster:<k>         cluster:7 (behaviour cluster from the clustering job)

Free-text values (region, platform) are normalised by ``normalize_cohort_value``:
lower case, trimmed, and every run of characters other than letters, digits (any script),
``.`` and ``-`` becomes ``_``, so ``"Seoul Metro"`` and ``" seoul metro "`` give the same
``region:seoul_metro`` and ``"서울"`` stays ``region:서울``. Cohort ids never hold ``,`` or ``:``
inside a value.

``user_cohorts`` orders a user's cohorts from the most specific to ``all``; the query
builder may weight them in that order. Scalar helpers serve the request path; the
``*_series`` helpers are vectorized for frames of millions of users or events.
"""

from __future__ import annotations

import re
import numpy as np
import pandas as pd

from recommender.errors import InvalidRequest

__all__ = [
    "AGE_BANDS",
    "GENDERS",
    "COHORT_KINDS",
    "ALL_COHORT",
    "normalize_cohort_value",
    "normalize_cohort_series",
    "age_band",
    "age_band_series",
    "gender_cohort",
    "age_cohort",
    "gender_age_cohort",
    "region_cohort",
    "platform_cohort",
    "cluster_cohort",
    "user_cohorts",
    "user_cohorts_frame",
    "user_cohorts_joined",
    "parse_cohort",
    "is_valid_cohort",
]

# Upper bounds are exclusive ages: "<18" is age < 18, "18-24" is 18 <= age < 25, ...
AGE_BANDS: tuple[str, ...] = ("<18", "18-24", "25-34", "35-44", "45-54", "55+")
_AGE_EDGES: tuple[int, ...] = (18, 25, 35, 45, 55)
GENDERS: tuple[str, ...] = ("m", "f")
ALL_COHORT = "all"
# Order of user_cohorts(): most specific first, "all" last.
COHORT_KINDS: tuple[str, ...] = ("ga", "g", "age", "cluster", "region", "platform", "all")

_UNSAFE = re.compile(r"[^\w.\-]+")
_COHORT_RE = re.compile(
    r"^(?:all"
    r"|g:(?:m|f)"
    r"|age:(?:<18|18-24|25-34|35-44|45-54|55\+)"
    r"|ga:(?:m|f):(?:<18|18-24|25-34|35-44|45-54|55\+)"
    r"|region:[\w.\-]+"
    r"|platform:[\w.\-]+"
    r"|cluster:\d+)$"
)


def normalize_cohort_value(value: object) -> str | None:
    """Return ``value`` as a cohort-safe token, or None when it is missing or blank."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    token = _UNSAFE.sub("_", str(value).strip().lower()).strip("_")
    return token or None


def normalize_cohort_series(values: pd.Series) -> pd.Series:
    """Return ``normalize_cohort_value`` of every row, vectorized (string dtype, <NA> for blanks)."""
    # Regions and platforms repeat a lot: normalise each distinct value once, then spread.
    codes, uniques = pd.factorize(values.astype("string"))
    if len(uniques) == 0:
        return pd.Series(pd.NA, index=values.index, dtype="string")
    text = pd.Series(uniques, dtype="string").str.strip().str.lower().str.replace(_UNSAFE, "_", regex=True).str.strip("_")
    text = text.mask(text == "", pd.NA)
    out = text.take(np.maximum(codes, 0)).set_axis(values.index)
    return out.mask(codes < 0, pd.NA).astype("string")


def age_band(birth_year: int | None, *, year: int) -> str | None:
    """Return the AGE_BANDS label for someone born in ``birth_year`` as of ``year``; None if unknown.

    Age is ``year - birth_year`` (birthdays are not tracked); ages below 0 or above 120 are
    treated as unknown rather than guessed.
    """
    if birth_year is None or pd.isna(birth_year):
        return None
    age = year - int(birth_year)
    if age < 0 or age > 120:
        return None
    return AGE_BANDS[int(np.searchsorted(_AGE_EDGES, age, side="right"))]


def age_band_series(birth_year: pd.Series, *, year: int) -> pd.Series:
    """Return the AGE_BANDS label per row (string dtype, <NA> where unknown or implausible)."""
    age = year - pd.to_numeric(birth_year, errors="coerce").astype("float64")
    idx = np.searchsorted(np.asarray(_AGE_EDGES, dtype="float64"), age.to_numpy(), side="right")
    labels = np.asarray(AGE_BANDS, dtype=object)[np.clip(idx, 0, len(AGE_BANDS) - 1)]
    valid = age.notna().to_numpy() & (age.to_numpy() >= 0) & (age.to_numpy() <= 120)
    return pd.Series(np.where(valid, labels, None), index=birth_year.index, dtype="string")


def _check_gender(gender: str) -> str:
    if gender not in GENDERS:
        raise InvalidRequest(f"gender {gender!r} is not one of {list(GENDERS)!r}; leave it empty when unknown")
    return gender


def _check_band(band: str) -> str:
    if band not in AGE_BANDS:
        raise InvalidRequest(f"age band {band!r} is not one of {list(AGE_BANDS)!r}")
    return band


def gender_cohort(gender: str) -> str:
    """Return ``g:<gender>``; raises InvalidRequest for a gender outside GENDERS."""
    return f"g:{_check_gender(gender)}"


def age_cohort(band: str) -> str:
    """Return ``age:<band>``; raises InvalidRequest for a band outside AGE_BANDS."""
    return f"age:{_check_band(band)}"


def gender_age_cohort(gender: str, band: str) -> str:
    """Return ``ga:<gender>:<band>``; raises InvalidRequest for an unknown gender or band."""
    return f"ga:{_check_gender(gender)}:{_check_band(band)}"


def region_cohort(region: str) -> str:
    """Return ``region:<normalised region>``; raises InvalidRequest when the region is blank."""
    token = normalize_cohort_value(region)
    if token is None:
        raise InvalidRequest(f"region {region!r} is blank; pass a region name or leave the cohort out")
    return f"region:{token}"


def platform_cohort(platform: str) -> str:
    """Return ``platform:<normalised platform>``; raises InvalidRequest when the platform is blank."""
    token = normalize_cohort_value(platform)
    if token is None:
        raise InvalidRequest(f"platform {platform!r} is blank; pass e.g. 'ios' or leave the cohort out")
    return f"platform:{token}"


def cluster_cohort(cluster: int) -> str:
    """Return ``cluster:<k>``; raises InvalidRequest for a negative cluster id."""
    if int(cluster) < 0:
        raise InvalidRequest(f"cluster id {cluster!r} is negative; cluster ids are 0..k-1")
    return f"cluster:{int(cluster)}"


def user_cohorts(
    *,
    gender: str | None = None,
    age_band: str | None = None,
    region: str | None = None,
    platform: str | None = None,
    cluster: int | None = None,
) -> list[str]:
    """Return the cohorts of one viewer, most specific first and always ending with ``all``.

    Missing attributes (None or blank) just leave their cohorts out, so an anonymous
    viewer with nothing known gets ``["all"]``. Order follows COHORT_KINDS.
    """
    out: list[str] = []
    # NaN / <NA> from frames count as unknown, like None and "".
    gender = gender if isinstance(gender, str) and gender else None
    age_band = age_band if isinstance(age_band, str) and age_band else None
    if gender and age_band:
        out.append(gender_age_cohort(gender, age_band))
    if gender:
        out.append(gender_cohort(gender))
    if age_band:
        out.append(age_cohort(age_band))
    if cluster is not None and not pd.isna(cluster):
        out.append(cluster_cohort(int(cluster)))
    if normalize_cohort_value(region):
        out.append(region_cohort(region))  # type: ignore[arg-type]
    if normalize_cohort_value(platform):
        out.append(platform_cohort(platform))  # type: ignore[arg-type]
    out.append(ALL_COHORT)
    return out


def _cohort_parts(users: pd.DataFrame) -> list[pd.Series]:
    """Return one string series per cohort kind in COHORT_KINDS order (<NA> where absent)."""

    def col(name: str) -> pd.Series:
        if name not in users:
            return pd.Series(pd.NA, index=users.index, dtype="string")
        return users[name].astype("string")

    gender = col("gender").where(col("gender").isin(GENDERS))
    band = col("age_band").where(col("age_band").isin(AGE_BANDS))
    cluster = (
        pd.to_numeric(users["cluster"], errors="coerce").astype("Int64") if "cluster" in users
        else pd.Series(pd.NA, index=users.index, dtype="Int64")
    )
    cluster = cluster.where(cluster >= 0)
    return [
        ("ga:" + gender + ":" + band).astype("string"),
        ("g:" + gender).astype("string"),
        ("age:" + band).astype("string"),
        ("cluster:" + cluster.astype("string")).astype("string"),
        ("region:" + normalize_cohort_series(col("region"))).astype("string"),
        ("platform:" + normalize_cohort_series(col("platform"))).astype("string"),
        pd.Series(ALL_COHORT, index=users.index, dtype="string"),
    ]


def user_cohorts_frame(users: pd.DataFrame, *, include_all: bool = True) -> pd.DataFrame:
    """Return a long frame (user_id, cohort): one row per user and cohort, vectorized.

    ``users`` has ``user_id`` and any of ``gender`` (m/f), ``age_band`` (AGE_BANDS),
    ``region``, ``platform``, ``cluster`` (int); absent columns and missing values simply
    give no cohort of that kind. Rows come grouped by kind in COHORT_KINDS order, so a
    stable sort by user_id yields each user's cohorts most specific first. Genders and
    bands outside the known sets are left out rather than invented.
    """
    uid = users["user_id"].astype("string")
    parts = _cohort_parts(users)
    if not include_all:
        parts = parts[:-1]
    long = pd.concat([pd.DataFrame({"user_id": uid, "cohort": p}) for p in parts], ignore_index=True)
    return long[long["cohort"].notna() & long["user_id"].notna()].reset_index(drop=True)


def user_cohorts_joined(users: pd.DataFrame, *, sep: str = ",") -> pd.Series:
    """Return each user's cohorts as one ``sep``-joined string, the order of ``user_cohorts``.

    Same input as ``user_cohorts_frame``; index follows ``users``. Every row ends with
    ``all``. Cohort ids never contain ``,``, so the default separator is safe to split on.
    """
    out = pd.Series("", index=users.index, dtype="string")
    for part in _cohort_parts(users)[:-1]:
        out = out + (part + sep).fillna("")
    return out + ALL_COHORT


def parse_cohort(cohort: str) -> tuple[str, str]:
    """Return (kind, value) of a cohort id, e.g. ("ga", "m:25-34"); ("all", "") for ``all``.

    Raises InvalidRequest naming the id when it is not a well-formed cohort id.
    """
    if not is_valid_cohort(cohort):
        raise InvalidRequest(
            f"cohort {cohort!r} is not a cohort id; use one of all, g:m, age:25-34, ga:m:25-34, "
            f"region:<r>, platform:<p>, cluster:<k> (see recommender/cohorts.py)"
        )
    if cohort == ALL_COHORT:
        return ALL_COHORT, ""
    kind, _, value = cohort.partition(":")
    return kind, value


def is_valid_cohort(cohort: object) -> bool:
    """Return True when ``cohort`` is a well-formed cohort id (see the module docstring)."""
    # \w admits upper case; normalised values never have it.
    return isinstance(cohort, str) and cohort == cohort.lower() and _COHORT_RE.match(cohort) is not None

