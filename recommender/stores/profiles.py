"""Score profiles in Redis: versioned, one active version per name, and a revision to poll.

Redis layout (``P`` is ``settings.redis.key_prefix``):

    P profiles:revision         string  counter bumped by every change; readers poll it
    P profiles:active           hash    profile name -> active version
    P profiles:<name>:versions  hash    version -> JSON {"text", "saved_at", "author"}
    P profiles:<name>:history   zset    version, scored by the time it was last saved

A version is ``profile_version`` of the parsed profile (a content hash), so the version a
feed response reports is the one stored here, and saving the same content again moves that
version to the top of the history instead of adding a duplicate. The stored YAML text is
kept as written (comments included) so the admin page edits what the author wrote.

Every write is one Lua script, so a reader polling ``revision()`` and then calling
``active()`` never sees the pointer without its version or a name half deleted.

Stored text is validated again on every read, against the items mapping of the reading
process: a version that stopped validating (the mapping changed under it) makes ``active()``
raise ProfileRejected naming the profile and version, and the serving cache keeps its last
good copy; it never reaches serving.
"""

from __future__ import annotations

import json
import logging
import re
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass
from importlib.resources import files

import redis

from recommender.errors import InvalidRequest, NotFound, ProfileRejected
from recommender.profiles import ItemFields, ScoreProfile, parse_profile, profile_version
from recommender.settings import RedisSettings
from recommender.stores._redis import open_redis, redis_errors_translated

__all__ = ["DEFAULT_PROFILE", "MAX_PROFILE_BYTES", "MAX_VERSIONS", "StoredProfile", "ProfileStore"]

DEFAULT_PROFILE = "default"
# A profile is a page of YAML; anything far larger is a paste accident, not a profile.
MAX_PROFILE_BYTES = 256 * 1024
# Versions kept per name; the oldest beyond this are dropped on save (the active one never is).
MAX_VERSIONS = 100
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,63}$")
_VERSION_RE = re.compile(r"^[0-9a-f]{16}$")

_log = logging.getLogger(__name__)

# KEYS: versions, history, active, revision. ARGV: name, version, payload, saved_at, max_versions.
# Returns the new revision.
_SAVE_LUA = """
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[2])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
local excess = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[5])
if excess > 0 then
  for _, old in ipairs(redis.call('ZRANGE', KEYS[2], 0, excess - 1)) do
    if old ~= ARGV[2] then
      redis.call('ZREM', KEYS[2], old)
      redis.call('HDEL', KEYS[1], old)
    end
  end
end
return redis.call('INCR', KEYS[4])
"""

# KEYS: versions, active, revision. ARGV: name, version. Returns the new revision, or -1
# when the version is not stored (it may have been deleted since it was read).
_ACTIVATE_LUA = """
if redis.call('HEXISTS', KEYS[1], ARGV[2]) == 0 then
  return -1
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return redis.call('INCR', KEYS[3])
"""

# KEYS: versions, history, active, revision. ARGV: name. Returns 1 when something was removed.
_DELETE_LUA = """
local removed = redis.call('DEL', KEYS[1], KEYS[2]) + redis.call('HDEL', KEYS[3], ARGV[1])
if removed > 0 then
  redis.call('INCR', KEYS[4])
  return 1
end
return 0
"""

# KEYS: versions, history, active, revision. ARGV: name, version, payload, saved_at,
# max_versions. Saves only when the name has no active version; returns the revision or 0.
_SAVE_IF_ABSENT_LUA = """
if redis.call('HEXISTS', KEYS[3], ARGV[1]) == 1 then
  return 0
end
""" + _SAVE_LUA


@dataclass(frozen=True)
class StoredProfile:
    """One stored version of a named profile: its YAML as written and the validated profile."""

    name: str
    version: str
    text: str
    profile: ScoreProfile
    # Unix seconds of the (latest) save of this version.
    saved_at: float
    author: str


def _checked_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise InvalidRequest(
            f"profile name {name!r} is not valid; use 1-64 characters of a-z, 0-9, '_' and '-', "
            f"starting with a letter or digit"
        )
    return name


def _checked_version(name: str, version: str) -> str:
    if not isinstance(version, str) or not _VERSION_RE.match(version):
        raise NotFound(
            f"profile {name!r} has no version {version!r}; versions are 16 hex digits, "
            f"see the profile's history for the stored ones"
        )
    return version


