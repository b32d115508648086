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

Defaults (``segments_for``), in order of precedence:

1. Declared preferences (gender, age band, liked and disliked categories) beat inferred ones.
2. Inferred segments from the published version.
3. The request's region and platform fill in what is still unknown; an anonymous or
   unknown user thus gets ``["region:<r>", "platform:<p>", "all"]``, or just ``["all"]``.
4. A user without a behaviour cluster gets a cold-start cluster (for its centroid as the
   kNN query vector): the one of its stored region, then stored platform, then the
   request's region, then platform, then ``all``; cold-start clusters never enter the
   cohort list.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Literal, Protocol, runtime_checkable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import redis

from recommender.cohorts import (
    AGE_BANDS,
    ALL_COHORT,
    GENDERS,
    normalize_cohort_value,
    platform_cohort,
    region_cohort,
    user_cohorts,
)
from recommender.errors import InvalidRequest, StoreUnavailable
from recommender.redact import redact_url
from recommender.settings import RedisSettings
from recommender.stores._redis import open_redis, redis_errors_translated

__all__ = [
    "USER_SEGMENT_FIELDS",
    "ClusterSource",
    "ViewerRecord",
    "DeclaredPreferences",
    "UserSegments",
    "SegmentStore",
    "RedisSegmentStore",
    "open_segment_store",
    "encode_centroid",
    "decode_centroid",
]

USER_SEGMENT_FIELDS: tuple[str, ...] = (
    "gender", "age_band", "region", "platform", "cluster", "top_categories", "price_band",
    "typical_price", "engagement", "cohorts", "version", "updated_at",
)
ClusterSource = Literal["user", "cold_start", "none"]
_MAX_CATEGORIES = 200


def _clean_categories(values: Sequence[str] | None, *, what: str) -> tuple[str, ...]:
    if values is None:
        return ()
    if isinstance(values, str):
        raise InvalidRequest(f"{what} must be a list of category paths, got the string {values!r}; wrap it in a list")
    out = tuple(dict.fromkeys(v.strip() for v in values if isinstance(v, str) and v.strip()))
    if len(out) > _MAX_CATEGORIES:
        raise InvalidRequest(f"{what} has {len(out)} categories; at most {_MAX_CATEGORIES} are kept per user")
    return out


@dataclass(frozen=True, slots=True)
class DeclaredPreferences:
    """What a user told us about themselves; it beats anything the clustering job inferred.

    Raises InvalidRequest for a gender outside GENDERS or an age band outside AGE_BANDS.
    """

    gender: str | None = None
    age_band: str | None = None
    liked_categories: tuple[str, ...] = ()
    disliked_categories: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        gender = self.gender or None
        if gender is not None and gender not in GENDERS:
            raise InvalidRequest(f"declared gender {gender!r} is not one of {list(GENDERS)!r}; leave it empty instead")
        band = self.age_band or None
        if band is not None and band not in AGE_BANDS:
            raise InvalidRequest(f"declared age_band {band!r} is not one of {list(AGE_BANDS)!r}")
        liked = _clean_categories(self.liked_categories, what="liked_categories")
        disliked = _clean_categories(self.disliked_categories, what="disliked_categories")
        both = sorted(set(liked) & set(disliked))
        if both:
            raise InvalidRequest(f"categories {both!r} are both liked and disliked; keep each in one list")
        object.__setattr__(self, "gender", gender)
        object.__setattr__(self, "age_band", band)
        object.__setattr__(self, "liked_categories", liked)
        object.__setattr__(self, "disliked_categories", disliked)

    def to_hash(self) -> dict[str, str]:
        """Return the Redis hash fields (JSON lists for the categories)."""
        out = {
            "liked_categories": json.dumps(list(self.liked_categories)),
            "disliked_categories": json.dumps(list(self.disliked_categories)),
        }
        if self.gender:
            out["gender"] = self.gender
        if self.age_band:
            out["age_band"] = self.age_band
        return out

    @classmethod
    def from_hash(cls, fields: Mapping[str, str]) -> "DeclaredPreferences":
        """Return preferences from a Redis hash as written by ``to_hash``."""
        return cls(
            gender=fields.get("gender") or None,
            age_band=fields.get("age_band") or None,
            liked_categories=tuple(json.loads(fields.get("liked_categories") or "[]")),
            disliked_categories=tuple(json.loads(fields.get("disliked_categories") or "[]")),
        )


