"""The published session model in Redis: which checkpoint version serving should run.

Redis layout (``P`` is ``settings.redis.key_prefix``):

    P model:current   string  JSON {"version", "path", "published_at", "previous"}
    P model:history   list    the same JSON per publish, newest first, at most MAX_HISTORY

``version`` is the checkpoint's version ("<model>-<sha256 prefix>"), ``path`` the absolute
path of its immutable copy (``<artifacts>/model/versions/<version>.pt``), ``published_at``
unix seconds and ``previous`` the version it replaced (null for the first). The history's
head is always the current pointer; a rollback drops the head and points at the next
entry. Every write is one Lua script, so a server polling ``current()`` never sees the
pointer and the history disagree.

This store checks nothing about the file: ``recommender.model.publish`` validates a
checkpoint before it publishes it, and the recommender checks it again before serving it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from recommender.errors import ConfigError
from recommender.settings import RedisSettings
from recommender.stores._redis import open_redis, redis_errors_translated

__all__ = ["MAX_HISTORY", "PublishedModel", "PublishedModelStore"]

# Publishes kept for `hotfeed model rollback`; older ones fall off (their files stay on disk).
MAX_HISTORY = 20

# KEYS: current, history. ARGV: entry JSON without "previous", its version, max history, the
# version that must be current ('' for any). Returns the stored pointer JSON (publishing the
# version already current changes nothing), or false when another version is current than the
# one required.
_PUBLISH_LUA = """
local old = redis.call('GET', KEYS[1])
local previous = cjson.null
if old then
  local ok, decoded = pcall(cjson.decode, old)
  if ok and type(decoded) == 'table' and decoded['version'] then
    if decoded['version'] == ARGV[2] then
      return old
    end
    previous = decoded['version']
  end
end
if ARGV[4] ~= '' and previous ~= ARGV[4] then
  return false
end
local entry = cjson.decode(ARGV[1])
entry['previous'] = previous
local stored = cjson.encode(entry)
redis.call('SET', KEYS[1], stored)
redis.call('LPUSH', KEYS[2], stored)
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[3]) - 1)
return stored
"""

# KEYS: current, history. ARGV: expected current version, target index in the history, new
# pointer JSON. Drops the history entries above the target and makes the new pointer its
# head. Returns the stored JSON, or false when the pointer moved since it was read.
_ROLLBACK_LUA = """
local old = redis.call('GET', KEYS[1])
if not old then
  return false
end
local ok, decoded = pcall(cjson.decode, old)
if not ok or type(decoded) ~= 'table' or decoded['version'] ~= ARGV[1] then
  return false
end
redis.call('LTRIM', KEYS[2], tonumber(ARGV[2]), -1)
redis.call('LSET', KEYS[2], 0, ARGV[3])
redis.call('SET', KEYS[1], ARGV[3])
return ARGV[3]
"""


@dataclass(frozen=True)
class PublishedModel:
    """One publish of a checkpoint: its version, the file serving loads and when it was published."""

    version: str
    path: Path
    # Unix seconds.
    published_at: float
    # The version this publish replaced; None for the first publish.
    previous: str | None = None

    def to_json(self) -> str:
        return json.dumps({"version": self.version, "path": str(self.path), "published_at": self.published_at,
                           "previous": self.previous})

    @classmethod
    def from_json(cls, text: str, *, key: str) -> "PublishedModel":
        """Return the publish stored as ``text`` under ``key``; raise ConfigError when it is not one."""
        try:
            data: Any = json.loads(text)
            version, path, published_at = data["version"], data["path"], float(data["published_at"])
            previous = data.get("previous")
        except (ValueError, TypeError, KeyError, AttributeError):
            raise ConfigError(
                f"Redis key {key!r} holds {text[:120]!r}, not a published model "
                f'(JSON {{"version", "path", "published_at", "previous"}}); '
                f"publish one with `hotfeed model publish PATH`"
            ) from None
        if not isinstance(version, str) or not version or not isinstance(path, str) or not path \
                or not math.isfinite(published_at) or not (previous is None or isinstance(previous, str)):
            raise ConfigError(f"Redis key {key!r} holds {text[:120]!r}: version and path must be non-empty "
                              f"strings; publish again with `hotfeed model publish PATH`")
        return cls(version=version, path=Path(path), published_at=published_at, previous=previous)


class PublishedModelStore:
    """The published-model pointer and its history (layout in the module docstring).

    Every method raises StoreUnavailable when Redis is down or times out, and ConfigError
    when a stored entry is not a published model.
    """

    def __init__(self, settings: RedisSettings, *, client: redis.Redis | None = None):
        self.settings = settings
        self.client = client or open_redis(settings)
        self.current_key = f"{settings.key_prefix}model:current"
        self.history_key = f"{settings.key_prefix}model:history"
        self._publish = self.client.register_script(_PUBLISH_LUA)
        self._rollback = self.client.register_script(_ROLLBACK_LUA)

    def current(self) -> PublishedModel | None:
        """Return the published model serving should run, or None when nothing was published."""
        with redis_errors_translated("reading the published model", self.settings.url):
            text = self.client.get(self.current_key)
        if text is None:
            return None
        return PublishedModel.from_json(_text(text), key=self.current_key)

    def history(self, *, limit: int = MAX_HISTORY) -> list[PublishedModel]:
        """Return up to ``limit`` publishes, newest (the current pointer) first."""
        with redis_errors_translated("reading the published model history", self.settings.url):
            texts = self.client.lrange(self.history_key, 0, max(limit, 1) - 1)
        return [PublishedModel.from_json(_text(t), key=self.history_key) for t in texts]

    def publish(self, version: str, path: Path, *, published_at: float,
                expected: str | None = None) -> PublishedModel | None:
        """Return the pointer after making ``version`` at ``path`` the published model.

        ``previous`` is filled in from the pointer it replaces. Publishing the version that is
        already current returns the current pointer unchanged (no history entry). With
        ``expected``, returns None and changes nothing when the current version is another one
        (someone published meanwhile).
        """
        entry = PublishedModel(version=version, path=Path(path), published_at=published_at)
        with redis_errors_translated(f"publishing model {version!r}", self.settings.url):
            stored = self._publish(keys=[self.current_key, self.history_key],
                                   args=[entry.to_json(), version, MAX_HISTORY, expected or ""])
        return None if not stored else PublishedModel.from_json(_text(stored), key=self.current_key)

    def roll_back(self, *, expected: str, target_index: int, target: PublishedModel,
                  published_at: float) -> PublishedModel | None:
        """Return the new pointer after rolling back to ``target``, the history entry at ``target_index``.

        Entries above the target leave the history. Returns None, changing nothing, when the
        current version is no longer ``expected`` (someone published meanwhile).
        """
        entry = PublishedModel(version=target.version, path=target.path, published_at=published_at,
                               previous=expected)
        with redis_errors_translated(f"rolling back to model {target.version!r}", self.settings.url):
            stored = self._rollback(keys=[self.current_key, self.history_key],
                                    args=[expected, target_index, entry.to_json()])
        return None if not stored else PublishedModel.from_json(_text(stored), key=self.current_key)

    def close(self) -> None:
        self.client.close()


def _text(value: str | bytes) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
