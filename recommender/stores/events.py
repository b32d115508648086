"""The event stream in Redis: producers append raw JSON events; the indexer consumes them in a
consumer group and acknowledges an entry only after the engine accepted its writes.

Keys (under settings.redis.key_prefix): ``events`` (the stream), ``events:dead`` (malformed
entries with the reason). A consumer that crashed leaves its entries pending; ``claim_stale``
hands them to a live consumer, so nothing is lost between read and acknowledge.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis

from recommender.settings import RedisSettings
from recommender.stores._redis import open_redis, redis_errors_translated

__all__ = ["StreamEntry", "EventStream", "INDEXER_GROUP"]

# The consumer group of the incremental indexer (its consumers share the stream's entries).
INDEXER_GROUP = "indexer"

# Bound the stream so a stopped indexer cannot fill Redis; far above any sane backlog.
_MAXLEN = 5_000_000


@dataclass(frozen=True)
class StreamEntry:
    id: str
    payload: str  # the raw JSON text as the producer sent it


class EventStream:
    def __init__(self, settings: RedisSettings, *, client: redis.Redis | None = None):
        self.settings = settings
        self.client = client or open_redis(settings)
        self.key = f"{settings.key_prefix}events"
        self.dead_key = f"{settings.key_prefix}events:dead"

    def _translated(self, what: str):
        return redis_errors_translated(what, self.settings.url)

    def append(self, events: Sequence[dict[str, Any] | str]) -> list[str]:
        """Append events (dicts or JSON text) and return their stream ids."""
        with self._translated("appending events"):
            pipe = self.client.pipeline(transaction=False)
            for event in events:
                payload = event if isinstance(event, str) else json.dumps(event, separators=(",", ":"))
                pipe.xadd(self.key, {"e": payload}, maxlen=_MAXLEN, approximate=True)
            return list(pipe.execute())

    def ensure_group(self, group: str) -> None:
        """Create the consumer group at the start of the stream if it does not exist yet."""
        with self._translated("creating the consumer group"):
            try:
                self.client.xgroup_create(self.key, group, id="0", mkstream=True)
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    @staticmethod
    def _entries(rows: list) -> list[StreamEntry]:
        return [StreamEntry(entry_id, fields.get("e", "")) for entry_id, fields in rows if fields is not None]

    def read_new(self, group: str, consumer: str, *, count: int, block_ms: int) -> list[StreamEntry]:
        """Return up to ``count`` entries never delivered to the group, waiting up to ``block_ms``."""
        with self._translated("reading events"):
            answer = self.client.xreadgroup(group, consumer, {self.key: ">"}, count=count, block=block_ms)
        return self._entries(answer[0][1]) if answer else []

    def read_own_pending(self, group: str, consumer: str, *, count: int) -> list[StreamEntry]:
        """Return entries delivered to this consumer and not yet acknowledged (after a restart)."""
        with self._translated("reading pending events"):
            answer = self.client.xreadgroup(group, consumer, {self.key: "0"}, count=count)
        return self._entries(answer[0][1]) if answer else []

    def claim_stale(self, group: str, consumer: str, *, min_idle_ms: int, count: int) -> list[StreamEntry]:
        """Return entries pending longer than ``min_idle_ms`` at any consumer, now claimed by this one."""
        with self._translated("claiming stale events"):
            answer = self.client.xautoclaim(self.key, group, consumer, min_idle_time=min_idle_ms, start_id="0-0",
                                            count=count)
        return self._entries(answer[1])

    def remove_idle_consumers(self, group: str, *, idle_ms: int, keep: str) -> list[str]:
        """Remove the group's consumers idle longer than ``idle_ms`` that hold no pending entry (a dead
        consumer's entries are claimed first, so nothing is lost); never ``keep``. Return their names."""
        with self._translated("removing idle consumers"):
            try:
                consumers = self.client.xinfo_consumers(self.key, group)
            except redis.ResponseError:
                return []
            removed = []
            for consumer in consumers:
                name = consumer["name"]
                if name != keep and int(consumer.get("pending", 0)) == 0 and int(consumer.get("idle", 0)) > idle_ms:
                    self.client.xgroup_delconsumer(self.key, group, name)
                    removed.append(name)
        return removed

    def ack(self, group: str, ids: Sequence[str]) -> int:
        if not ids:
            return 0
        with self._translated("acknowledging events"):
            return int(self.client.xack(self.key, group, *ids))

    def dead_letter(self, group: str, entries: Sequence[tuple[StreamEntry, str]]) -> None:
        """Move malformed entries to the dead-letter stream with their reason, then acknowledge them."""
        if not entries:
            return
        with self._translated("dead-lettering events"):
            pipe = self.client.pipeline(transaction=True)
            for entry, reason in entries:
                pipe.xadd(self.dead_key, {"e": entry.payload, "reason": reason, "source_id": entry.id,
                                          "at": f"{time.time():.3f}"}, maxlen=_MAXLEN, approximate=True)
            pipe.xack(self.key, group, *[entry.id for entry, _ in entries])
            pipe.execute()

    def dead_letters(self, *, count: int = 100) -> list[dict[str, str]]:
        """Return the latest dead-lettered entries (payload, reason, source_id), oldest first."""
        with self._translated("reading dead letters"):
            rows = self.client.xrevrange(self.dead_key, count=count)
        return [fields for _, fields in reversed(rows)]

    def backlog(self, group: str) -> dict[str, int]:
        """Return stream length, entries pending (delivered, unacknowledged) and lag of the group."""
        with self._translated("reading stream status"):
            length = int(self.client.xlen(self.key))
            try:
                groups = {g["name"]: g for g in self.client.xinfo_groups(self.key)}
            except redis.ResponseError:
                groups = {}
        info = groups.get(group, {})
        return {"length": length, "pending": int(info.get("pending", 0) or 0), "lag": int(info.get("lag", 0) or 0)}