@dataclass(frozen=True, slots=True)
class UserSegments:
    """The segments of one viewer, ready for the query: cohorts, filters and cluster.

    ``cohorts`` run from the most specific to ``all``. ``disliked_categories`` are meant as
    must-not filters. ``cluster`` is the user's behaviour cluster, or a cold-start cluster
    when ``cluster_source == "cold_start"`` (use its centroid, not a cohort).
    """

    user_id: str | None
    cohorts: tuple[str, ...] = (ALL_COHORT,)
    known: bool = False
    declared: bool = False
    gender: str | None = None
    age_band: str | None = None
    region: str | None = None
    platform: str | None = None
    cluster: int | None = None
    cluster_source: ClusterSource = "none"
    top_categories: tuple[str, ...] = ()
    liked_categories: tuple[str, ...] = ()
    disliked_categories: tuple[str, ...] = ()
    price_band: str | None = None
    typical_price: float | None = None
    engagement: str | None = None
    version: str | None = None
    updated_at: float | None = None


@runtime_checkable
class SegmentStore(Protocol):
    """Where user segments live: written by the clustering job, read on every request."""

    def segments_for(
        self, user_id: str | None, *, region: str | None = None, platform: str | None = None
    ) -> UserSegments:
        """Return the viewer's segments; defaults for anonymous or unknown users (module docstring)."""
        ...

    def segments_for_many(
        self, user_ids: Sequence[str], *, region: str | None = None, platform: str | None = None
    ) -> list[UserSegments]:
        """Return segments for several users, all read from one version."""
        ...

    def declared_preferences(self, user_id: str) -> DeclaredPreferences | None:
        """Return the user's declared preferences, or None when they declared none."""
        ...

    def set_declared_preferences(self, user_id: str, prefs: DeclaredPreferences) -> None:
        """Store (replace) the user's declared preferences."""
        ...

    def clear_declared_preferences(self, user_id: str) -> None:
        """Forget the user's declared preferences."""
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


def encode_centroid(vector: np.ndarray) -> str:
    """Return a vector as base64 of little-endian float32 bytes."""
    return base64.b64encode(np.ascontiguousarray(vector, dtype="<f4").tobytes()).decode("ascii")


def decode_centroid(text: str) -> np.ndarray:
    """Return the float32 vector encoded by ``encode_centroid``."""
    return np.frombuffer(base64.b64decode(text), dtype="<f4").astype(np.float32)


# The segment read shared by both scripts below: follow the pointer, then read one user's
# segment and preference hashes of that version, and the cold-start cluster of the user's own
# region/platform when the user has no cluster. Keys are built in the script because they
# depend on the pointer; that is fine on a single Redis (not Redis Cluster).
_SEGMENT_LUA = """
local function read_user(p, ver, cold_key, uid)
  local seg = {}
  if ver then seg = redis.call('HGETALL', p .. 'seg:' .. ver .. ':u:' .. uid) end
  local pref = redis.call('HGETALL', p .. 'pref:' .. uid)
  local own = ''
  local cluster = nil
  if #seg > 0 then
    local f = {}
    for j = 1, #seg, 2 do f[seg[j]] = seg[j + 1] end
    cluster = f['cluster']
    if not cluster and (f['region'] or f['platform']) then
      local c = redis.call('HMGET', cold_key, 'region:' .. (f['region'] or ''), 'platform:' .. (f['platform'] or ''))
      own = c[1] or c[2] or ''
    end
  end
  return seg, pref, own, cluster
end
"""

