"""Near-real-time indexing: consume the event stream, upsert listings, update popularity children
and item status.

One batch:
1. take entries: this consumer's own unacknowledged ones first (after a restart), then any
   other consumer's entries idle longer than ``claim_idle_ms`` (it crashed), then new ones;
2. parse each entry (``recommender.events.parse_event``); malformed ones, and events for
   items the index does not hold, go to the dead-letter stream with the reason;
3. item and status events are coalesced per item in stream order (later fields win): a new
   listing becomes one full parent document with a content vector from the serving model
   (listing_vectors.py), an edit, bump or status change one partial update; all of them go
   in one bulk request, before the interactions, so a listing's first clicks in the same
   batch find it. A new listing's first events must carry every NEW_ITEM_FIELDS field;
4. interaction events are grouped by (item, cohort): the viewer's cohorts come from the
   segment store (anonymous viewers: ``all`` and their platform), each child's stored
   decayed weight is decayed to now and the batch's weights are added, windows counts are
   advanced, and the score is the weight over the cohort's maximum (see cohort_maxima);
5. the changed children are written in one bulk request, and an entry is acknowledged only
   once every write it caused was accepted. Entries whose writes failed stay pending and
   are replayed, so delivery is at-least-once (a replayed view counts twice; a lost one
   never happens).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field

from recommender.decay import half_life_decay
from recommender.cohorts import ALL_COHORT, normalize_cohort_value, platform_cohort
from recommender.engine import Doc, SearchEngine
from recommender.errors import EngineUnavailable, HotfeedError, InvalidRequest
from recommender.events import NEW_ITEM_FIELDS, InteractionEvent, ItemEvent, StatusEvent, parse_event
from recommender.model.content import Listing
from recommender.settings import Settings
from recommender.stores.cohort_maxima import CohortMaxima
from recommender.stores.events import INDEXER_GROUP, EventStream, StreamEntry
from recommender.stores.segments import SegmentReader
from indexer.documents import POPULARITY_RELATION, category_levels, child_doc_id, item_source
from indexer.listing_vectors import ListingVectors

__all__ = ["BatchReport", "IncrementalIndexer", "default_consumer_name"]

_log = logging.getLogger(__name__)
_WINDOWS_S = {"count_1h": 3600, "count_24h": 86_400, "count_7d": 7 * 86_400}
GROUP = INDEXER_GROUP


def default_consumer_name() -> str:
    """Return a consumer name unique to this host and process."""
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass
class BatchReport:
    read: int = 0
    acked: int = 0
    dead: int = 0
    failed: int = 0
    status_updates: int = 0
    items_created: int = 0
    items_updated: int = 0
    children_written: int = 0
    seconds: float = 0.0
    dead_reasons: list[str] = field(default_factory=list)

    def add(self, other: "BatchReport") -> None:
        for name in ("read", "acked", "dead", "failed", "status_updates", "items_created", "items_updated",
                     "children_written", "seconds"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.dead_reasons += other.dead_reasons[: max(0, 20 - len(self.dead_reasons))]

    def summary(self) -> str:
        rate = self.read / self.seconds if self.seconds else 0.0
        return (
            f"{self.read:,} events read, {self.acked:,} acknowledged, {self.dead:,} dead-lettered, "
            f"{self.failed:,} left pending for retry; {self.items_created:,} listings created, "
            f"{self.items_updated:,} edited, {self.status_updates:,} status updates, "
            f"{self.children_written:,} popularity docs written in {self.seconds:.1f}s ({rate:,.0f} events/s)"
        )


class IncrementalIndexer:
    def __init__(
        self,
        engine: SearchEngine,
        stream: EventStream,
        segments: SegmentReader,
        maxima: CohortMaxima,
        settings: Settings,
        *,
        consumer: str | None = None,
        batch_size: int = 500,
        claim_idle_ms: int = 30_000,
        listing_vectors: ListingVectors | None = None,
        drain_retries: int = 3,
        consumer_idle_ms: int = 600_000,
    ):
        self.engine = engine
        self.stream = stream
        self.segments = segments
        self.maxima = maxima
        self.settings = settings
        self.index = settings.engine.index_alias
        self.consumer = consumer or default_consumer_name()
        self.batch_size = batch_size
        self.claim_idle_ms = claim_idle_ms
        self.weights = settings.indexer.event_weights
        self.half_life_s = settings.indexer.popularity_half_life_h * 3600
        self.listing_vectors = listing_vectors or ListingVectors(settings, client=stream.client)
        self.drain_retries = drain_retries
        self.consumer_idle_ms = consumer_idle_ms
        self.stream.ensure_group(GROUP)
        self._recovered = False
        self._join: bool | None = None
        self._pruned_at = 0.0
        self.prune_consumers()

    def prune_consumers(self) -> list[str]:
        """Remove consumers of the group idle for ``consumer_idle_ms`` with nothing pending (processes that
        died or were replaced: each process has its own name); return their names."""
        self._pruned_at = time.monotonic()
        removed = self.stream.remove_idle_consumers(GROUP, idle_ms=self.consumer_idle_ms, keep=self.consumer)
        if removed:
            _log.info("removed %d idle consumers with nothing pending: %s", len(removed), ", ".join(removed[:10]))
        return removed

    # -- taking entries ---------------------------------------------------------------------------
    def _take(self, block_ms: int) -> list[StreamEntry]:
        if not self._recovered:
            own = self.stream.read_own_pending(GROUP, self.consumer, count=self.batch_size)
            if own:
                return own
            self._recovered = True
        stale = self.stream.claim_stale(GROUP, self.consumer, min_idle_ms=self.claim_idle_ms, count=self.batch_size)
        if stale:
            _log.info("claimed %d stale entries from crashed consumers", len(stale))
            return stale
        return self.stream.read_new(GROUP, self.consumer, count=self.batch_size, block_ms=block_ms)

    def run_once(self, *, block_ms: int = 1000) -> BatchReport:
        """Process one batch (waiting up to ``block_ms`` for new entries) and return its report."""
        started = time.monotonic()
        entries = self._take(block_ms)
        report = self.process(entries) if entries else BatchReport()
        report.seconds = time.monotonic() - started
        return report

    def run_until_idle(self, *, block_ms: int = 200, max_batches: int | None = None) -> BatchReport:
        """Process batches until the stream has nothing new, then drain: this consumer's entries whose
        writes failed are replayed up to ``drain_retries`` times (backing off 1, 2, 4 s). Return the
        summed report; its ``failed`` is what is still pending for this consumer at the end."""
        total = BatchReport()
        batches = retries = 0
        while max_batches is None or batches < max_batches:
            try:
                report = self.run_once(block_ms=block_ms)
            except EngineUnavailable as exc:  # what was read stays pending; the drain below replays it
                _log.error("incremental batch failed: %s", exc)
                report = BatchReport()
            total.add(report)
            batches += 1
            if report.read:
                continue
            pending = self.stream.read_own_pending(GROUP, self.consumer, count=self.batch_size)
            if not pending or retries >= self.drain_retries:
                break
            time.sleep(2 ** retries)
            retries += 1
            _log.info("draining: replaying %d of this consumer's pending events (try %d of %d)", len(pending),
                      retries, self.drain_retries)
            try:
                total.add(self.process(pending))
            except EngineUnavailable as exc:
                _log.error("replaying pending events failed: %s", exc)
        total.failed = len(self.stream.read_own_pending(GROUP, self.consumer, count=self.batch_size))
        return total

    def run_forever(self, stop: threading.Event, *, block_ms: int = 1000) -> BatchReport:
        """Process batches until ``stop`` is set; engine or Redis trouble is logged and retried."""
        total = BatchReport()
        while not stop.is_set():
            try:
                if time.monotonic() - self._pruned_at > self.consumer_idle_ms / 1000:
                    self.prune_consumers()
                total.add(self.run_once(block_ms=block_ms))
            except HotfeedError as exc:
                _log.error("incremental batch failed, retrying in 2s: %s", exc)
                stop.wait(2)
        return total

    # -- one batch ----------------------------------------------------------------------------------
    def process(self, entries: list[StreamEntry]) -> BatchReport:
        """Apply a batch of entries to the index; acknowledge what was applied."""
        report = BatchReport(read=len(entries))
        now_s = time.time()
        dead: list[tuple[StreamEntry, str]] = []
        interactions: list[tuple[StreamEntry, InteractionEvent]] = []
        listings: list[tuple[StreamEntry, ItemEvent | StatusEvent]] = []
        for entry in entries:
            try:
                event = parse_event(json.loads(entry.payload), now_s=now_s)
            except (ValueError, InvalidRequest) as exc:
                dead.append((entry, f"malformed: {exc}"))
                continue
            (interactions if isinstance(event, InteractionEvent) else listings).append((entry, event))

        acked: list[str] = []
        if listings:
            ok_ids, refused = self._apply_listings(listings, report)
            acked += ok_ids
            dead += refused
            report.failed += len(listings) - len(ok_ids) - len(refused)

        if interactions:
            ok_ids, unknown, written, refused = self._apply_interactions(interactions, now_s=now_s)
            dead += refused
            acked += ok_ids
            dead += [(entry, f"unknown item {event.item_id!r}") for entry, event in unknown]
            report.children_written = written
            report.failed += len(interactions) - len(ok_ids) - len(unknown) - len(refused)

        self.stream.dead_letter(GROUP, dead)
        self.stream.ack(GROUP, acked)
        report.acked = len(acked) + len(dead)
        report.dead = len(dead)
        report.dead_reasons = [reason for _, reason in dead[:20]]
        return report

    def _has_join(self) -> bool:
        if self._join is None:
            self._join = self.engine.capabilities().join
        return self._join

    def _apply_listings(
        self, batch: list[tuple[StreamEntry, ItemEvent | StatusEvent]], report: BatchReport
    ) -> tuple[list[str], list[tuple[StreamEntry, str]]]:
        """Write item and status events, coalesced per item; return (acknowledged ids, dead entries + reason)."""
        by_item: dict[str, list[tuple[StreamEntry, ItemEvent | StatusEvent]]] = defaultdict(list)
        for entry, event in batch:
            by_item[event.item_id].append((entry, event))
        ids = list(by_item)
        stored = self.engine.mget(self.index, [(item_id, None) for item_id in ids],
                                  fields=["title", "category", "price", "region"])
        dead: list[tuple[StreamEntry, str]] = []
        merged_of: dict[str, dict] = {}
        new: list[str] = []
        for item_id, old in zip(ids, stored):
            events = by_item[item_id]
            merged: dict = {}
            for _, event in events:
                merged.update(event.changes() if isinstance(event, ItemEvent) else {"status": event.status})
            if old is None:
                missing = [name for name in NEW_ITEM_FIELDS if name not in merged]
                if missing:
                    reason = (f"unknown item {item_id!r}" if all(isinstance(e, StatusEvent) for _, e in events) else
                              f"new item {item_id!r} lacks {missing}: a listing's first event must carry "
                              f"{list(NEW_ITEM_FIELDS)}")
                    dead += [(entry, reason) for entry, _ in events]
                    continue
                merged.setdefault("status", "active")
                merged.setdefault("created_at", _entry_time_s(events[0][0]))
                merged.setdefault("bumped_at", merged["created_at"])
                new.append(item_id)
            merged_of[item_id] = merged

        # Content vectors: every new listing, and edited listings the model has no learned vector
        # for whose title, category, price or region changed.
        scorer = self.listing_vectors.scorer()
        content_fields = ("title", "category", "price", "region")
        stored_of = dict(zip(ids, stored))
        unknown = set(scorer.unknown(list(merged_of))) if scorer is not None else set()
        needs_vector = [item_id for item_id in merged_of if item_id in new or (
            item_id in unknown and any(name in merged_of[item_id] for name in content_fields))]
        listings = [_listing({**(stored_of[i] or {}), **merged_of[i]}) for i in needs_vector]
        vectors, version = self.listing_vectors.encode(listings)
        vector_of = {i: vectors[n].round(6).tolist() for n, i in enumerate(needs_vector)} if vectors is not None else {}

        docs: list[Doc] = []
        for item_id, merged in merged_of.items():
            if item_id in new:
                docs.append(Doc(item_id, item_source(
                    item_id=item_id, title=merged["title"], category=merged["category"], price=merged["price"],
                    region=merged["region"], seller_id=merged["seller_id"], status=merged["status"],
                    created_at=int(merged["created_at"] * 1000), bumped_at=int(merged["bumped_at"] * 1000),
                    embedding=vector_of.get(item_id), model_version=version, join=self._has_join(),
                )))
                continue
            partial = {k: (int(v * 1000) if k in ("created_at", "bumped_at") else v) for k, v in merged.items()}
            if "category" in partial:
                partial["category_levels"] = category_levels(partial["category"])
            if item_id in vector_of:
                partial["embedding"], partial["model_version"] = vector_of[item_id], version
            docs.append(Doc(item_id, partial, partial=True))
        result = self.engine.bulk_upsert(self.index, docs, max_retries=self.settings.indexer.bulk_max_retries)
        reasons = dict(result.failed)
        refused = set(result.refused)
        acked: list[str] = []
        for item_id in merged_of:
            entries = by_item[item_id]
            if item_id in refused:
                dead += [(entry, f"engine refused item {item_id[:80]!r}: {reasons[item_id]}") for entry, _ in entries]
            elif item_id not in reasons:
                acked += [entry.id for entry, _ in entries]
                report.status_updates += sum(isinstance(e, StatusEvent) for _, e in entries)
                if item_id in new:
                    report.items_created += 1
                elif any(isinstance(e, ItemEvent) for _, e in entries):
                    report.items_updated += 1
        if len(reasons) > len(refused):
            _log.warning("listing writes failed for %d items; their events stay pending and are replayed",
                         len(reasons) - len(refused))
        return acked, dead

    def _viewer_cohorts(self, events: list[InteractionEvent]) -> list[tuple[str, ...]]:
        users = sorted({e.user_id for e in events if e.user_id})
        known = dict(zip(users, self.segments.segments_for_many(users))) if users else {}
        out = []
        for event in events:
            cohorts = set(known[event.user_id].cohorts) if event.user_id else set()
            cohorts.add(ALL_COHORT)
            if normalize_cohort_value(event.platform):
                cohorts.add(platform_cohort(event.platform))
            out.append(tuple(sorted(cohorts)))
        return out

    def _apply_interactions(
        self, batch: list[tuple[StreamEntry, InteractionEvent]], *, now_s: float
    ) -> tuple[list[str], list[tuple[StreamEntry, InteractionEvent]], int, list[tuple[StreamEntry, str]]]:
        """Return (acknowledged entry ids, entries of unknown items, children written, refused entries + reason)."""
        items = sorted({event.item_id for _, event in batch})
        parents = self.engine.mget(self.index, [(item, None) for item in items])
        existing = {item for item, source in zip(items, parents) if source is not None}
        unknown = [(entry, event) for entry, event in batch if event.item_id not in existing]
        known = [(entry, event) for entry, event in batch if event.item_id in existing]
        if not known:
            return [], unknown, 0, []

        cohorts_of = self._viewer_cohorts([event for _, event in known])
        added: dict[tuple[str, str], float] = defaultdict(float)
        window_counts: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: dict.fromkeys(_WINDOWS_S, 0))
        # Which entries each child document carries, so a refused child blames only them.
        entries_of: dict[str, list[StreamEntry]] = defaultdict(list)
        for (entry, event), cohorts in zip(known, cohorts_of):
            age_s = max(now_s - event.ts, 0.0)
            weight = self.weights.get(event.event_type, 0.0) * half_life_decay(age_s, self.half_life_s)
            for cohort in cohorts:
                key = (event.item_id, cohort)
                entries_of[child_doc_id(*key)].append(entry)
                added[key] += weight
                for name, span in _WINDOWS_S.items():
                    window_counts[key][name] += int(age_s < span)

        keys = sorted(added)
        stored = self.engine.mget(self.index, [(child_doc_id(item, cohort), item) for item, cohort in keys])
        maxima = self.maxima.read([cohort for _, cohort in keys], now_s=now_s)
        raised: dict[str, float] = {}
        docs: list[Doc] = []
        for (item, cohort), old in zip(keys, stored):
            weight = added[(item, cohort)]
            counts = dict(window_counts[(item, cohort)])
            if old:
                age_s = max(now_s - float(old.get("updated_at", now_s * 1000)) / 1000, 0.0)
                weight += float(old.get("decayed_weight", 0.0)) * half_life_decay(age_s, self.half_life_s)
                for name, span in _WINDOWS_S.items():
                    # A stored count older than its window has expired; otherwise it still counts.
                    counts[name] += int(old.get(name, 0)) if age_s < span else 0
            top = max(maxima.get(cohort, 0.0), raised.get(cohort, 0.0))
            if weight > top:
                raised[cohort] = top = weight
            docs.append(
                Doc(
                    child_doc_id(item, cohort),
                    {
                        "relation": {"name": POPULARITY_RELATION, "parent": item},
                        "cohort": cohort,
                        "score": round(weight / top, 6) if top > 0 else 0.0,
                        "decayed_weight": round(weight, 6),
                        **counts,
                        "updated_at": int(now_s * 1000),
                    },
                    routing=item,
                )
            )
        result = self.engine.bulk_upsert(self.index, docs, max_retries=self.settings.indexer.bulk_max_retries)
        self.maxima.raise_to({c: w for c, w in raised.items()}, now_s=now_s)
        # A document the engine refused (4xx) can never be written: its events go to the dead
        # letters with the engine's reason, and only they. Other failures stay pending and
        # are replayed; every entry with no failed document is acknowledged.
        reasons = dict(result.failed)
        refused: dict[str, tuple[StreamEntry, str]] = {}
        for doc_id in result.refused:
            for entry in entries_of.get(doc_id, ()):
                refused.setdefault(entry.id, (entry, f"engine refused popularity document {doc_id[:80]!r}: {reasons[doc_id]}"))
        refused_docs = set(result.refused)
        pending = {e.id for doc_id in reasons if doc_id not in refused_docs for e in entries_of.get(doc_id, ())}
        pending -= set(refused)
        if pending:
            _log.warning("popularity writes failed for %d events; they stay pending and are replayed", len(pending))
        ok_ids = [entry.id for entry, _ in known if entry.id not in pending and entry.id not in refused]
        return ok_ids, unknown, result.ok, list(refused.values())


def _entry_time_s(entry: StreamEntry) -> float:
    """Return when Redis received a stream entry (its id is "<unix ms>-<sequence>")."""
    try:
        return int(entry.id.split("-", 1)[0]) / 1000
    except ValueError:
        return time.time()


def _listing(fields: dict) -> Listing:
    price = fields.get("price")
    return Listing(title=str(fields.get("title") or ""), category=str(fields.get("category") or ""),
                   price=float(price) if isinstance(price, (int, float)) else None,
                   region=str(fields.get("region") or ""))
