"""The one Redis client factory and the translation of redis-py errors into ours."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import redis

from recommender.errors import StoreUnavailable
from recommender.redact import redact, redact_url
from recommender.settings import RedisSettings

__all__ = ["open_redis", "redis_errors_translated"]


def open_redis(settings: RedisSettings, *, decode_responses: bool = True, timeout_ms: int | None = None) -> redis.Redis:
    """Return a Redis client for ``settings.url`` with the configured timeouts.

    ``timeout_ms`` overrides ``settings.timeout_ms`` (the recommender's request path uses a
    shorter one). The client connects lazily; the first command raises StoreUnavailable
    (through ``redis_errors_translated``) if Redis is not there.
    """
    timeout_s = (timeout_ms if timeout_ms is not None else settings.timeout_ms) / 1000
    return redis.Redis.from_url(
        settings.url,
        decode_responses=decode_responses,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        health_check_interval=30,
    )


@contextmanager
def redis_errors_translated(what: str, url: str) -> Iterator[None]:
    """Re-raise redis connection and timeout errors as StoreUnavailable naming ``what`` and ``url``."""
    try:
        yield
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise StoreUnavailable(
            f"Redis at {redact_url(url)!r} is unavailable while {what}: {redact(exc)}. "
            f"Start it with `hotfeed services up`."
        ) from exc
