"""The serving path's types and pure steps: what a feed request goes through after I/O.

A first page runs these named steps (``feeds.py`` does the I/O between them):

    gather viewer          one Redis round trip: segments, session items, cluster centroid
    pick query vector      the session model's vector, else the viewer's cluster centroid
    retrieve candidates    one engine search (function score + has_child + kNN)
    rank by session model  blend the model's scores with the engine's
    cap categories         at most N items of one category per page
    paginate               cut a page, keep the rest for the next cursor

Each feed kind is a ``FeedPlan``: which of the steps apply, and which query it runs. Code
below never branches on the kind itself, only on the plan's fields. Everything here is pure
(no engine, no Redis, no clock) and unit-tested without servers.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

import numpy as np

from recommender.engine import Hit
from recommender.service import metrics
from recommender.service.ranking import blend_scores, category_key, diversify
from recommender.stores.feed_pages import FeedState, PageRow

__all__ = [
    "FeedKind",
    "FeedPlan",
    "PLANS",
    "Candidate",
    "Degradations",
    "candidates_from_hits",
    "rank_by_session_model",
    "cap_categories",
    "paginate",
    "engine_has_more",
    "popular_rows",
    "session_for_plan",
]

_log = logging.getLogger(__name__)
FeedKind = Literal["home", "product", "similar"]


@dataclass(frozen=True, slots=True)
class FeedPlan:
    """What one kind of feed does.

    needs_item         the request names an item (product page, similar items)
    item_in_session    the item joins the session as its latest click (product page)
    session_vector     kNN uses the session's (or cluster's) query vector
    item_vector        kNN uses the item's own vector instead (similar items)
    reranks            the session model reranks the candidates
    needs_user         only signed-in users may ask (product feed)
    """

    kind: FeedKind
    needs_item: bool = False
    item_in_session: bool = False
    session_vector: bool = True
    item_vector: bool = False
    reranks: bool = True
    needs_user: bool = False


PLANS: MappingProxyType[str, FeedPlan] = MappingProxyType({
    "home": FeedPlan("home"),
    "product": FeedPlan("product", needs_item=True, item_in_session=True, needs_user=True),
    "similar": FeedPlan("similar", needs_item=True, session_vector=False, item_vector=True, reranks=False),
})


@dataclass(slots=True)
class Candidate:
    """One item on its way to a page: the engine's score, then the blended one."""

    item_id: str
    engine_score: float
    category: str = ""
    score: float = 0.0
    components: dict[str, float] | None = None

    def row(self) -> PageRow:
        """Return the compact row a saved feed keeps."""
        return (self.item_id, self.score, self.category, self.components)


TRACEBACK_SAMPLE_S = 60


class _Sampler:
    """Says yes at most once per ``every_s`` seconds per key (thread-safe)."""

    def __init__(self, every_s: float):
        self.every_s = every_s
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    def due(self, key: str) -> bool:
        now = time.monotonic()
        with self._lock:
            if now - self._last.get(key, -math.inf) < self.every_s:
                return False
            self._last[key] = now
            return True


_TRACEBACKS = _Sampler(TRACEBACK_SAMPLE_S)


class Degradations:
    """What degraded while serving one request.

    ``add`` records the stage and the client-visible reason, counts the metric and logs the
    operator detail (``cause``) in one call. Reasons say what degraded, never where an
    internal service lives or how to restart it: those go to the log only.
    """

    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []
        self._causes: list[tuple[str, str, BaseException | str]] = []

    def add(self, stage: str, reason: str, *, cause: BaseException | str | None = None) -> None:
        """Record a degradation and count it; ``log`` writes the request's causes in one line."""
        metrics.DEGRADATIONS.labels(stage=stage).inc()
        self.items.append((stage, reason))
        if cause is not None:
            self._causes.append((stage, reason, cause))

    def log(self, what: str) -> None:
        """Log the request's degradations in one line (no traceback), plus at most one traceback per stage
        every ``TRACEBACK_SAMPLE_S`` seconds as a sample, so an outage does not flood the log."""
        if not self._causes:
            return
        line = "; ".join(f"{stage}: {reason} ({cause})" for stage, reason, cause in self._causes)
        sample = next((c for stage, _, c in self._causes if isinstance(c, BaseException) and _TRACEBACKS.due(stage)),
                      None)
        if sample is not None:
            _log.warning("degraded %s: %s; sample traceback, the next for this stage in %ds at the earliest", what,
                         line, TRACEBACK_SAMPLE_S, exc_info=sample)
        else:
            _log.warning("degraded %s: %s", what, line)

    def stages(self) -> list[str]:
        return [stage for stage, _ in self.items]


