"""Per-variant counts of A/B experiments, counting only the viewers exposed to an experiment.

A viewer (user id, else session id) is *exposed* to an experiment once a page was served to
them under it. Every served item is an impression; an event (COUNTED_EVENTS) counts to the
viewer's variant only when the viewer was exposed before it, so the clicks of viewers who never
got an experiment's feed (they came from search, or only saw other profiles) credit no variant.
Keys: ``recommender.stores.experiments``.

Nothing here is a Redis round trip on a request: ``served`` (the feed path) and ``add_events``
(RecordEvents) update memory under a lock; ``flush`` (a background thread, every ``flush_ms``)
sends everything in one MULTI/EXEC pipeline, in this order:

1. the counts already decided: impressions, and the events of viewers this process exposed
   (seen in memory when the event arrived: pending, or in the flush in progress);
2. every other event, counted by a script only if its viewer is in the variant's exposed set
   (exposed by any replica and flushed before this flush);
3. the new exposures, added by a script to the exposed sets, which also adds the viewers it
   newly added to the variant's ``exposed_viewers`` count: the number of distinct viewers
   served. It adds nothing once the experiment is stopped, so a replica still serving it for
   one poll interval does not re-create the sets the stop deleted.

Events resolve before the exposures are written, so a viewer exposed after their event (in
the same interval) does not count it. A viewer exposed by another replica less than a flush
interval before their event may be missed: at most one interval per viewer.

Redis down: a flush raises StoreUnavailable and keeps everything for the next one, so a short
outage loses no count and RecordEvents is never slowed or failed by counting; a crash loses at
most one interval.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Iterable

import redis

from recommender.errors import InvalidRequest, StoreUnavailable
from recommender.experiments import COUNTED_EVENTS, EXPOSED_VIEWERS
from recommender.settings import RedisSettings
from recommender.stores._redis import open_redis, redis_errors_translated
from recommender.stores.experiments import counts_key, experiments_key, exposed_key

__all__ = ["ExperimentCounter"]

_log = logging.getLogger(__name__)

# KEYS: exposed set, counts hash. ARGV: (viewer, counts field, n) triples. Adds n to the field
# for each triple whose viewer is in the exposed set. Returns the number of triples counted.
_COUNT_IF_EXPOSED_LUA = """
local counted = 0
for i = 1, #ARGV, 3 do
  if redis.call('SISMEMBER', KEYS[1], ARGV[i]) == 1 then
    redis.call('HINCRBY', KEYS[2], ARGV[i + 1], ARGV[i + 2])
    counted = counted + 1
  end
end
return counted
"""

# KEYS: experiments hash, exposed set, counts hash. ARGV: experiment name, exposed_viewers
# field, viewers. While the experiment runs, adds the viewers to the set and the number newly
# added to the field. Returns that number; 0 when the experiment is stopped or unknown.
_EXPOSE_LUA = """
local stored = redis.call('HGET', KEYS[1], ARGV[1])
if not stored or cjson.decode(stored)['state'] ~= 'running' then
  return 0
end
local added = 0
for i = 3, #ARGV do
  added = added + redis.call('SADD', KEYS[2], ARGV[i])
end
if added > 0 then
  redis.call('HINCRBY', KEYS[3], ARGV[2], added)
