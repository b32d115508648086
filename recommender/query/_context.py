"""What one request contributes to the feed query: the viewer, the session, the page."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from recommender.cohorts import parse_cohort
from recommender.errors import InvalidRequest
from recommender.profiles import CohortType

__all__ = ["MAX_PAGE_SIZE", "COHORT_KIND_TYPES", "SearchAfter", "FeedContext", "cohort_type"]

MAX_PAGE_SIZE = 100

# Cohort id kind (recommender/cohorts.py) -> the cohort type a profile weighs. The profile's
# "combined" type has no cohort kind yet; its weight applies once the clustering job emits one.
COHORT_KIND_TYPES: dict[str, CohortType] = {
    "all": "all",
    "g": "gender",
    "age": "age",
    "ga": "gender_age",
    "region": "region",
    "platform": "platform",
    "cluster": "cluster",
}


def cohort_type(cohort: str) -> CohortType:
    """Return the profile cohort type of a cohort id ("ga:m:25-34" -> "gender_age").

    Raises InvalidRequest naming the id when it is not a cohort id.
    """
    kind, _ = parse_cohort(cohort)
    try:
        return COHORT_KIND_TYPES[kind]
    except KeyError:
        raise InvalidRequest(
            f"cohort {cohort!r} has kind {kind!r}, which no profile cohort type covers; "
            f"add it to COHORT_KIND_TYPES in recommender/query/_context.py"
        ) from None


@dataclass(frozen=True, slots=True)
class SearchAfter:
    """Where the previous engine page ended: its last (score, item id), the sort of every feed query."""

    score: float
    item_id: str

    def __post_init__(self) -> None:
        if not isinstance(self.score, (int, float)) or not math.isfinite(self.score):
            raise InvalidRequest(f"search_after score {self.score!r} is not a finite number; restart from the first page")
        if not isinstance(self.item_id, str) or not self.item_id:
            raise InvalidRequest(f"search_after item_id {self.item_id!r} is empty; restart from the first page")


def _strings(name: str, values: Iterable[Any]) -> tuple[str, ...]:
    if isinstance(values, str):
        raise InvalidRequest(f"{name} {values!r} is one string; pass a list of strings")
    out = tuple(values)
    for v in out:
        if not isinstance(v, str) or not v:
            raise InvalidRequest(f"{name} holds {v!r}; every entry must be a non-empty string")
    # Keep first occurrences only: duplicates add nothing but query size.
    return tuple(dict.fromkeys(out))


@dataclass(frozen=True, slots=True)
class FeedContext:
    """One request's inputs to the query, validated and frozen (sequences become tuples).

    cohorts               cohort ids of the viewer (recommender/cohorts.py), most specific first
    region                the viewer's region; "" for none (then no region filter applies)
    query_vector          session (or segment-centroid) vector for kNN; None skips kNN
    excluded_categories   category path prefixes the request excludes
    disliked_categories   category path prefixes the viewer's segments dislike
    seen_item_ids         items already served or seen: never returned again
    preferred_categories  category path prefixes the request prefers (category_boost)
    page_size             1..MAX_PAGE_SIZE items per page
    search_after          where the previous engine page ended, for infinite scroll
    explain               name each component's share of the score (see query.build)
    exploration_salt      mixed into the exploration seed (pass the session id), so each
                          session sees its own shuffle that stays put while it scrolls
    widened               ignore the profile's candidate window: every eligible item
                          competes (a scroll that used up the windowed candidates goes on)
    """

    cohorts: tuple[str, ...] = ("all",)
    region: str = ""
    query_vector: tuple[float, ...] | None = None
    excluded_categories: tuple[str, ...] = ()
    disliked_categories: tuple[str, ...] = ()
    seen_item_ids: tuple[str, ...] = ()
    preferred_categories: tuple[str, ...] = ()
    page_size: int = 20
    search_after: SearchAfter | None = None
    explain: bool = False
    exploration_salt: str = ""
    widened: bool = False

    def __post_init__(self) -> None:
        # Copy every sequence into a tuple: callers may pass lists, which they may reuse.
        for name in ("cohorts", "excluded_categories", "disliked_categories", "seen_item_ids", "preferred_categories"):
            object.__setattr__(self, name, _strings(name, getattr(self, name)))
        for cohort in self.cohorts:
            cohort_type(cohort)
        if not isinstance(self.region, str):
            raise InvalidRequest(f"region {self.region!r} is not a string; pass '' for no region")
        if self.query_vector is not None:
            vector = tuple(float(x) for x in self.query_vector)
            if not vector or not all(math.isfinite(x) for x in vector):
                raise InvalidRequest(
                    f"query_vector of {len(vector)} values is empty or has a non-finite value; pass None to skip kNN"
                )
            object.__setattr__(self, "query_vector", vector)
        if isinstance(self.page_size, bool) or not isinstance(self.page_size, int) or not 1 <= self.page_size <= MAX_PAGE_SIZE:
            raise InvalidRequest(f"page_size {self.page_size!r} is outside 1..{MAX_PAGE_SIZE}; ask for fewer items per page")
        if self.search_after is not None and not isinstance(self.search_after, SearchAfter):
            raise InvalidRequest(f"search_after {self.search_after!r} is not a SearchAfter(score, item_id)")