def session_for_plan(plan: FeedPlan, session: Sequence[str], item_id: str) -> tuple[str, ...]:
    """Return the session the model sees: the viewer's items, plus the page's item when the plan says so."""
    if plan.item_in_session and item_id:
        return (*session, item_id)
    return tuple(session)


def candidates_from_hits(hits: Sequence[Hit], *, components: Sequence[dict[str, float]] | None = None) -> list[Candidate]:
    """Return one Candidate per hit, reading id and category from the hit's doc values."""
    out = []
    for n, hit in enumerate(hits):
        category = hit.fields.get("category")
        if category is None:
            category = hit.source.get("category", "")
        out.append(Candidate(hit.id, hit.score, str(category), components=dict(components[n]) if components else None))
    return out


def rank_by_session_model(
    candidates: Sequence[Candidate],
    model_scores: Sequence[float] | None,
    *,
    blend: float,
    explain: bool,
) -> list[Candidate]:
    """Return the candidates ordered by the blended score (ties keep the engine's order).

    Sets each candidate's ``score`` to ``(1 - blend) * engine + blend * model`` (both
    min-max scaled, see ``ranking.blend_scores``); without model scores the engine order
    stays. With ``explain`` each candidate's components gain ``engine`` and, with a model,
    ``session_model`` (unknown items, -inf to the model, report 0.0). The candidates are
    the request's own: they are updated in place, not copied (200 per request).
    """
    if not candidates:
        return []
    scores = blend_scores([c.engine_score for c in candidates], model_scores, blend=blend)
    rounded = np.round(scores, 6).tolist()
    order = np.argsort(-scores, kind="stable").tolist()
    model = None
    if explain and model_scores is not None:
        model = np.round(np.nan_to_num(np.asarray(model_scores, dtype=np.float64), neginf=0.0, posinf=0.0), 6).tolist()
    ranked = []
    for pos in order:
        c = candidates[pos]
        c.score = rounded[pos]
        if explain:
            c.components = {**(c.components or {}), "engine": round(float(c.engine_score), 6)}
            if model is not None:
                c.components["session_model"] = model[pos]
        ranked.append(c)
    return ranked


def cap_categories(
    candidates: Sequence[Candidate], *, page_size: int, max_per_category: int | None, category_level: int
) -> list[Candidate]:
    """Return the candidates reordered so no page holds more than ``max_per_category`` of one category."""
    keys = [category_key(c.category, level=category_level) for c in candidates]
    return [candidates[i] for i in diversify(keys, page_size=page_size, max_per_category=max_per_category)]


def paginate(state: FeedState, page_size: int) -> tuple[list[PageRow], bool]:
    """Return (the next page's rows, whether more may follow), moving them from pending to served.

    More may follow when rows are still pending or the engine may still give more: its list
    has not ended, or it ended under the candidate window and can go on without it.
    """
    page = state.pending[:page_size]
    state.pending = state.pending[page_size:]
    state.served += [row[0] for row in page]
    state.pages += 1
    return page, bool(state.pending) or engine_has_more(state)


def engine_has_more(state: FeedState) -> bool:
    """Return whether a refill can ask the engine for more candidates of this feed."""
    if state.served_from == "fallback":
        return False
    return state.engine_after is not None or not state.widened


def popular_rows(ids: Sequence[str], *, exclude: set[str]) -> list[PageRow]:
    """Return the popular fallback as page rows, best first, scored 1 down towards 0."""
    kept = [i for i in ids if i not in exclude]
    n = max(len(kept), 1)
    return [(item_id, round(1 - pos / n, 6), "", None) for pos, item_id in enumerate(kept)]
