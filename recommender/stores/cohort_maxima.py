"""Per-cohort maximum decayed popularity weight, kept in Redis for incremental updates.

A child's score is its decayed weight divided by the largest decayed weight in its cohort,
so the incremental indexer must know that maximum without scanning the index. The full
rebuild writes it; each incremental batch reads it (decayed to now) and raises it when a new
weight exceeds it. Scores of the other items of the cohort are not rewritten when the
maximum rises; they catch up at the next full rebuild (a documented approximation).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

import pandas as pd
import redis

from recommender.decay import half_life_decay
from recommender.settings import RedisSettings
from recommender.stores._redis import open_redis, redis_errors_translated

__all__ = ["CohortMaxima"]


class CohortMaxima:
    def __init__(self, settings: RedisSettings, *, half_life_h: float, client: redis.Redis | None = None):
        self.settings = settings
        self.half_life_s = half_life_h * 3600
        self.client = client or open_redis(settings)
        self.key = f"{settings.key_prefix}popularity:max"

    def _decayed(self, raw: str | None, now_s: float) -> float:
        if not raw:
            return 0.0
        weight, at = (float(x) for x in raw.split(","))
        return weight * half_life_decay(now_s - at, self.half_life_s)

    def reset_from(self, popularity: pd.DataFrame, *, now: datetime) -> None:
        """Replace all maxima with those of a freshly computed popularity frame (weights at ``now``)."""
        maxima = popularity.groupby("cohort")["decayed_weight"].max()
        now_s = now.timestamp()
        mapping = {str(c): f"{float(w)},{now_s}" for c, w in maxima.items()}
        with redis_errors_translated("writing cohort maxima", self.settings.url):
            pipe = self.client.pipeline(transaction=True)
            pipe.delete(self.key)
            if mapping:
                pipe.hset(self.key, mapping=mapping)
            pipe.execute()

    def read(self, cohorts: Iterable[str], *, now_s: float) -> dict[str, float]:
        """Return each cohort's maximum weight decayed to ``now_s`` (0 when unknown)."""
        names = list(dict.fromkeys(cohorts))
        if not names:
            return {}
        with redis_errors_translated("reading cohort maxima", self.settings.url):
            values = self.client.hmget(self.key, names)
        return {name: self._decayed(value, now_s) for name, value in zip(names, values)}

    def raise_to(self, weights: Mapping[str, float], *, now_s: float) -> None:
        """Store new maxima (weights at ``now_s``) for the cohorts given; callers pass only increases."""
        if not weights:
            return
        with redis_errors_translated("writing cohort maxima", self.settings.url):
            self.client.hset(self.key, mapping={c: f"{w},{now_s}" for c, w in weights.items()})
