"""User segments: what the clustering job writes to Redis and the recommender reads per request.

Redis layout (``P`` is ``settings.redis.key_prefix``, ``<ver>`` a version id):

    P seg:current            string  the published version: the one pointer readers follow
    P seg:versions           zset    every version started, scored by start time (for cleanup)
    P seg:<ver>:u:<user_id>  hash    one user's segments (fields below); expires with inactivity
    P seg:<ver>:meta         hash    k, n_users, vector_kind, dims, silhouette, created_at, ...
    P seg:<ver>:centroids    hash    cluster id -> centroid, base64 of little-endian float32
    P seg:<ver>:clusters     hash    cluster id -> JSON summary (size, top_categories, typical_price, ...)
    P seg:<ver>:cold         hash    cohort id (region:<r>, platform:<p>, all) -> cluster for cold users
    P pref:<user_id>         hash    declared preferences; no TTL, the user said so

User hash fields: ``gender``, ``age_band``, ``region``, ``platform``, ``cluster``,
``top_categories`` (JSON list), ``price_band``, ``typical_price``, ``engagement``,
``cohorts`` (comma-joined, most specific first, see recommender/cohorts.py), ``version``,
``updated_at`` (unix seconds). A missing attribute is an absent field.

Versioning: a run writes every key under a fresh ``<ver>`` and then publishes it with one
atomic script that moves ``seg:current``. Every read is one Lua script that follows the
pointer and reads the hashes in the same atomic step, so a reader sees the old version or
the new one, never a mix, even while an old version is being deleted.

Defaults (``segments_for``) follow the precedence rules of ``merge_user_segments`` in
recommender/segments.py; the read scripts (recommender/stores/_segments_lua.py) pick the
cold-start cluster of rule 4 (stored region, stored platform, request region, request
platform, ``all``) in the same atomic step.

Two roles share this store: ``SegmentReader`` is what the recommender and indexer read per
request, ``SegmentWriter`` what the clustering job writes; ``SegmentStore`` is both.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Protocol, runtime_checkable

import numpy as np
import pandas as pd
import redis

from recommender.cohorts import normalize_cohort_value, platform_cohort, region_cohort
from recommender.errors import InvalidRequest, StoreUnavailable
from recommender.redact import redact_url
from recommender.segments import (
    USER_SEGMENT_FIELDS,
    DeclaredPreferences,
    UserSegments,
    ViewerRecord,
    decode_centroid,
    encode_centroid,
    merge_user_segments,
)
from recommender.settings import RedisSettings
from recommender.stores._redis import open_redis, redis_errors_translated
from recommender.stores._resp import _pack_hset_expire
from recommender.stores._segments_lua import _PUBLISH_LUA, _READ_LUA, _VIEWER_LUA

__all__ = [
    "SegmentReader",
    "SegmentWriter",
    "SegmentStore",
    "RedisSegmentStore",
    "open_segment_store",
]


@runtime_checkable
class SegmentReader(Protocol):
    """The per-request reads of user segments (the recommender and the indexer)."""

    def segments_for(
        self, user_id: str | None, *, region: str | None = None, platform: str | None = None
    ) -> UserSegments:
        """Return the viewer's segments; defaults for anonymous or unknown users (recommender/segments.py)."""
        ...

    def segments_for_many(
        self, user_ids: Sequence[str], *, region: str | None = None, platform: str | None = None
    ) -> list[UserSegments]:
        """Return segments for several users, all read from one version."""
        ...

    def viewer(
        self, user_id: str | None, *, region: str | None = None, platform: str | None = None,
        session_key: str | None = None, session_items: int = 50,
    ) -> ViewerRecord:
        """Return the viewer's segments, session items and cluster centroid in one read."""
        ...

    def declared_preferences(self, user_id: str) -> DeclaredPreferences | None:
        """Return the user's declared preferences, or None when they declared none."""
        ...

    def current_version(self) -> str | None:
        """Return the published version id, or None before the first run."""
        ...

    def version_meta(self, version: str | None = None) -> dict[str, str]:
        """Return a version's run facts (k, sizes, silhouette, vector_kind, ...)."""
        ...

    def centroid(self, cluster: int, *, version: str | None = None) -> np.ndarray | None:
        """Return a cluster's centroid (float32), or None when there is no such cluster."""
        ...

    def cluster_summaries(self, *, version: str | None = None) -> dict[int, dict]:
        """Return {cluster id: summary} of a version (the published one by default)."""
        ...


