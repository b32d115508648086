"""User segments as values: what a viewer's segments are, and how stored and declared ones merge.

No storage here: ``recommender/stores/segments.py`` reads and writes these in Redis.

Defaults (``merge_user_segments``, behind ``SegmentReader.segments_for``), in order of precedence:

1. Declared preferences (gender, age band, liked and disliked categories) beat inferred ones.
2. Inferred segments from the published version.
3. The request's region and platform fill in what is still unknown; an anonymous or
   unknown user thus gets ``["region:<r>", "platform:<p>", "all"]``, or just ``["all"]``.
4. A user without a behaviour cluster gets a cold-start cluster (for its centroid as the
   kNN query vector): the one of its stored region, then stored platform, then the
   request's region, then platform, then ``all``; cold-start clusters never enter the
   cohort list.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from recommender.cohorts import AGE_BANDS, ALL_COHORT, GENDERS, normalize_cohort_value, user_cohorts
from recommender.errors import InvalidRequest

__all__ = [
    "USER_SEGMENT_FIELDS",
    "ClusterSource",
    "DeclaredPreferences",
    "UserSegments",
    "ViewerRecord",
    "merge_user_segments",
    "encode_centroid",
    "decode_centroid",
]

USER_SEGMENT_FIELDS: tuple[str, ...] = (
    "gender", "age_band", "region", "platform", "cluster", "top_categories", "price_band",
    "typical_price", "engagement", "cohorts", "version", "updated_at",
)
ClusterSource = Literal["user", "cold_start", "none"]
_MAX_CATEGORIES = 200
_MAX_CATEGORY_LENGTH = 128


def _clean_categories(values: Sequence[str] | None, *, what: str) -> tuple[str, ...]:
    if values is None:
        return ()
    if isinstance(values, str):
        raise InvalidRequest(f"{what} must be a list of category paths, got the string {values!r}; wrap it in a list")
    out = tuple(dict.fromkeys(v.strip() for v in values if isinstance(v, str) and v.strip()))
    if len(out) > _MAX_CATEGORIES:
        raise InvalidRequest(f"{what} has {len(out)} categories; at most {_MAX_CATEGORIES} are kept per user")
    long = [v for v in out if len(v) > _MAX_CATEGORY_LENGTH]
    if long:
        raise InvalidRequest(f"{what} holds {long[0][:40]!r}...; a category path is at most {_MAX_CATEGORY_LENGTH} characters")
    return out


@dataclass(frozen=True, slots=True)
class DeclaredPreferences:
    """What a user told us about themselves; it beats anything the clustering job inferred.

    Raises InvalidRequest for a gender outside GENDERS or an age band outside AGE_BANDS.
    """

    gender: str | None = None
    age_band: str | None = None
    liked_categories: tuple[str, ...] = ()
    disliked_categories: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        gender = self.gender or None
        if gender is not None and gender not in GENDERS:
            raise InvalidRequest(f"declared gender {gender!r} is not one of {list(GENDERS)!r}; leave it empty instead")
        band = self.age_band or None
        if band is not None and band not in AGE_BANDS:
            raise InvalidRequest(f"declared age_band {band!r} is not one of {list(AGE_BANDS)!r}")
        liked = _clean_categories(self.liked_categories, what="liked_categories")
        disliked = _clean_categories(self.disliked_categories, what="disliked_categories")
        both = sorted(set(liked) & set(disliked))
        if both:
            raise InvalidRequest(f"categories {both!r} are both liked and disliked; keep each in one list")
        object.__setattr__(self, "gender", gender)
        object.__setattr__(self, "age_band", band)
        object.__setattr__(self, "liked_categories", liked)
        object.__setattr__(self, "disliked_categories", disliked)

    def to_hash(self) -> dict[str, str]:
        """Return the Redis hash fields (JSON lists for the categories)."""
        out = {
            "liked_categories": json.dumps(list(self.liked_categories)),
            "disliked_categories": json.dumps(list(self.disliked_categories)),
        }
        if self.gender:
            out["gender"] = self.gender
        if self.age_band:
            out["age_band"] = self.age_band
        return out

    @classmethod
    def from_hash(cls, fields: Mapping[str, str]) -> "DeclaredPreferences":
        """Return preferences from a Redis hash as written by ``to_hash``."""
        return cls(
            gender=fields.get("gender") or None,
            age_band=fields.get("age_band") or None,
            liked_categories=tuple(json.loads(fields.get("liked_categories") or "[]")),
            disliked_categories=tuple(json.loads(fields.get("disliked_categories") or "[]")),
        )


@dataclass(frozen=True, slots=True)
class UserSegments:
    """The segments of one viewer, ready for the query: cohorts, filters and cluster.

    ``cohorts`` run from the most specific to ``all``. ``disliked_categories`` are meant as
    must-not filters. ``cluster`` is the user's behaviour cluster, or a cold-start cluster
    when ``cluster_source == "cold_start"`` (use its centroid, not a cohort).
    """

    user_id: str | None
    cohorts: tuple[str, ...] = (ALL_COHORT,)
    known: bool = False
    declared: bool = False
    gender: str | None = None
    age_band: str | None = None
    region: str | None = None
    platform: str | None = None
    cluster: int | None = None
    cluster_source: ClusterSource = "none"
    top_categories: tuple[str, ...] = ()
    liked_categories: tuple[str, ...] = ()
    disliked_categories: tuple[str, ...] = ()
    price_band: str | None = None
    typical_price: float | None = None
    engagement: str | None = None
    version: str | None = None
    updated_at: float | None = None
    # When the declared preferences were last set (unix seconds); None when there are none.
    declared_at: float | None = None


@dataclass(frozen=True, slots=True)
class ViewerRecord:
    """What one feed request reads from Redis: segments, recent session items, cluster centroid.

    ``session`` is oldest first. ``centroid`` belongs to ``segments.cluster`` (None when the
    viewer has no cluster or the run wrote no centroid).
    """

    segments: UserSegments
    session: tuple[str, ...] = ()
    centroid: np.ndarray | None = None


def merge_user_segments(
    user_id: str | None,
    seg: dict[str, str],
    pref: dict[str, str],
    *,
    version: str | None,
    region: str | None,
    platform: str | None,
    cold: int | None,
) -> UserSegments:
    """Return one viewer's segments from the stored hashes and the request context.

    ``seg`` is the user's segment hash of ``version`` (``USER_SEGMENT_FIELDS``; empty for an
    anonymous or unknown user), ``pref`` their declared-preference hash (as written by
    ``DeclaredPreferences.to_hash``; empty when none). ``region`` and ``platform`` come from
    the request, already normalized. ``cold`` is the cold-start cluster the store picked
    for rule 4 of the module docstring (None when there is none). Applies rules 1 to 4:
    declared beats inferred, the stored cohort list is reused only when nothing overrode or
    filled it in, disliked categories drop out of the inferred top categories, and ``cold``
    is used only when the user has no behaviour cluster. Raises InvalidRequest when ``pref``
    holds an invalid declaration.
    """
    declared = DeclaredPreferences.from_hash(pref) if pref else None
    known = bool(seg)
    gender = (declared.gender if declared else None) or seg.get("gender")
    age_band = (declared.age_band if declared else None) or seg.get("age_band")
    user_region = seg.get("region") or region
    user_platform = seg.get("platform") or platform
    cluster = int(seg["cluster"]) if seg.get("cluster") else None
    overridden = declared is not None and (
        (declared.gender and declared.gender != seg.get("gender"))
        or (declared.age_band and declared.age_band != seg.get("age_band"))
    )
    filled = (not seg.get("region") and region) or (not seg.get("platform") and platform)
    if seg.get("cohorts") and not overridden and not filled:
        cohorts = tuple(seg["cohorts"].split(","))
    else:
        cohorts = tuple(user_cohorts(
            gender=gender, age_band=age_band, region=user_region, platform=user_platform, cluster=cluster,
        ))
    liked = declared.liked_categories if declared else ()
    disliked = declared.disliked_categories if declared else ()
    inferred = tuple(json.loads(seg["top_categories"])) if seg.get("top_categories") else ()
    top = tuple(dict.fromkeys(liked + tuple(c for c in inferred if c not in set(disliked))))
    if cluster is not None:
        source: ClusterSource = "user"
    elif cold is not None:
        cluster, source = cold, "cold_start"
    else:
        source = "none"
    return UserSegments(
        user_id=user_id,
        cohorts=cohorts,
        known=known,
        declared=declared is not None,
        gender=gender,
        age_band=age_band,
        region=normalize_cohort_value(user_region),
        platform=normalize_cohort_value(user_platform),
        cluster=cluster,
        cluster_source=source,
        top_categories=top,
        liked_categories=liked,
        disliked_categories=disliked,
        price_band=seg.get("price_band"),
        typical_price=float(seg["typical_price"]) if seg.get("typical_price") else None,
        engagement=seg.get("engagement"),
        version=version,
        updated_at=float(seg["updated_at"]) if seg.get("updated_at") else None,
        declared_at=float(pref["updated_at"]) if pref.get("updated_at") else None,
    )


def encode_centroid(vector: np.ndarray) -> str:
    """Return a vector as base64 of little-endian float32 bytes."""
    return base64.b64encode(np.ascontiguousarray(vector, dtype="<f4").tobytes()).decode("ascii")


def decode_centroid(text: str) -> np.ndarray:
    """Return the float32 vector encoded by ``encode_centroid``."""
    return np.frombuffer(base64.b64decode(text), dtype="<f4").astype(np.float32)