class ProfileStore:
    """Named, versioned score profiles in Redis (layout in the module docstring).

    Every method raises StoreUnavailable when Redis is down or times out, and InvalidRequest
    for a name outside ``^[a-z0-9][a-z0-9_\\-]{0,63}$``.
    """

    def __init__(self, settings: RedisSettings, *, fields: ItemFields, client: redis.Redis | None = None):
        self.settings = settings
        self.fields = fields
        self.client = client or open_redis(settings)
        prefix = settings.key_prefix
        self._revision_key = f"{prefix}profiles:revision"
        self._active_key = f"{prefix}profiles:active"
        self._prefix = f"{prefix}profiles:"
        self._save = self.client.register_script(_SAVE_LUA)
        self._save_if_absent = self.client.register_script(_SAVE_IF_ABSENT_LUA)
        self._activate = self.client.register_script(_ACTIVATE_LUA)
        self._delete = self.client.register_script(_DELETE_LUA)

    def _versions_key(self, name: str) -> str:
        return f"{self._prefix}{name}:versions"

    def _history_key(self, name: str) -> str:
        return f"{self._prefix}{name}:history"

    def _errors(self, what: str) -> AbstractContextManager[None]:
        return redis_errors_translated(what, self.settings.url)

    def _parsed(self, name: str, text: str) -> ScoreProfile:
        """Return the validated profile in ``text``, which must be named ``name``."""
        if not isinstance(text, str):
            raise ProfileRejected(f"profile {name!r} must be YAML text, got {type(text).__name__}")
        size = len(text.encode("utf-8"))
        if size > MAX_PROFILE_BYTES:
            raise ProfileRejected(
                f"profile {name!r} is {size} bytes; at most {MAX_PROFILE_BYTES} are accepted, trim the YAML"
            )
        profile = parse_profile(text, fields=self.fields)
        if profile.name != name:
            raise ProfileRejected(
                f"name {profile.name!r} in the YAML does not match the profile name {name!r} it is saved under; "
                f"set `name: {name}`"
            )
        return profile

    def _stored(self, name: str, version: str, payload: str) -> StoredProfile:
        """Return the StoredProfile of one hash entry, validated again under the current mapping."""
        data = json.loads(payload)
        try:
            profile = self._parsed(name, data["text"])
        except ProfileRejected as exc:
            raise ProfileRejected(
                f"stored profile {name!r} version {version!r} no longer validates: {exc}; "
                f"save a fixed version or activate an older one"
            ) from None
        return StoredProfile(
            name=name,
            version=version,
            text=data["text"],
            profile=profile,
            saved_at=float(data["saved_at"]),
            author=str(data.get("author", "")),
        )

    def _write(self, name: str, text: str, profile: ScoreProfile, *, author: str, only_if_absent: bool) -> StoredProfile | None:
        version = profile_version(profile)
        saved_at = time.time()
        payload = json.dumps({"text": text, "saved_at": saved_at, "author": author}, ensure_ascii=False)
        script = self._save_if_absent if only_if_absent else self._save
        keys = [self._versions_key(name), self._history_key(name), self._active_key, self._revision_key]
        with self._errors(f"saving score profile {name!r}"):
            revision = int(script(keys=keys, args=[name, version, payload, repr(saved_at), MAX_VERSIONS]))
        if revision == 0:
            return None
        _log.info("score profile %r version %s saved by %r (revision %d)", name, version, author, revision)
        return StoredProfile(name=name, version=version, text=text, profile=profile, saved_at=saved_at, author=author)

    def save(self, name: str, text: str, *, author: str = "") -> StoredProfile:
        """Return the stored version of ``text``, now the active version of ``name``.

        Raises ProfileRejected (nothing stored) when the YAML does not parse, the profile
        does not validate, or its ``name`` differs from ``name``.
        """
        _checked_name(name)
        profile = self._parsed(name, text)
        stored = self._write(name, text, profile, author=author, only_if_absent=False)
        assert stored is not None  # an unconditional save always writes
        return stored

    def active(self, name: str) -> StoredProfile | None:
        """Return the active version of ``name``, or None when there is no such profile.

        Raises ProfileRejected naming the profile and version when the stored text no longer
        validates.
        """
        _checked_name(name)
        with self._errors(f"reading score profile {name!r}"):
            version = self.client.hget(self._active_key, name)
            payload = self.client.hget(self._versions_key(name), version) if version else None
        if payload is None:
            return None
        return self._stored(name, version, payload)

    def get_version(self, name: str, version: str) -> StoredProfile | None:
        """Return one stored version of ``name``, or None when it is not stored.

        Raises ProfileRejected when that version no longer validates.
        """
        _checked_name(name)
        if not isinstance(version, str) or not _VERSION_RE.match(version):
            return None
        with self._errors(f"reading score profile {name!r} version {version!r}"):
            payload = self.client.hget(self._versions_key(name), version)
        return None if payload is None else self._stored(name, version, payload)

    def history(self, name: str, *, limit: int = 20) -> list[StoredProfile]:
        """Return up to ``limit`` versions of ``name``, most recently saved first.

        Versions that no longer validate are left out (and logged): they can be neither
        served nor activated. An unknown name has an empty history.
        """
        _checked_name(name)
        if limit < 1:
            raise InvalidRequest(f"history limit {limit!r} must be at least 1")
        with self._errors(f"reading the history of score profile {name!r}"):
            versions = self.client.zrevrange(self._history_key(name), 0, limit - 1)
            payloads = self.client.hmget(self._versions_key(name), versions) if versions else []
        out: list[StoredProfile] = []
        for version, payload in zip(versions, payloads):
            if payload is None:
                continue  # trimmed or deleted between the two reads
            try:
                out.append(self._stored(name, version, payload))
            except ProfileRejected as exc:
                _log.warning("%s", exc)
        return out

    def activate(self, name: str, version: str) -> StoredProfile:
        """Return the stored ``version`` of ``name`` after making it the active one (rollback).

        Raises NotFound when that version is not stored and ProfileRejected when it no
        longer validates (the active version then stays as it was).
        """
        _checked_name(name)
        _checked_version(name, version)
        stored = self.get_version(name, version)
        if stored is None:
            raise NotFound(f"profile {name!r} has no version {version!r}; see its history for the stored versions")
        keys = [self._versions_key(name), self._active_key, self._revision_key]
        with self._errors(f"activating score profile {name!r} version {version!r}"):
            revision = int(self._activate(keys=keys, args=[name, version]))
        if revision < 0:
            raise NotFound(f"profile {name!r} version {version!r} was deleted meanwhile; save it again")
        _log.info("score profile %r version %s activated (revision %d)", name, version, revision)
        return stored

    def delete(self, name: str) -> bool:
        """Return True when ``name`` existed and is now gone with all its versions.

        Raises InvalidRequest for ``default``: serving falls back to it, so it always exists.
        """
        _checked_name(name)
        if name == DEFAULT_PROFILE:
            raise InvalidRequest(
                f"profile {DEFAULT_PROFILE!r} cannot be deleted, serving falls back to it; "
                f"save a new version or activate an older one instead"
            )
        keys = [self._versions_key(name), self._history_key(name), self._active_key, self._revision_key]
        with self._errors(f"deleting score profile {name!r}"):
            return bool(self._delete(keys=keys, args=[name]))

    def names(self) -> list[str]:
        """Return the sorted names of all profiles that have an active version."""
        with self._errors("listing score profiles"):
            return sorted(self.client.hkeys(self._active_key))

    def revision(self) -> int:
        """Return the change counter (0 before the first change); one GET, cheap to poll."""
        with self._errors("reading the score profile revision"):
            value = self.client.get(self._revision_key)
        return int(value) if value else 0

    def ensure_default(self) -> StoredProfile:
        """Return the active ``default`` profile, first storing the shipped ``default.yaml`` when there is none.

        An active ``default`` that no longer validates is replaced by the shipped one (the
        bad version stays in the history), because serving needs one good profile to start.
        Raises ProfileRejected when the shipped file itself does not validate.
        """
        text = files("recommender.profiles").joinpath("default.yaml").read_text(encoding="utf-8")
        try:
            current = self.active(DEFAULT_PROFILE)
        except ProfileRejected as exc:
            _log.warning("%s; storing the shipped default.yaml instead", exc)
            return self.save(DEFAULT_PROFILE, text, author="hotfeed (shipped default.yaml)")
        if current is not None:
            return current
        profile = self._parsed(DEFAULT_PROFILE, text)
        # Only-if-absent in one script: two processes starting together store it once.
        stored = self._write(DEFAULT_PROFILE, text, profile, author="hotfeed (shipped default.yaml)", only_if_absent=True)
        if stored is not None:
            return stored
        current = self.active(DEFAULT_PROFILE)
        if current is None:
            raise NotFound(f"profile {DEFAULT_PROFILE!r} was deleted while it was being stored; retry")
        return current