# One atomic step for many users. ARGV: prefix, region cohort, platform cohort, user ids...
# Reply: version, the request's cold-start clusters (region, platform, all), then per user:
# segment hash, preference hash, own cold-start cluster ('' when none).
_READ_LUA = _SEGMENT_LUA + """
local p = ARGV[1]
local ver = redis.call('GET', p .. 'seg:current')
local out = {ver or ''}
local cold_key = ver and (p .. 'seg:' .. ver .. ':cold')
if ver then
  out[2] = redis.call('HMGET', cold_key, ARGV[2], ARGV[3], 'all')
else
  out[2] = {}
end
for i = 4, #ARGV do
  local seg, pref, own = read_user(p, ver, cold_key, ARGV[i])
  out[#out + 1] = seg
  out[#out + 1] = pref
  out[#out + 1] = own
end
return out
"""

# Everything a feed request needs from Redis, in one round trip. ARGV: prefix, region
# cohort, platform cohort, user id ('' anonymous), session key ('' none), session items.
# Reply: version, cold-start clusters, segment hash, preference hash, own cold-start
# cluster, the session's items newest first, and the centroid of the cluster the viewer
# ends up with (their own, else the cold-start one; '' when none), as ``_merge`` picks it.
_VIEWER_LUA = _SEGMENT_LUA + """
local p = ARGV[1]
local ver = redis.call('GET', p .. 'seg:current')
local cold_key = ver and (p .. 'seg:' .. ver .. ':cold')
local cold = {}
if ver then cold = redis.call('HMGET', cold_key, ARGV[2], ARGV[3], 'all') end
local seg, pref, own, cluster = {}, {}, '', nil
if ARGV[4] ~= '' then seg, pref, own, cluster = read_user(p, ver, cold_key, ARGV[4]) end
local session = {}
if ARGV[5] ~= '' then session = redis.call('LRANGE', ARGV[5], 0, tonumber(ARGV[6]) - 1) end
if not cluster and own ~= '' then cluster = own end
if not cluster then cluster = cold[1] or cold[2] or cold[3] end
local centroid = ''
if ver and cluster then centroid = redis.call('HGET', p .. 'seg:' .. ver .. ':centroids', cluster) or '' end
return {ver or '', cold, seg, pref, own, session, centroid}
"""


@dataclass(frozen=True, slots=True)
class ViewerRecord:
    """What one feed request reads from Redis: segments, recent session items, cluster centroid.

    ``session`` is oldest first. ``centroid`` belongs to ``segments.cluster`` (None when the
    viewer has no cluster or the run wrote no centroid).
    """

    segments: "UserSegments"
    session: tuple[str, ...] = ()
    centroid: np.ndarray | None = None


# Publishing only versions that were started keeps a typo from pointing readers at nothing.
_PUBLISH_LUA = """
if not redis.call('ZSCORE', KEYS[2], ARGV[1]) then
  return redis.error_reply('unknown version ' .. ARGV[1])
end
local old = redis.call('GET', KEYS[1])
redis.call('SET', KEYS[1], ARGV[1])
return old
"""


def _resp_bulk(values: pa.Array) -> pa.Array:
    """Return each value as a RESP bulk string (``$<bytes>\\r\\n<value>\\r\\n``); null stays null."""
    lengths = pc.cast(pc.binary_length(values), pa.string())
    return pc.binary_join_element_wise("$", lengths, "\r\n", values, "\r\n", "")


def _pack_hset_expire(key_prefix: str, chunk: pd.DataFrame, fields: list[str]) -> bytes:
    """Return RESP bytes of ``HSET key f v ...`` + ``EXPIRE key ttl`` for every row of ``chunk``.

    Built column-wise with pyarrow because redis-py packs each command argument by argument
    in Python, which capped a million-user write at about 15k users/s; this runs about 3x
    faster. Null values leave their field out of that row's HSET.
    """
    keys = _resp_bulk(pc.binary_join_element_wise(key_prefix, pa.array(chunk["user_id"].astype(str), pa.string()), ""))
    n_args = np.full(len(chunk), 2, dtype=np.int64)
    parts: list[pa.Array] = []
    for name in fields:
        values = pa.array(chunk[name].astype("string").to_numpy(dtype=object, na_value=None), pa.string())
        n_args += 2 * (~np.asarray(values.is_null())).astype(np.int64)
        name_bulk = f"${len(name.encode())}\r\n{name}\r\n"
        parts.append(pc.fill_null(pc.binary_join_element_wise(name_bulk, _resp_bulk(values), ""), ""))
    header = pc.binary_join_element_wise("*", pa.array(n_args.astype(str)), "\r\n$4\r\nHSET\r\n", "")
    ttl = _resp_bulk(pa.array(chunk["ttl"].astype(str), pa.string()))
    expire = pc.binary_join_element_wise("*3\r\n$6\r\nEXPIRE\r\n", keys, ttl, "")
    rows = pc.binary_join_element_wise(header, keys, *parts, expire, "")
    return "".join(rows.to_pylist()).encode()


