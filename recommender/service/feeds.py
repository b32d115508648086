"""Feed logic: a request becomes one Redis read, one engine search, a session-model rerank, a
category cap and pages served from a saved feed. No proto types here (servicer.py converts).

A first page (the named steps are in pipeline.py; each stage is timed in metrics):

  viewer   segments, session items and cluster centroid in one Redis round trip
           (down -> default segments and no session, flagged)
  vector   the session model's query vector, else the viewer's cluster centroid, else no kNN
  engine   one function-score + has_child + kNN search (deadline; down -> popular fallback, flagged)
  rerank   session-model scores blended with the engine's (error -> engine order, flagged)
  page     category cap, the first page; the rest is saved (off the request path) under a
           signed cursor

Later pages come from the saved feed; when it runs dry, the engine continues after the last
hit it returned (search_after), excluding everything served.

A preview (``FeedRequest.preview``, the admin console) serves the stored profile version it
names, draft or not, never an experiment's variant and never counted in one; it waits for
a feed slot and the engine up to its own deadline, saves no page state (first page only, no
cursor) and adds each item's details (title, price, category, times) from the index.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, Literal

import numpy as np

from recommender.cohorts import ALL_COHORT, normalize_cohort_value, region_cohort
from recommender.engine import SearchEngine
from recommender.errors import (
    EngineUnavailable,
    HotfeedError,
    InvalidRequest,
    NotFound,
    StoreUnavailable,
    Unauthenticated,
)
from recommender.events import MAX_ID_LENGTH
from recommender.query import MAX_PAGE_SIZE, FeedContext, SearchAfter, build_feed_query, build_similar_items_query
from recommender.query import read_component_scores
from recommender.segments import UserSegments, ViewerRecord
from recommender.service import metrics
from recommender.service.cursors import Cursor, decode_cursor, encode_cursor
from recommender.service.item_caches import ItemCache, ItemVectorCache
from recommender.service.pipeline import (
    PLANS,
    Candidate,
    Degradations,
    FeedKind,
    FeedPlan,
    candidates_from_hits,
    cap_categories,
    engine_has_more,
    paginate,
    popular_rows,
    rank_by_session_model,
    session_for_plan,
)
from recommender.service.profile_cache import LiveProfile, ProfileCache
from recommender.settings import Settings
from recommender.stores.experiment_counts import ExperimentCounter
from recommender.stores.feed_pages import FeedPageStore, FeedState
from recommender.stores.popular import PopularStore
from recommender.stores.segments import RedisSegmentStore
from recommender.stores.sessions import SessionStore

__all__ = ["FeedKind", "Preview", "FeedRequest", "FeedItem", "FeedPage", "FeedService", "ItemCache", "DETAIL_FIELDS"]

_log = logging.getLogger(__name__)
_MAX_LIST = 200  # entries in any repeated request field
# Regions whose popular list is copied in memory for a Redis outage; bounded, so a caller
# sending ever new region strings cannot grow the process.
_POPULAR_COPIES = 256
# The index fields a preview shows of each item (ItemDetails in the proto).
DETAIL_FIELDS = ("title", "price", "category", "created_at", "bumped_at")


@dataclass(frozen=True)
class Preview:
    """What makes a request an admin console preview (proto ``PreviewOptions``): the stored
    profile version to serve ("" for the live one) and the engine deadline (0: production's)."""

    profile_version: str = ""
    engine_deadline_ms: int = 0


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
    preview: Preview | None = None


@dataclass(frozen=True)
class FeedItem:
    item_id: str
    score: float
    components: dict[str, float] = field(default_factory=dict)
    # Previews only: the DETAIL_FIELDS the item's document has; None when it was not read.
    details: dict[str, Any] | None = None


@dataclass
class FeedPage:
    items: list[FeedItem]
    next_cursor: str
    profile_version: str
    model_version: str
    served_from: Literal["engine", "fallback"]
    degradations: list[tuple[str, str]] = field(default_factory=list)
    # The A/B experiment whose variant (profile_version) served the page; "" when none.
    experiment: str = ""


@dataclass(frozen=True, slots=True)
class _Viewer:
    """The viewer as one request sees it; ``redis_ok`` is False when the Redis read failed."""

    segments: UserSegments
    session: tuple[str, ...]
    centroid: np.ndarray | None
    redis_ok: bool


def _check_request(req: FeedRequest, plan: FeedPlan) -> None:
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
    if plan.needs_user and not req.user_id:
        raise Unauthenticated(f"{plan.kind} feed needs a signed-in user_id; logged-out visitors get HomeFeed")
    if plan.needs_item and not req.item_id:
        raise InvalidRequest(f"{plan.kind} feed needs item_id, the item the page is about")


def _request_key(req: FeedRequest) -> str:
    return "|".join([req.kind, req.user_id or "", req.session_id, req.region, req.item_id, req.profile or "default"])


def _default_segments(req: FeedRequest) -> UserSegments:
    cohorts = (region_cohort(req.region), ALL_COHORT) if normalize_cohort_value(req.region) else (ALL_COHORT,)
    return UserSegments(user_id=req.user_id, cohorts=cohorts)


class FeedService:
    """Serves feeds; every dependency is passed in (see server.py for the wiring)."""

    def __init__(
        self,
        settings: Settings,
        *,
        engine: SearchEngine,
        profiles: ProfileCache,
        # Redis itself, not only a SegmentReader: a next page reads the saved feed and the
        # viewer's preference hash (pref_key) in one round trip.
        segments: RedisSegmentStore,
        sessions: SessionStore,
        pages: FeedPageStore,
        popular: PopularStore,
        scorer: Any = None,
        items: ItemCache | None = None,
        experiment_counts: ExperimentCounter | None = None,
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
        self.experiment_counts = experiment_counts
        self.alias = settings.engine.index_alias
        # Half the engine deadline: the multi-get comes after the search, within the same request.
        self.item_vectors = ItemVectorCache(engine, self.alias, timeout_ms=max(settings.server.engine_timeout_ms // 2, 1))
        self.engine_timeout_ms = settings.server.engine_timeout_ms
        self.secret = settings.server.cursor_secret
        self._popular_copy: OrderedDict[str, list[str]] = OrderedDict()
        self._popular_lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(settings.server.concurrent_feeds or 2 * (os.cpu_count() or 1))
        self._queue_timeout_s = settings.server.queue_timeout_ms / 1000

    @property
    def model_version(self) -> str:
        return self.scorer.version if self.scorer is not None else ""

    def swap_scorer(self, scorer: Any) -> None:
        """Serve with ``scorer`` from the next request on; requests in flight finish with the old one
        (each reads ``self.scorer`` once). One attribute store: atomic under the GIL."""
        self.scorer = scorer

    # -- entry point ------------------------------------------------------------------------------
    def feed(self, req: FeedRequest, *, now: datetime | None = None) -> FeedPage:
        """Return one page of the requested feed.

        Raises InvalidRequest (bad fields, forged cursor), Unauthenticated (ProductFeed without
        a user) and NotFound (unknown profile or item). Engine and Redis trouble never raise:
        they degrade the page and say so in ``degradations``.
        """
        plan = PLANS[req.kind]
        _check_request(req, plan)
        self._check_preview(req)
        now = now or datetime.now(timezone.utc)
        # Who experiments split on and count: the user, else the session ("" for neither).
        viewer = req.user_id or req.session_id
        if req.preview is not None:
            # A preview is nobody's impression: never an experiment's variant, never counted.
            live = self.profiles.version(req.profile or "default", req.preview.profile_version)
        else:
            live = self.profiles.for_viewer(req.profile or "default", viewer)
        deg = Degradations()
        # A preview waits for a slot as long as for the engine: on a busy box it is still ranked.
        queue_timeout_s = self._queue_timeout_s if req.preview is None else self._deadline_ms(req) / 1000
        try:
            if not self._slots.acquire(timeout=queue_timeout_s):
                # More feeds in flight than the cores can compute: answer at once from the popular
                # list rather than queue without bound (flagged, and counted like any fallback).
                page = self._fallback_page(req, self._new_state(req, live, (), self.scorer), deg,
                                           cause="no free feed slot", stage="overload",
                                           reason="the recommender is overloaded; served the popular fallback")
            else:
                try:
                    page = self._serve_feed(req, plan, live, deg, now=now)
                finally:
                    self._slots.release()
            if req.preview is not None:
                page.items = self._with_details(req, page.items, deg)
        finally:
            deg.log(f"{req.kind} feed")
        if live.experiment:
            page.experiment = live.experiment
            # Every page the variant answered counts, fallback pages too (intent to treat):
            # leaving them out would credit a variant for the engine trouble it happened to miss.
            # The viewer is exposed from now on: their events count to this variant.
            if self.experiment_counts is not None:
                self.experiment_counts.served(live.experiment, live.version, viewer, len(page.items))
        return page

    def _check_preview(self, req: FeedRequest) -> None:
        """Raise InvalidRequest when a preview asks for what previews do not do."""
        if req.preview is None:
            return
        if req.cursor:
            raise InvalidRequest("a preview shows the first page only; send it without a cursor")
        cap = self.settings.engine.timeout_ms
        if not 0 <= req.preview.engine_deadline_ms <= cap:
            raise InvalidRequest(f"preview engine deadline {req.preview.engine_deadline_ms} ms is outside 0..{cap} ms "
                                 f"(the engine client's timeout); ask for less")

    def _deadline_ms(self, req: FeedRequest) -> int:
        """Return the engine deadline of ``req`` in ms: a preview's own, else the production one."""
        if req.preview is not None and req.preview.engine_deadline_ms:
            return req.preview.engine_deadline_ms
        return self.engine_timeout_ms

    def _with_details(self, req: FeedRequest, items: list[FeedItem], deg: Degradations) -> list[FeedItem]:
        """Return ``items`` with the DETAIL_FIELDS of their documents, read in one multi-get (the
        items unchanged, and a ``details`` degradation, when the engine cannot answer)."""
        if not items:
            return items
        try:
            sources = self.engine.mget(self.alias, [(i.item_id, None) for i in items], fields=list(DETAIL_FIELDS),
                                       timeout_ms=self._deadline_ms(req))
        except HotfeedError as exc:
            deg.add("details", "item details unreadable (search engine trouble); item ids only", cause=exc)
            return items
        return [replace(item, details={k: source[k] for k in DETAIL_FIELDS if source.get(k) is not None})
                if source is not None else item for item, source in zip(items, sources)]

    def _serve_feed(self, req: FeedRequest, plan: FeedPlan, live: LiveProfile, deg: Degradations, *,
                    now: datetime) -> FeedPage:
        if req.cursor:
            cursor = decode_cursor(req.cursor, secret=self.secret)
            page = self._next_page(req, plan, cursor, live, deg, now=now)
            if page is not None:
                return page
        return self._first_page(req, plan, live, deg, now=now)

    # -- steps with I/O ---------------------------------------------------------------------------
    def _gather_viewer(self, req: FeedRequest, deg: Degradations) -> _Viewer:
        """Return segments, session and centroid from one Redis round trip (defaults when it fails)."""
        session_id = "" if req.recent_item_ids else (req.session_id or req.user_id or "")
        try:
            record: ViewerRecord = self.segments.viewer(
                req.user_id or None, region=req.region or None,
                session_key=self.sessions.key(session_id) if session_id else None,
                session_items=self.sessions.max_items,
            )
        except StoreUnavailable as exc:
            deg.add("segments", "user segments unavailable (Redis down): default segments used", cause=exc)
            if session_id:
                deg.add("session", "session history unavailable (Redis down): none used", cause=exc)
            return _Viewer(_default_segments(req), tuple(req.recent_item_ids), None, redis_ok=False)
        session = tuple(req.recent_item_ids) or record.session
        return _Viewer(record.segments, session, record.centroid, redis_ok=True)

    def _represent_session(self, scorer: Any, session: tuple[str, ...], deg: Degradations) -> Any:
        """Return the session run through the model once (None without a model, a session or on failure)."""
        if scorer is None or not session:
            return None
        try:
            return scorer.represent(session)
        except Exception as exc:  # noqa: BLE001 - a model failure must not fail the feed
            deg.add("vector", "session model failed; the cluster centroid or no kNN was used", cause=exc)
            return None

    def _pick_query_vector(self, represented: Any, viewer: _Viewer) -> np.ndarray | None:
        """Return the kNN query vector: the session model's, else the viewer's cluster centroid, else None."""
        vector = represented.vector if represented is not None else None
        if vector is not None:
            return vector
        centroid = viewer.centroid
        # Centroids are query vectors only when the clustering ran on item embeddings; on
        # category-affinity vectors they live in another space (and size), so kNN is skipped.
        if centroid is not None and len(centroid) == self.settings.engine.embedding_dims:
            return centroid
        return None

    def _source_item(self, req: FeedRequest) -> dict[str, Any]:
        cached = self.items.get(req.item_id)
        if cached is not None:
            return cached
        source = self.engine.get(self.alias, req.item_id, timeout_ms=self._deadline_ms(req))
        if source is None or source.get("item_id") is None:
            raise NotFound(f"item {req.item_id!r} does not exist in the index")
        self.items.put(req.item_id, source)
        return source

    def _context(self, req: FeedRequest, viewer: _Viewer, vector: np.ndarray | None, *, seen: tuple[str, ...],
                 after: SearchAfter | None = None, widened: bool = False) -> FeedContext:
        return FeedContext(
            cohorts=viewer.segments.cohorts,
            region=req.region,
            query_vector=tuple(vector) if vector is not None else None,
            excluded_categories=req.excluded_categories,
            disliked_categories=viewer.segments.disliked_categories,
            seen_item_ids=seen,
            preferred_categories=req.preferred_categories,
            page_size=req.page_size,
            search_after=after,
            explain=req.explain,
            # Each session sees its own exploration shuffle, stable while it scrolls.
            exploration_salt=req.session_id or req.user_id or "",
            widened=widened,
        )

    def _retrieve_candidates(
        self, req: FeedRequest, plan: FeedPlan, live: LiveProfile, context: FeedContext, *, now: datetime
    ) -> tuple[list[Candidate], list[Any] | None]:
        """Return (candidates, where the engine list ended or None when it is exhausted).

        Raises EngineUnavailable (also for a missing index or a refused query: the engine's
        trouble, not the caller's) and NotFound for an unknown item.
        """
        if plan.item_vector:
            vector = self._source_item(req).get("embedding")
            if not vector:
                raise NotFound(f"item {req.item_id!r} has no embedding to find similar items with")
            body = build_similar_items_query(live.profile, context, item_id=req.item_id, item_vector=vector)
        else:
            body = build_feed_query(live.profile, context, now=now)
        with self._stage(req.kind, "engine"):
            try:
                result = self.engine.search(self.alias, body, timeout_ms=self._deadline_ms(req),
                                            named_scores=req.explain)
            except (NotFound, InvalidRequest) as exc:
                raise EngineUnavailable(str(exc)) from exc
        metrics.ENGINE_TOOK_SECONDS.labels(rpc=req.kind).observe(result.took_ms / 1000)
        components = [read_component_scores(live.profile, h.matched) for h in result.hits] if req.explain else None
        candidates = candidates_from_hits(result.hits, components=components)
        size = body.get("size", len(candidates))
        last = result.hits[-1] if result.hits else None
        after = list(last.sort) if last is not None and len(result.hits) >= size and last.sort else None
        return candidates, after

    def _rank(self, req: FeedRequest, plan: FeedPlan, live: LiveProfile, scorer: Any, represented: Any,
              candidates: list[Candidate], deg: Degradations) -> list[Candidate]:
        blend = live.profile.rerank.blend
        model_scores = None
        if candidates and plan.reranks and represented is not None and blend > 0:
            with self._stage(req.kind, "rerank"):
                ids = [c.item_id for c in candidates]
                vectors = self._new_item_vectors(scorer, ids, deg)
                try:
                    model_scores = scorer.score_represented(represented, ids, vectors)
                except Exception as exc:  # noqa: BLE001 - a model failure must not fail the feed
                    deg.add("rerank", "session model failed; engine order kept", cause=exc)
        ranked = rank_by_session_model(candidates, model_scores, blend=blend, explain=req.explain)
        diversity = live.profile.diversity
        return cap_categories(ranked, page_size=req.page_size, max_per_category=diversity.max_per_category,
                              category_level=diversity.category_level)

    def _new_item_vectors(self, scorer: Any, ids: list[str], deg: Degradations) -> dict[str, np.ndarray] | None:
        """Return the index's content vectors of candidates the model does not know (new listings)."""
        unknown = scorer.unknown(ids)
        if not unknown:
            return None
        try:
            return self.item_vectors.get_many(unknown, version=scorer.version)
        except Exception as exc:  # noqa: BLE001 - engine trouble or a malformed vector must not fail the feed
            deg.add("rerank", "new listings' vectors unreadable; they were scored from the catalogue mean", cause=exc)
            return None

    # -- first page -------------------------------------------------------------------------------
    def _first_page(self, req: FeedRequest, plan: FeedPlan, live: LiveProfile, deg: Degradations, *,
                    now: datetime) -> FeedPage:
        # One model for the whole request, even when a hot swap lands halfway through it.
        scorer = self.scorer
        with self._stage(req.kind, "viewer"):
            viewer = self._gather_viewer(req, deg)
        session = session_for_plan(plan, viewer.session, req.item_id)
        represented = vector = None
        if plan.session_vector:
            with self._stage(req.kind, "vector"):
                represented = self._represent_session(scorer, session, deg)
                vector = self._pick_query_vector(represented, viewer)
        seen = tuple(dict.fromkeys([*session, *([req.item_id] if req.item_id else [])]))
        state = self._new_state(req, live, seen, scorer)
        state.declared_at = viewer.segments.declared_at
        try:
            if plan.needs_item:
                self._source_item(req)
            candidates, state.engine_after = self._retrieve_candidates(
                req, plan, live, self._context(req, viewer, vector, seen=seen), now=now)
        except EngineUnavailable as exc:
            return self._fallback_page(req, state, deg, cause=exc)
        state.pending = [c.row() for c in self._rank(req, plan, live, scorer, represented, candidates, deg)]
        return self._serve(req, state, deg, save_now=not viewer.redis_ok)

    def _new_state(self, req: FeedRequest, live: LiveProfile, seen: tuple[str, ...], scorer: Any = None) -> FeedState:
        return FeedState(
            feed_id=self.pages.new_id(),
            profile_name=live.name,
            profile_version=live.version,
            model_version=scorer.version if scorer is not None else "",
            request_key=_request_key(req),
            served=list(seen),
        )

    # -- serving pages ----------------------------------------------------------------------------
    def _serve(self, req: FeedRequest, state: FeedState, deg: Degradations, *, save_now: bool = False) -> FeedPage:
        with self._stage(req.kind, "page"):
            rows, more = paginate(state, req.page_size)
            next_cursor = ""
            # A preview keeps no page state: it shows one first page, nobody scrolls it.
            if more and req.preview is None:
                try:
                    if save_now:
                        # Redis already failed this request: find out now rather than hand out
                        # a cursor that leads nowhere.
                        self.pages.save(state)
                    else:
                        self.pages.save_soon(state)
                    next_cursor = encode_cursor(Cursor(state.feed_id, state.pages, state.profile_version),
                                                secret=self.secret)
                except StoreUnavailable as exc:
                    deg.add("cursor", "no next page: the feed could not be saved (Redis down)", cause=exc)
        return FeedPage(
            items=[FeedItem(item_id, score, components or {}) for item_id, score, _, components in rows],
            next_cursor=next_cursor,
            profile_version=state.profile_version,
            model_version=state.model_version,
            served_from="fallback" if state.served_from == "fallback" else "engine",
            degradations=deg.items,
        )

    def _next_page(
        self, req: FeedRequest, plan: FeedPlan, cursor: Cursor, live: LiveProfile, deg: Degradations, *,
        now: datetime,
    ) -> FeedPage | None:
        """Return the next page of a saved feed, or None to restart from the first page (and say why)."""
        declared_key = self.segments.pref_key(req.user_id) if req.user_id else None
        try:
            state, declared_at = self.pages.load(cursor.feed_id, declared_key=declared_key)
        except StoreUnavailable as exc:
            deg.add("cursor", "saved feed unreadable (Redis down); restarted from the first page", cause=exc)
            return None
        if state is None:
            deg.add("cursor", "the cursor expired; restarted from the first page")
            return None
        if state.request_key != _request_key(req):
            raise InvalidRequest("cursor belongs to another feed (user, session, region, item or profile differ); "
                                 "send the request without a cursor to start from the first page")
        if req.user_id and declared_at != state.declared_at:
            deg.add("cursor", "your preferences changed; restarted from the first page")
            return None
        if state.profile_version != live.version:
            deg.add("cursor", f"profile {live.name!r} changed from version {state.profile_version} to "
                              f"{live.version}; restarted from the first page")
            return None
        if len(state.pending) < req.page_size and engine_has_more(state):
            self._refill(req, plan, live, state, deg, now=now)
        return self._serve(req, state, deg)

    def _refill(self, req: FeedRequest, plan: FeedPlan, live: LiveProfile, state: FeedState, deg: Degradations, *,
                now: datetime) -> None:
        """Append the engine's next candidates after the saved position, excluding everything served.

        When the list ran out under the profile's candidate window, the feed goes on with
        every eligible item competing (``widened``), from the top, still excluding all seen.
        """
        scorer = self.scorer
        viewer = self._gather_viewer(req, deg)
        session = session_for_plan(plan, viewer.session, req.item_id)
        represented = self._represent_session(scorer, session, deg) if plan.session_vector else None
        vector = self._pick_query_vector(represented, viewer) if plan.session_vector else None
        seen = tuple(dict.fromkeys(state.served + [row[0] for row in state.pending]))
        if state.engine_after is not None:
            score, item_id = state.engine_after
            after = SearchAfter(float(score), str(item_id))
        else:
            state.widened, after = True, None
        context = self._context(req, viewer, vector, seen=seen, after=after, widened=state.widened)
        try:
            candidates, state.engine_after = self._retrieve_candidates(req, plan, live, context, now=now)
        except EngineUnavailable as exc:
            deg.add("engine", "could not fetch more items; the saved feed continues", cause=exc)
            return
        state.pending += [c.row() for c in self._rank(req, plan, live, scorer, represented, candidates, deg)]
        if scorer is not None:
            state.model_version = scorer.version  # the model that ranked what this refill added

    def _fallback_page(self, req: FeedRequest, state: FeedState, deg: Degradations, *, cause: BaseException | str,
                       stage: str = "engine",
                       reason: str = "the search engine did not answer in time; served the popular fallback",
                       ) -> FeedPage:
        deg.add(stage, reason, cause=cause)
        scope = normalize_cohort_value(req.region) or ""
        try:
            ids = self.popular.read(scope or None)
            self._remember_popular(scope, ids)
        except StoreUnavailable as exc:
            with self._popular_lock:
                ids = self._popular_copy.get(scope) or self._popular_copy.get("", [])
            deg.add("fallback", "Redis down too; served the in-process copy of the popular list", cause=exc)
        state.pending = popular_rows(ids, exclude=set(state.served))
        state.served_from = "fallback"
        state.engine_after = None
        return self._serve(req, state, deg)

    def _remember_popular(self, scope: str, ids: list[str]) -> None:
        with self._popular_lock:
            self._popular_copy[scope] = ids
            self._popular_copy.move_to_end(scope)
            while len(self._popular_copy) > _POPULAR_COPIES:
                self._popular_copy.popitem(last=False)

    # -- start-up ---------------------------------------------------------------------------------
    def warm_fallback(self, regions: tuple[str, ...] = ()) -> None:
        """Copy the popular lists into memory, so the fallback survives Redis being down too."""
        for scope in ("", *regions):
            try:
                self._remember_popular(scope, self.popular.read(scope or None))
            except StoreUnavailable as exc:
                _log.warning("popular fallback not copied for %r: %s", scope or "global", exc)

    def warm(self, *, searches: int = 5) -> None:
        """Run a few first pages so caches (global ordinals, HNSW graph, torch kernels) load before traffic.

        Called before the server takes calls: the warm-up searches get the engine client's own
        timeout, not the feed deadline, because the first ones after an index swap are slow and
        a search cut off at the deadline would leave the caches cold.
        """
        started = time.perf_counter()
        served = 0
        known = self.scorer.vocab.to_list()[:200] if self.scorer is not None else []
        deadline_ms, self.engine_timeout_ms = self.engine_timeout_ms, self.settings.engine.timeout_ms
        # Warm-up feeds are nobody's impressions.
        counts, self.experiment_counts = self.experiment_counts, None
        try:
            for n in range(searches):
                # A session of known items, so kNN and the rerank run too.
                session = tuple(known[n * 3:(n + 1) * 3])
                try:
                    page = self.feed(FeedRequest(kind="home", session_id=f"warm-up-{n}", page_size=5,
                                                 recent_item_ids=session))
                except Exception as exc:  # noqa: BLE001 - warming is best effort; serving reports real faults
                    _log.warning("warm-up feed failed: %s", exc)
                    continue
                served += page.served_from == "engine"
        finally:
            self.engine_timeout_ms = deadline_ms
            self.experiment_counts = counts
        _log.info("warmed up: %d of %d feeds engine-served in %.0f ms", served, searches,
                  (time.perf_counter() - started) * 1000)

    @contextmanager
    def _stage(self, rpc: str, stage: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            metrics.STAGE_SECONDS.labels(rpc=rpc, stage=stage).observe(time.perf_counter() - started)