end
return added
"""

# (experiment, version) -> viewers
_Exposures = dict[tuple[str, str], set[str]]


class ExperimentCounter:
    """Counts impressions, exposures and events per variant in memory and writes them to Redis in
    one pipelined round trip every ``flush_ms`` (see the module docstring for what counts)."""

    def __init__(self, settings: RedisSettings, *, client: redis.Redis | None = None, flush_ms: int = 1000):
        self.settings = settings
        self.client = client or open_redis(settings)
        self.flush_s = flush_ms / 1000
        self._prefix = settings.key_prefix
        # (experiment, version, count) -> n, decided: impressions and events of exposed viewers.
        self._counts: Counter[tuple[str, str, str]] = Counter()
        # (experiment, version, viewer, event type) -> n, counted at the flush if the viewer is exposed.
        self._unresolved: Counter[tuple[str, str, str, str]] = Counter()
        self._exposed: _Exposures = {}
        # The exposures of the flush in progress: still "exposed in this process" until Redis has them.
        self._flushing: _Exposures = {}
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._count_if_exposed = self.client.register_script(_COUNT_IF_EXPOSED_LUA)
        self._expose = self.client.register_script(_EXPOSE_LUA)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def served(self, experiment: str, version: str, viewer: str, items: int) -> None:
        """Count a page of ``items`` served by variant ``version`` of ``experiment`` to ``viewer``:
        its impressions, and ``viewer`` as exposed ("" is no viewer: never exposed)."""
        with self._lock:
            if items > 0:
                self._counts[(experiment, version, "impressions")] += items
            if viewer:
                self._exposed.setdefault((experiment, version), set()).add(viewer)

    def add_events(self, events: Iterable[tuple[str, str, str, str]]) -> None:
        """Count each ``(experiment, version, viewer, event type)`` to its variant if ``viewer`` was
        exposed to it before: decided now when this process exposed them, else at the next flush.

        Raises InvalidRequest, counting none, when an event type is not one of COUNTED_EVENTS.
        """
        events = list(events)
        for _, _, _, event_type in events:
            if event_type not in COUNTED_EVENTS:
                raise InvalidRequest(f"event type {event_type!r} is not counted in experiments; "
                                     f"count one of {list(COUNTED_EVENTS)}")
        with self._lock:
            for experiment, version, viewer, event_type in events:
                variant = (experiment, version)
                if viewer in self._exposed.get(variant, ()) or viewer in self._flushing.get(variant, ()):
                    self._counts[(experiment, version, event_type)] += 1
                else:
                    self._unresolved[(experiment, version, viewer, event_type)] += 1

    def flush(self) -> None:
        """Write the pending counts and exposures to Redis; raises StoreUnavailable (they stay
        pending, for the next flush) when it is down."""
        with self._flush_lock:
            with self._lock:
                counts, self._counts = self._counts, Counter()
                unresolved, self._unresolved = self._unresolved, Counter()
                exposed, self._exposed = self._exposed, {}
                self._flushing = exposed
            try:
                if counts or unresolved or exposed:
                    self._write(counts, unresolved, exposed)
            except StoreUnavailable:
                with self._lock:
                    self._counts.update(counts)
                    self._unresolved.update(unresolved)
                    for variant, viewers in exposed.items():
                        self._exposed.setdefault(variant, set()).update(viewers)
                raise
            finally:
                with self._lock:
                    self._flushing = {}

    def _write(self, counts: Counter[tuple[str, str, str]], unresolved: Counter[tuple[str, str, str, str]],
               exposed: _Exposures) -> None:
        """Send the three steps of the module docstring in one MULTI/EXEC round trip."""
        prefix = self._prefix
        by_variant: dict[tuple[str, str], list[str]] = {}
        for (experiment, version, viewer, event_type), n in unresolved.items():
            by_variant.setdefault((experiment, version), []).extend((viewer, f"{version}:{event_type}", str(n)))
        with redis_errors_translated("writing experiment counts and exposures", self.settings.url):
            pipe = self.client.pipeline(transaction=True)
            for (experiment, version, count), n in counts.items():
                pipe.hincrby(counts_key(prefix, experiment), f"{version}:{count}", n)
            for (experiment, version), triples in by_variant.items():
                self._count_if_exposed(keys=[exposed_key(prefix, experiment, version), counts_key(prefix, experiment)],
                                       args=triples, client=pipe)
            for (experiment, version), viewers in exposed.items():
                self._expose(keys=[experiments_key(prefix), exposed_key(prefix, experiment, version),
                                   counts_key(prefix, experiment)],
                             args=[experiment, f"{version}:{EXPOSED_VIEWERS}", *sorted(viewers)], client=pipe)
            pipe.execute()

    def start(self) -> None:
        """Start flushing every ``flush_ms`` in a background thread."""
        self._thread = threading.Thread(target=self._run, name="experiment-counts", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and flush what is pending (logged when Redis is down)."""
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=2)
        try:
            self.flush()
        except StoreUnavailable as exc:
            _log.warning("experiment counts not flushed at stop: %s", exc)

    def _run(self) -> None:
        while not self._stop.wait(self.flush_s):
            try:
                self.flush()
            except StoreUnavailable as exc:
                _log.warning("experiment counts kept for the next flush: %s", exc)