def _pairs(flat: Sequence[str]) -> dict[str, str]:
    return dict(zip(flat[::2], flat[1::2]))


def _glob_escape(text: str) -> str:
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)


def _user_key_ok(user_id: str) -> str:
    if not isinstance(user_id, str) or not user_id:
        raise InvalidRequest(f"user_id {user_id!r} must be a non-empty string; pass None for anonymous viewers")
    return user_id


class RedisSegmentStore:
    """SegmentStore on one Redis (layout in the module docstring)."""

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
            return [_merge(None, {}, {}, version=version, region=region_tok, platform=platform_tok, cold=cold)]
        return [
            _merge(uid, _pairs(reply[2 + 3 * i]), _pairs(reply[3 + 3 * i]), version=version,
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
        segments = _merge(user_id or None, _pairs(seg), _pairs(pref), version=ver or None, region=region_tok,
                          platform=platform_tok, cold=cold)
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


def _merge(
    user_id: str | None,
    seg: dict[str, str],
    pref: dict[str, str],
    *,
    version: str | None,
    region: str | None,
    platform: str | None,
    cold: int | None,
) -> UserSegments:
    """Return one viewer's segments from the stored hashes and the request context."""
    declared = DeclaredPreferences.from_hash(pref) if pref else None
    known = bool(seg)
    gender = (declared.gender if declared else None) or seg.get("gender")
    age_band = (declared.age_band if declared else None) or seg.get("age_band")
    user_region = seg.get("region") or region
    user_platform = seg.get("platform") or platform
    cluster = int(seg["cluster"]) if seg.get("cluster") else None
    overridden = declared is not None and (
        (declared.gender and declared.gender != seg.get("gender"))
        or (declared.age_band and declared.age_band != seg.get("age_band"))
    )
    filled = (not seg.get("region") and region) or (not seg.get("platform") and platform)
    if seg.get("cohorts") and not overridden and not filled:
        cohorts = tuple(seg["cohorts"].split(","))
    else:
        cohorts = tuple(user_cohorts(
            gender=gender, age_band=age_band, region=user_region, platform=user_platform, cluster=cluster,
        ))
    liked = declared.liked_categories if declared else ()
    disliked = declared.disliked_categories if declared else ()
    inferred = tuple(json.loads(seg["top_categories"])) if seg.get("top_categories") else ()
    top = tuple(dict.fromkeys(liked + tuple(c for c in inferred if c not in set(disliked))))
    if cluster is not None:
        source: ClusterSource = "user"
    elif cold is not None:
        cluster, source = cold, "cold_start"
    else:
        source = "none"
    return UserSegments(
        user_id=user_id,
        cohorts=cohorts,
        known=known,
        declared=declared is not None,
        gender=gender,
        age_band=age_band,
        region=normalize_cohort_value(user_region),
        platform=normalize_cohort_value(user_platform),
        cluster=cluster,
        cluster_source=source,
        top_categories=top,
        liked_categories=liked,
        disliked_categories=disliked,
        price_band=seg.get("price_band"),
        typical_price=float(seg["typical_price"]) if seg.get("typical_price") else None,
        engagement=seg.get("engagement"),
        version=version,
        updated_at=float(seg["updated_at"]) if seg.get("updated_at") else None,
    )


def open_segment_store(settings: RedisSettings) -> RedisSegmentStore:
    """Return the segment store for ``settings`` (Redis is the one backend today)."""
    return RedisSegmentStore(settings)