@runtime_checkable
class SegmentWriter(Protocol):
    """The writes of user segments: the clustering job's versioned batch, and declared preferences."""

    def start_version(self, *, now: datetime | None = None) -> str:
        """Return a fresh version id, registered for cleanup."""
        ...

    def write_user_segments(
        self, version: str, segments: pd.DataFrame, *, ttl_s: np.ndarray,
        progress: Callable[[int], object] | None = None, batch_users: int = 2_000,
    ) -> int:
        """Write one hash per row of ``segments``; return how many were written."""
        ...

    def write_clusters(
        self, version: str, *, centroids: np.ndarray, summaries: Mapping[int, Mapping],
        cold_clusters: Mapping[str, int], meta: Mapping[str, object], ttl_s: int,
    ) -> None:
        """Write centroids, cluster summaries, cold-start clusters and run facts of a version."""
        ...

    def publish_version(self, version: str) -> str | None:
        """Make ``version`` the one readers see; return the version it replaced."""
        ...

    def delete_versions_except(self, keep: Sequence[str]) -> int:
        """Delete the keys of every started version not in ``keep``; return keys deleted."""
        ...

    def set_declared_preferences(self, user_id: str, prefs: DeclaredPreferences) -> None:
        """Store (replace) the user's declared preferences."""
        ...

    def clear_declared_preferences(self, user_id: str) -> None:
        """Forget the user's declared preferences."""
        ...


@runtime_checkable
class SegmentStore(SegmentReader, SegmentWriter, Protocol):
    """Where user segments live: written by the clustering job, read on every request."""


def _pairs(flat: Sequence[str]) -> dict[str, str]:
    return dict(zip(flat[::2], flat[1::2]))


def _glob_escape(text: str) -> str:
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)


def _user_key_ok(user_id: str) -> str:
    if not isinstance(user_id, str) or not user_id:
        raise InvalidRequest(f"user_id {user_id!r} must be a non-empty string; pass None for anonymous viewers")
    return user_id


