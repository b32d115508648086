"""Feed logic: a request becomes one engine search, a session-model rerank, a diversity cap and
pages served from a saved feed. No proto types here (servicer.py converts at the edge).

Stages of a first page (each timed in metrics):
  segments  the viewer's cohorts and disliked categories (Redis; down -> defaults, flagged)
  session   recent items from the request, else from the session store (down -> none, flagged)
  vector    the session model's query vector, else the viewer's cluster centroid, else no kNN
  engine    one function-score + has_child + kNN search (deadline; down -> popular fallback, flagged)
  rerank    session-model scores blended with the engine's (error -> engine order, flagged)
  page      diversity cap, the first page, the rest saved under a signed cursor
Later pages come from the saved feed; when it runs dry, the engine continues after the last
hit it returned (search_after), excluding everything served.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal

import numpy as np

from recommender.engine import SearchEngine
from recommender.errors import EngineUnavailable, InvalidRequest, NotFound, StoreUnavailable, Unauthenticated
from recommender.events import MAX_ID_LENGTH
from recommender.query import MAX_PAGE_SIZE, FeedContext, SearchAfter, build_feed_query, build_similar_items_query
from recommender.query import read_component_scores
from recommender.service import metrics
from recommender.service.cursors import Cursor, decode_cursor, encode_cursor
from recommender.service.profile_cache import LiveProfile, ProfileCache
from recommender.service.ranking import blend_scores, category_key, diversify
from recommender.settings import Settings
from recommender.stores.feed_pages import FeedPageStore, FeedState
from recommender.stores.popular import PopularStore
from recommender.stores.segments import SegmentStore, UserSegments
from recommender.stores.sessions import SessionStore

__all__ = ["FeedKind", "FeedRequest", "FeedItem", "FeedPage", "FeedService", "ItemCache"]

_log = logging.getLogger(__name__)
FeedKind = Literal["home", "product", "similar"]
_MAX_LIST = 200  # entries in any repeated request field


@dataclass(frozen=True)
class FeedRequest:
    kind: FeedKind
    user_id: str | None = None
    session_id: str = ""
    recent_item_ids: tuple[str, ...] = ()
    region: str = ""
    page_size: int = 20
    cursor: str = ""
    excluded_categories: tuple[str, ...] = ()
    preferred_categories: tuple[str, ...] = ()
    profile: str = ""
    explain: bool = False
    item_id: str = ""


@dataclass(frozen=True)
class FeedItem:
    item_id: str
    score: float
    components: dict[str, float] = field(default_factory=dict)


@dataclass
class FeedPage:
    items: list[FeedItem]
    next_cursor: str
    profile_version: str
    model_version: str
    served_from: Literal["engine", "fallback"]
    degradations: list[tuple[str, str]] = field(default_factory=list)


class ItemCache:
    """In-process LRU of item documents (metadata and vector) with a short time to live.

    The TTL bounds how long a status change can hide from the product/similar source-item
    lookup; feeds themselves always filter status in the engine.
    """

    def __init__(self, *, size: int = 10_000, ttl_s: float = 30.0):
        self.size = size
        self.ttl_s = ttl_s
        self._items: OrderedDict[str, tuple[float, dict[str, Any]]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, item_id: str) -> dict[str, Any] | None:
        with self._lock:
            hit = self._items.get(item_id)
            if hit is None or time.monotonic() - hit[0] > self.ttl_s:
                return None
            self._items.move_to_end(item_id)
            return hit[1]

    def put(self, item_id: str, source: dict[str, Any]) -> None:
        with self._lock:
            self._items[item_id] = (time.monotonic(), source)
            self._items.move_to_end(item_id)
            while len(self._items) > self.size:
                self._items.popitem(last=False)


def _check_request(req: FeedRequest) -> None:
    if isinstance(req.page_size, bool) or not 1 <= req.page_size <= MAX_PAGE_SIZE:
        raise InvalidRequest(f"page_size {req.page_size!r} is outside 1..{MAX_PAGE_SIZE}; ask for fewer items per page")
    for name in ("recent_item_ids", "excluded_categories", "preferred_categories"):
        values = getattr(req, name)
        if len(values) > _MAX_LIST:
            raise InvalidRequest(f"{name} has {len(values)} entries; send at most {_MAX_LIST}")
        bad = [v for v in values if not v or len(v) > MAX_ID_LENGTH]
        if bad:
            raise InvalidRequest(f"{name} holds {bad[0]!r}; entries must be 1..{MAX_ID_LENGTH} characters")
    for name in ("user_id", "session_id", "item_id", "region", "profile"):
        value = getattr(req, name) or ""
        if len(value) > MAX_ID_LENGTH:
            raise InvalidRequest(f"{name} {value[:40]!r}... is longer than {MAX_ID_LENGTH} characters")
    if req.kind == "product" and not req.user_id:
        raise Unauthenticated("ProductFeed needs a signed-in user_id; logged-out visitors get HomeFeed")
    if req.kind in ("product", "similar") and not req.item_id:
        raise InvalidRequest(f"{req.kind} feed needs item_id, the item the page is about")


def _context(
    req: FeedRequest,
    segs: UserSegments,
    vector: np.ndarray | None,
    *,
    seen: tuple[str, ...],
    after: SearchAfter | None = None,
) -> FeedContext:
    return FeedContext(
        cohorts=segs.cohorts,
        region=req.region,
        query_vector=tuple(vector) if vector is not None else None,
        excluded_categories=req.excluded_categories,
        disliked_categories=segs.disliked_categories,
        seen_item_ids=seen,
        preferred_categories=req.preferred_categories,
        page_size=req.page_size,
        search_after=after,
        explain=req.explain,
        # Each session sees its own exploration shuffle, stable while it scrolls.
        exploration_salt=req.session_id or req.user_id or "",
    )


def _request_key(req: FeedRequest) -> str:
    return "|".join([req.kind, req.user_id or "", req.session_id, req.region, req.item_id, req.profile or "default"])


class FeedService:
    """Serves feeds; every dependency is passed in (see server.py for the wiring)."""

    def __init__(
        self,
        settings: Settings,
        *,
        engine: SearchEngine,
        profiles: ProfileCache,
        segments: SegmentStore,
        sessions: SessionStore,
        pages: FeedPageStore,
        popular: PopularStore,
        scorer: Any = None,
        items: ItemCache | None = None,
    ):
        self.settings = settings
        self.engine = engine
        self.profiles = profiles
        self.segments = segments
        self.sessions = sessions
        self.pages = pages
        self.popular = popular
        self.scorer = scorer
        self.items = items or ItemCache()
        self.alias = settings.engine.index_alias
        self.engine_timeout_ms = settings.server.engine_timeout_ms
        self.secret = settings.server.cursor_secret
        self._popular_copy: dict[str, list[str]] = {}

    @property
    def model_version(self) -> str:
        return self.scorer.version if self.scorer is not None else ""

    # -- entry point ------------------------------------------------------------------------------
    def feed(self, req: FeedRequest, *, now: datetime | None = None) -> FeedPage:
        """Return one page of the requested feed.

        Raises InvalidRequest (bad fields, forged cursor), Unauthenticated (ProductFeed without
        a user) and NotFound (unknown profile or item). Engine and Redis trouble never raise:
        they degrade the page and say so in ``degradations``.
        """
        _check_request(req)
        now = now or datetime.now(timezone.utc)
        live = self.profiles.get(req.profile or "default")
        degradations: list[tuple[str, str]] = []
        if req.cursor:
            cursor = decode_cursor(req.cursor, secret=self.secret)
            page = self._next_page(req, cursor, live, degradations, now=now)
            if page is not None:
                return page
        return self._first_page(req, live, degradations, now=now)

    # -- first page -------------------------------------------------------------------------------
    def _first_page(self, req: FeedRequest, live: LiveProfile, deg: list[tuple[str, str]], *, now: datetime) -> FeedPage:
        with self._stage(req.kind, "segments"):
            segs = self._segments(req, deg)
        with self._stage(req.kind, "session"):
            session = self._session(req, deg)
        try:
            source_item = self._source_item(req) if req.kind in ("product", "similar") else None
        except EngineUnavailable as exc:
            source_item, source_error = None, exc
        else:
            source_error = None
        if req.kind == "product":
            session = [*session, req.item_id]
        with self._stage(req.kind, "vector"):
            vector = self._query_vector(session, segs, deg) if req.kind != "similar" else None
        seen = tuple(dict.fromkeys([*session, *([req.item_id] if req.item_id else [])]))
        context = _context(req, segs, vector, seen=seen)
        state = FeedState(
            feed_id=self.pages.new_id(),
            profile_name=live.name,
            profile_version=live.version,
            model_version=self.model_version,
            request_key=_request_key(req),
            served=list(seen),
        )
        try:
            if source_error is not None:
                raise source_error
            candidates, after = self._search(req, live, context, source_item, now=now)
        except EngineUnavailable as exc:
            return self._fallback_page(req, live, state, deg, reason=str(exc))
        state.engine_after = after
        state.pending = self._rerank(req, live, session, candidates, deg)
        return self._serve(req, state, deg)

    def _segments(self, req: FeedRequest, deg: list[tuple[str, str]]) -> UserSegments:
        try:
            return self.segments.segments_for(req.user_id or None, region=req.region or None)
        except StoreUnavailable as exc:
            metrics.DEGRADATIONS.labels(stage="segments").inc()
            deg.append(("segments", f"default segments used: {exc}"))
            cohorts = ("all", f"region:{req.region.lower()}") if req.region else ("all",)
            return UserSegments(user_id=req.user_id, cohorts=cohorts)

    def _session(self, req: FeedRequest, deg: list[tuple[str, str]]) -> list[str]:
        if req.recent_item_ids:
            return list(req.recent_item_ids)
        key = req.session_id or req.user_id
        if not key:
            return []
        try:
            return self.sessions.recent(key)
        except StoreUnavailable as exc:
            metrics.DEGRADATIONS.labels(stage="session").inc()
            deg.append(("session", f"no session history: {exc}"))
            return []

    def _query_vector(self, session: list[str], segs: UserSegments, deg: list[tuple[str, str]]) -> np.ndarray | None:
        if self.scorer is not None and session:
            try:
                vector = self.scorer.encode(session)
                if vector is not None:
                    return vector
            except Exception as exc:  # noqa: BLE001 - a model failure must not fail the feed
                metrics.DEGRADATIONS.labels(stage="vector").inc()
                deg.append(("vector", f"session model failed: {exc}"))
        if segs.cluster is not None:
            try:
                centroid = self.segments.centroid(segs.cluster)
            except StoreUnavailable as exc:
                deg.append(("vector", f"cluster centroid unavailable: {exc}"))
                return None
            # Centroids are query vectors only when the clustering ran on item embeddings; on
            # category-affinity vectors they live in another space (and size), so kNN is skipped.
            if centroid is not None and len(centroid) == self.settings.engine.embedding_dims:
                return centroid
        return None

    def _source_item(self, req: FeedRequest) -> dict[str, Any]:
        cached = self.items.get(req.item_id)
        if cached is not None:
            return cached
        source = self.engine.get(self.alias, req.item_id, timeout_ms=self.engine_timeout_ms)
        if source is None or source.get("item_id") is None:
            raise NotFound(f"item {req.item_id!r} does not exist in the index")
        self.items.put(req.item_id, source)
        return source

    def _search(
        self,
        req: FeedRequest,
        live: LiveProfile,
        context: FeedContext,
        source_item: dict[str, Any] | None,
        *,
        now: datetime,
    ) -> tuple[list[dict[str, Any]], list[Any] | None]:
        """Return (candidates, where the engine list ended or None if it is exhausted)."""
        if req.kind == "similar":
            vector = (source_item or {}).get("embedding")
            if not vector:
                raise NotFound(f"item {req.item_id!r} has no embedding to find similar items with")
            body = build_similar_items_query(live.profile, context, item_id=req.item_id, item_vector=vector)
        else:
            body = build_feed_query(live.profile, context, now=now)
        with self._stage(req.kind, "engine"):
            try:
                result = self.engine.search(self.alias, body, timeout_ms=self.engine_timeout_ms, named_scores=req.explain)
            except (NotFound, InvalidRequest) as exc:
                # A missing index or a query the engine refuses is the engine's trouble, not the caller's.
                raise EngineUnavailable(str(exc)) from exc
        candidates = [
            {
                "item_id": hit.id,
                "engine_score": hit.score,
                "category": str(hit.source.get("category", "")),
                "components": read_component_scores(live.profile, hit.matched) if req.explain else {},
            }
            for hit in result.hits
        ]
        size = body.get("size", len(candidates))
        after = list(result.hits[-1].sort) if result.hits and len(result.hits) >= size and result.hits[-1].sort else None
        return candidates, after

    def _rerank(
        self,
        req: FeedRequest,
        live: LiveProfile,
        session: list[str],
        candidates: list[dict[str, Any]],
        deg: list[tuple[str, str]],
    ) -> list[dict[str, Any]]:
        if not candidates:
            return []
        blend = live.profile.rerank.blend
        model_scores = None
        if self.scorer is not None and blend > 0 and session and req.kind != "similar":
            with self._stage(req.kind, "rerank"):
                try:
                    model_scores = self.scorer.score(session, [c["item_id"] for c in candidates])
                except Exception as exc:  # noqa: BLE001 - a model failure must not fail the feed
                    metrics.DEGRADATIONS.labels(stage="rerank").inc()
                    deg.append(("rerank", f"session model failed, engine order kept: {exc}"))
        scores = blend_scores([c["engine_score"] for c in candidates], model_scores, blend=blend)
        order = np.argsort(-scores, kind="stable")
        ranked = []
        for pos in order:
            c = dict(candidates[pos])
            c["score"] = round(float(scores[pos]), 6)
            if req.explain:
                c["components"] = {**c["components"], "engine": round(float(c["engine_score"]), 6)}
                if model_scores is not None:
                    c["components"]["session_model"] = round(float(model_scores[pos]), 6)
            ranked.append(c)
        diversity = live.profile.diversity
        cats = [category_key(c["category"], level=diversity.category_level) for c in ranked]
        return [ranked[i] for i in diversify(cats, page_size=req.page_size, max_per_category=diversity.max_per_category)]

    # -- serving pages ----------------------------------------------------------------------------
    def _serve(self, req: FeedRequest, state: FeedState, deg: list[tuple[str, str]]) -> FeedPage:
        served_now = state.pending[: req.page_size]
        state.pending = state.pending[req.page_size:]
        state.served += [c["item_id"] for c in served_now]
        state.pages += 1
        more = bool(state.pending) or state.engine_after is not None
        next_cursor = ""
        if more:
            try:
                with self._stage(req.kind, "save"):
                    self.pages.save(state)
                next_cursor = encode_cursor(Cursor(state.feed_id, state.pages, state.profile_version), secret=self.secret)
            except StoreUnavailable as exc:
                metrics.DEGRADATIONS.labels(stage="cursor").inc()
                deg.append(("cursor", f"no next page: the feed could not be saved ({exc})"))
        return FeedPage(
            items=[FeedItem(c["item_id"], c.get("score", 0.0), c.get("components") or {}) for c in served_now],
            next_cursor=next_cursor,
            profile_version=state.profile_version,
            model_version=state.model_version,
            served_from="fallback" if state.served_from == "fallback" else "engine",
            degradations=deg,
        )

    def _next_page(
        self, req: FeedRequest, cursor: Cursor, live: LiveProfile, deg: list[tuple[str, str]], *, now: datetime
    ) -> FeedPage | None:
        """Return the next page of a saved feed, or None to restart from the first page (and say why)."""
        try:
            state = self.pages.load(cursor.feed_id)
        except StoreUnavailable as exc:
            deg.append(("cursor", f"saved feed unreadable, restarted from the first page: {exc}"))
            return None
        if state is None:
            deg.append(("cursor", "the cursor expired; restarted from the first page"))
            return None
        if state.request_key != _request_key(req):
            raise InvalidRequest("cursor belongs to another feed (user, session, region, item or profile differ); "
                                 "send the request without a cursor to start from the first page")
        if state.profile_version != live.version:
            deg.append(("cursor", f"profile {live.name!r} changed from version {state.profile_version} to "
                                  f"{live.version}; restarted from the first page"))
            return None
        if len(state.pending) < req.page_size and state.engine_after is not None and state.served_from != "fallback":
            self._refill(req, live, state, deg, now=now)
        return self._serve(req, state, deg)

    def _refill(self, req: FeedRequest, live: LiveProfile, state: FeedState, deg: list[tuple[str, str]], *,
                now: datetime) -> None:
        """Append the engine's next candidates after the saved position, excluding everything served."""
        try:
            segs = self._segments(req, deg)
            session = self._session(req, deg)
            if req.kind == "product":
                session = [*session, req.item_id]
            vector = self._query_vector(session, segs, deg) if req.kind != "similar" else None
            score, item_id = state.engine_after
            seen = tuple(dict.fromkeys(state.served + [c["item_id"] for c in state.pending]))
            context = _context(req, segs, vector, seen=seen, after=SearchAfter(float(score), str(item_id)))
            source = self._source_item(req) if req.kind == "similar" else None
            candidates, state.engine_after = self._search(req, live, context, source, now=now)
        except EngineUnavailable as exc:
            metrics.DEGRADATIONS.labels(stage="engine").inc()
            deg.append(("engine", f"could not fetch more items: {exc}"))
            return
        state.pending += self._rerank(req, live, session, candidates, deg)

    def _fallback_page(
        self, req: FeedRequest, live: LiveProfile, state: FeedState, deg: list[tuple[str, str]], *, reason: str
    ) -> FeedPage:
        metrics.DEGRADATIONS.labels(stage="engine").inc()
        deg.append(("engine", f"served the popular fallback: {reason}"))
        scope = req.region.lower() if req.region else ""
        try:
            ids = self.popular.read(scope or None)
            self._popular_copy[scope] = ids
        except StoreUnavailable as exc:
            ids = self._popular_copy.get(scope) or self._popular_copy.get("", [])
            deg.append(("fallback", f"Redis down, served the in-process copy of the popular list: {exc}"))
        seen = set(state.served)
        ids = [i for i in ids if i not in seen]
        n = len(ids)
        state.pending = [{"item_id": i, "score": round(1 - pos / max(n, 1), 6), "category": ""} for pos, i in enumerate(ids)]
        state.served_from = "fallback"
        state.engine_after = None
        return self._serve(req, state, deg)

    def warm_fallback(self, regions: tuple[str, ...] = ()) -> None:
        """Copy the popular lists into memory, so the fallback survives Redis being down too."""
        for scope in ("", *regions):
            try:
                self._popular_copy[scope] = self.popular.read(scope or None)
            except StoreUnavailable as exc:
                _log.warning("popular fallback not copied for %r: %s", scope or "global", exc)

    @contextmanager
    def _stage(self, rpc: str, stage: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            metrics.STAGE_SECONDS.labels(rpc=rpc, stage=stage).observe(time.perf_counter() - started)
