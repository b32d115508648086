"""Near-real-time indexing: consume the event stream, update popularity children and item status.

One batch:
1. take entries: this consumer's own unacknowledged ones first (after a restart), then any
   other consumer's entries idle longer than ``claim_idle_ms`` (it crashed), then new ones;
2. parse each entry (``recommender.events.parse_event``); malformed ones, and events for
   items the index does not hold, go to the dead-letter stream with the reason;
3. status events become one partial update of the parent each;
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
from recommender.errors import HotfeedError, InvalidRequest, NotFound
from recommender.events import InteractionEvent, StatusEvent, parse_event
from recommender.settings import Settings
from recommender.stores.cohort_maxima import CohortMaxima
from recommender.stores.events import INDEXER_GROUP, EventStream, StreamEntry
from recommender.stores.segments import SegmentReader
from indexer.documents import POPULARITY_RELATION, child_doc_id

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
    children_written: int = 0
    seconds: float = 0.0
    dead_reasons: list[str] = field(default_factory=list)

    def add(self, other: "BatchReport") -> None:
        for name in ("read", "acked", "dead", "failed", "status_updates", "children_written", "seconds"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.dead_reasons += other.dead_reasons[: max(0, 20 - len(self.dead_reasons))]

    def summary(self) -> str:
        rate = self.read / self.seconds if self.seconds else 0.0
        return (
            f"{self.read:,} events read, {self.acked:,} acknowledged, {self.dead:,} dead-lettered, "
            f"{self.failed:,} left pending for retry; {self.status_updates:,} status updates, "
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
        self.stream.ensure_group(GROUP)
        self._recovered = False

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
        """Process batches until the stream has nothing new; return the summed report."""
        total = BatchReport()
        batches = 0
        while max_batches is None or batches < max_batches:
            report = self.run_once(block_ms=block_ms)
            total.add(report)
            batches += 1
            if report.read == 0:
                break
        return total

    def run_forever(self, stop: threading.Event, *, block_ms: int = 1000) -> BatchReport:
        """Process batches until ``stop`` is set; engine or Redis trouble is logged and retried."""
        total = BatchReport()
        while not stop.is_set():
            try:
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
        statuses: list[tuple[StreamEntry, StatusEvent]] = []
        for entry in entries:
            try:
                event = parse_event(json.loads(entry.payload), now_s=now_s)
            except (ValueError, InvalidRequest) as exc:
                dead.append((entry, f"malformed: {exc}"))
                continue
            (statuses if isinstance(event, StatusEvent) else interactions).append((entry, event))

        acked: list[str] = []
        for entry, event in statuses:
            try:
                self.engine.update(self.index, event.item_id, {"status": event.status})
                acked.append(entry.id)
                report.status_updates += 1
            except NotFound:
                dead.append((entry, f"unknown item {event.item_id!r}"))

        if interactions:
            ok_ids, unknown, written, refused = self._apply_interactions(interactions, now_s=now_s)
            dead += refused
            acked += ok_ids
            dead += [(entry, f"unknown item {event.item_id!r}") for entry, event in unknown]
            report.children_written = written
            report.failed = len(interactions) - len(ok_ids) - len(unknown) - len(refused)

        self.stream.dead_letter(GROUP, dead)
        self.stream.ack(GROUP, acked)
        report.acked = len(acked) + len(dead)
        report.dead = len(dead)
        report.dead_reasons = [reason for _, reason in dead[:20]]
        return report

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