class RedisSegmentStore:
    """SegmentReader and SegmentWriter on one Redis (layout in the module docstring)."""

    def __init__(self, settings: RedisSettings, *, client: redis.Redis | None = None):
        self._settings = settings
        self._p = settings.key_prefix
        self._r = client if client is not None else open_redis(settings)
        self._read = self._r.register_script(_READ_LUA)
        self._read_viewer = self._r.register_script(_VIEWER_LUA)
        self._publish = self._r.register_script(_PUBLISH_LUA)

    # -- keys ---------------------------------------------------------------------------
    @property
    def pointer_key(self) -> str:
        return f"{self._p}seg:current"

    @property
    def versions_key(self) -> str:
        return f"{self._p}seg:versions"

    def user_key(self, version: str, user_id: str) -> str:
        """Return the hash key of ``user_id`` in ``version``."""
        return f"{self._p}seg:{version}:u:{user_id}"

    def _version_key(self, version: str, name: str) -> str:
        return f"{self._p}seg:{version}:{name}"

    def pref_key(self, user_id: str) -> str:
        """Return the hash key of ``user_id``'s declared preferences."""
        return f"{self._p}pref:{user_id}"

    def _translated(self, what: str):
        return redis_errors_translated(what, self._settings.url)

    # -- reads --------------------------------------------------------------------------
    def segments_for(
        self, user_id: str | None, *, region: str | None = None, platform: str | None = None
    ) -> UserSegments:
        """Return the viewer's segments; defaults for anonymous or unknown users (module docstring).

        ``user_id`` None or "" means anonymous. Raises StoreUnavailable when Redis is down.
        """
        ids = [user_id] if user_id else []
        return self._read_segments(ids, region=region, platform=platform, anonymous=not user_id)[0]

    def segments_for_many(
        self, user_ids: Sequence[str], *, region: str | None = None, platform: str | None = None
    ) -> list[UserSegments]:
        """Return segments for ``user_ids`` in order, all read from one version atomically."""
        return self._read_segments([_user_key_ok(u) for u in user_ids], region=region, platform=platform)

    def _read_segments(
        self, user_ids: list[str], *, region: str | None, platform: str | None, anonymous: bool = False
    ) -> list[UserSegments]:
        region_tok = normalize_cohort_value(region)
        platform_tok = normalize_cohort_value(platform)
        args = [self._p, region_cohort(region_tok) if region_tok else "", platform_cohort(platform_tok) if platform_tok else ""]
        with self._translated("reading user segments"):
            reply = self._read(args=args + user_ids)
        version = reply[0] or None
        cold = next((int(c) for c in (reply[1] or []) if c is not None), None)
        if anonymous:
            return [merge_user_segments(None, {}, {}, version=version, region=region_tok, platform=platform_tok,
                                        cold=cold)]
        return [
            merge_user_segments(uid, _pairs(reply[2 + 3 * i]), _pairs(reply[3 + 3 * i]), version=version,
                                region=region_tok, platform=platform_tok,
                                cold=int(reply[4 + 3 * i]) if reply[4 + 3 * i] else cold)
            for i, uid in enumerate(user_ids)
        ]

    def viewer(
        self,
        user_id: str | None,
        *,
        region: str | None = None,
        platform: str | None = None,
        session_key: str | None = None,
        session_items: int = 50,
    ) -> ViewerRecord:
        """Return the viewer's segments, session items and cluster centroid in one round trip.

        ``session_key`` is the Redis list of the session (``SessionStore.key``), None for
        none. Raises StoreUnavailable when Redis is down.
        """
        region_tok = normalize_cohort_value(region)
        platform_tok = normalize_cohort_value(platform)
        args = [self._p, region_cohort(region_tok) if region_tok else "", platform_cohort(platform_tok) if platform_tok else "",
                user_id or "", session_key or "", max(int(session_items), 1)]
        with self._translated("reading the viewer"):
            ver, cold_list, seg, pref, own, newest_first, centroid = self._read_viewer(args=args)
        cold = int(own) if own else next((int(c) for c in (cold_list or []) if c is not None), None)
        segments = merge_user_segments(user_id or None, _pairs(seg), _pairs(pref), version=ver or None,
                                       region=region_tok, platform=platform_tok, cold=cold)
        return ViewerRecord(
            segments=segments,
            session=tuple(reversed(newest_first)),
            centroid=decode_centroid(centroid) if centroid else None,
        )

    def declared_preferences(self, user_id: str) -> DeclaredPreferences | None:
        """Return the user's declared preferences, or None when they declared none."""
        with self._translated("reading declared preferences"):
            fields = self._r.hgetall(self.pref_key(_user_key_ok(user_id)))
        return DeclaredPreferences.from_hash(fields) if fields else None

    def set_declared_preferences(self, user_id: str, prefs: DeclaredPreferences) -> None:
        """Replace the user's declared preferences (one MULTI, so readers never see half)."""
        key = self.pref_key(_user_key_ok(user_id))
        with self._translated("writing declared preferences"):
            pipe = self._r.pipeline(transaction=True)
            pipe.delete(key)
            pipe.hset(key, mapping={**prefs.to_hash(), "updated_at": f"{time.time():.3f}"})
            pipe.execute()

    def clear_declared_preferences(self, user_id: str) -> None:
        """Forget the user's declared preferences."""
        with self._translated("clearing declared preferences"):
            self._r.delete(self.pref_key(_user_key_ok(user_id)))

    def current_version(self) -> str | None:
        """Return the published version id, or None before the first run."""
        with self._translated("reading the segment version"):
            return self._r.get(self.pointer_key)

    def _resolve(self, version: str | None) -> str | None:
        return version if version is not None else self.current_version()

    def version_meta(self, version: str | None = None) -> dict[str, str]:
        """Return a version's run facts (published version by default; {} when none)."""
        ver = self._resolve(version)
        if ver is None:
            return {}
        with self._translated("reading segment run facts"):
            return self._r.hgetall(self._version_key(ver, "meta"))

    def centroid(self, cluster: int, *, version: str | None = None) -> np.ndarray | None:
        """Return a cluster's centroid as float32, or None when the cluster or version is absent.

        The centroid lives in the run's vector space (``version_meta()['vector_kind']``):
        item-embedding space can serve as a kNN query vector, category-affinity space cannot.
        """
        ver = self._resolve(version)
        if ver is None:
            return None
        with self._translated("reading a cluster centroid"):
            text = self._r.hget(self._version_key(ver, "centroids"), str(int(cluster)))
        return decode_centroid(text) if text else None

    def cluster_summaries(self, *, version: str | None = None) -> dict[int, dict]:
        """Return {cluster id: summary dict} of a version (the published one by default)."""
        ver = self._resolve(version)
        if ver is None:
            return {}
        with self._translated("reading cluster summaries"):
            raw = self._r.hgetall(self._version_key(ver, "clusters"))
        return {int(k): json.loads(v) for k, v in sorted(raw.items(), key=lambda kv: int(kv[0]))}

    # -- writes (the clustering job) ----------------------------------------------------
    def start_version(self, *, now: datetime | None = None) -> str:
        """Return a fresh version id (UTC time + random suffix), registered for cleanup first.

        Registering before writing means a run that dies half-way is still found and deleted
        by the next run's ``delete_versions_except``.
        """
        now = now or datetime.now(timezone.utc)
        version = f"{now.astimezone(timezone.utc):%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"
        with self._translated("starting a segment version"):
            self._r.zadd(self.versions_key, {version: time.time()})
        return version

    def write_user_segments(
        self,
        version: str,
        segments: pd.DataFrame,
        *,
        ttl_s: np.ndarray,
        progress: Callable[[int], object] | None = None,
        batch_users: int = 2_000,
    ) -> int:
        """Write one hash per row of ``segments`` (``user_id`` + USER_SEGMENT_FIELDS columns).

        ``ttl_s`` (one int per row, >= 1) sets each hash's expiry; missing values are left
        out of the hash. Commands go out pipelined, ``batch_users`` users (2 commands each)
        per round trip, without MULTI: the version is unpublished, so nobody reads it
        half-written. ``progress(n)`` is called after each batch. Returns hashes written.
        Raises StoreUnavailable when Redis is down or refuses a write (e.g. out of memory).
        """
        if len(ttl_s) != len(segments):
            raise InvalidRequest(f"ttl_s has {len(ttl_s)} values for {len(segments)} users; pass one per user")
        fields = [f for f in USER_SEGMENT_FIELDS if f in segments.columns and f != "version"]
        frame = segments.assign(version=version, ttl=np.maximum(np.asarray(ttl_s, dtype=np.int64), 1))
        written = 0
        with self._translated("writing user segments"):
            conn = self._r.connection_pool.get_connection()

            def collect(n_users: int) -> None:
                nonlocal written
                try:
                    for _ in range(2 * n_users):
                        conn.read_response()
                except redis.ResponseError as exc:
                    raise StoreUnavailable(
                        f"Redis at {redact_url(self._settings.url)!r} refused a segment write of version {version!r}: "
                        f"{exc}. Check its memory limit (maxmemory) and that nothing else writes "
                        f"under the key prefix {self._p!r}."
                    ) from exc
                written += n_users
                if progress is not None:
                    progress(n_users)

            try:
                in_flight = 0
                for start in range(0, len(frame), batch_users):
                    chunk = frame.iloc[start : start + batch_users]
                    payload = _pack_hset_expire(f"{self._p}seg:{version}:u:", chunk, [*fields, "version"])
                    # Send this batch before reading the last one's replies, so packing the
                    # next batch overlaps with Redis executing this one.
                    conn.send_packed_command([payload])
                    if in_flight:
                        collect(in_flight)
                    in_flight = len(chunk)
                if in_flight:
                    collect(in_flight)
            except BaseException:
                # Unread replies would poison the next command on this connection.
                conn.disconnect()
                raise
            finally:
                self._r.connection_pool.release(conn)
        return written

    def write_clusters(
        self,
        version: str,
        *,
        centroids: np.ndarray,
        summaries: Mapping[int, Mapping],
        cold_clusters: Mapping[str, int],
        meta: Mapping[str, object],
        ttl_s: int,
    ) -> None:
        """Write centroids, cluster summaries, cold-start clusters and run facts of ``version``."""
        keys = {name: self._version_key(version, name) for name in ("centroids", "clusters", "cold", "meta")}
        with self._translated("writing cluster data"):
            pipe = self._r.pipeline(transaction=False)
            if len(centroids):
                pipe.hset(keys["centroids"], mapping={str(i): encode_centroid(c) for i, c in enumerate(centroids)})
            if summaries:
                pipe.hset(keys["clusters"], mapping={str(k): json.dumps(dict(v)) for k, v in summaries.items()})
            if cold_clusters:
                pipe.hset(keys["cold"], mapping={k: str(int(v)) for k, v in cold_clusters.items()})
            pipe.hset(keys["meta"], mapping={"version": version, **{k: str(v) for k, v in meta.items()}})
            for key in keys.values():
                pipe.expire(key, max(int(ttl_s), 1))
            pipe.execute()

    def publish_version(self, version: str) -> str | None:
        """Point readers at ``version`` in one atomic step; return the version it replaced.

        Raises InvalidRequest when ``version`` was never started with ``start_version``.
        """
        with self._translated("publishing a segment version"):
            try:
                return self._publish(keys=[self.pointer_key, self.versions_key], args=[version])
            except redis.ResponseError as exc:
                if "unknown version" not in str(exc):
                    raise
                raise InvalidRequest(
                    f"segment version {version!r} was never started; call start_version() and write it first"
                ) from None

    def delete_versions_except(self, keep: Sequence[str]) -> int:
        """Delete every started version not in ``keep`` (and never the published one).

        Returns how many keys were unlinked. Safe while readers run: they only follow the
        published pointer, which this never deletes.
        """
        deleted = 0
        with self._translated("deleting old segment versions"):
            current = self._r.get(self.pointer_key)
            keep_set = set(keep) | ({current} if current else set())
            for version in self._r.zrange(self.versions_key, 0, -1):
                if version in keep_set:
                    continue
                pattern = _glob_escape(f"{self._p}seg:{version}:") + "*"
                batch: list[str] = []
                for key in self._r.scan_iter(match=pattern, count=10_000):
                    batch.append(key)
                    if len(batch) >= 5_000:
                        deleted += self._r.unlink(*batch)
                        batch.clear()
                if batch:
                    deleted += self._r.unlink(*batch)
                self._r.zrem(self.versions_key, version)
        return deleted

    def close(self) -> None:
        """Close the client's connections."""
        self._r.close()


def open_segment_store(settings: RedisSettings) -> RedisSegmentStore:
    """Return the segment store for ``settings`` (Redis is the one backend today)."""
    return RedisSegmentStore(settings)
