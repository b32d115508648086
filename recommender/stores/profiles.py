"""Score profiles in Redis: versioned, one active version per name, and a revision to poll.

Redis layout (``P`` is ``settings.redis.key_prefix``):

    P profiles:revision         string  counter bumped by every change; readers poll it
    P profiles:active           hash    profile name -> active version
    P profiles:<name>:versions  hash    version -> JSON {"text", "saved_at", "author"}
    P profiles:<name>:history   zset    version, scored by the time it was last saved
    P profiles:<name>:published hash    version -> JSON {"at", "by", "comment"} of its last publish
    P profiles:names            set     every name with a stored version, drafts included
    P audit                     stream  the admin audit trail (``recommender.stores.audit``)

A version is a *draft* until it is first published: ``save_draft`` stores it without making
it live; ``publish`` (and ``rollback``, which publishes a version that was live before)
makes it the active version, with a comment. Those admin actions and ``delete`` append an
audit entry in the same script as the change. ``save`` and ``activate`` (store and publish
in one step, no audit) are for the shipped default and scripts.

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

import difflib
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
from recommender.stores.audit import AuditLog, audit_key, audit_payload

__all__ = [
    "DEFAULT_PROFILE", "MAX_COMMENT_CHARS", "MAX_PROFILE_BYTES", "MAX_VERSIONS", "ProfileStore", "PublishRecord",
    "StoredProfile", "checked_comment",
]

DEFAULT_PROFILE = "default"
# A profile is a page of YAML; anything far larger is a paste accident, not a profile.
MAX_PROFILE_BYTES = 256 * 1024
# Versions kept per name; the oldest beyond this are dropped on save (the active one never is).
MAX_VERSIONS = 100
# A comment says why in a sentence or two; a paste of the whole profile is a mistake.
MAX_COMMENT_CHARS = 2000
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,63}$")
_VERSION_RE = re.compile(r"^[0-9a-f]{16}$")

_log = logging.getLogger(__name__)

# KEYS: versions, history, active, revision, names, audit. ARGV: name, version, payload,
# saved_at, max_versions, activate ("1": also make it the active version), audit entry JSON
# ("": none). Returns the new revision.
_SAVE_LUA = """
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[2])
redis.call('SADD', KEYS[5], ARGV[1])
if ARGV[6] == '1' then
  redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
end
if ARGV[7] ~= '' then
  redis.call('XADD', KEYS[6], '*', 'entry', ARGV[7])
end
local excess = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[5])
if excess > 0 then
  for _, old in ipairs(redis.call('ZRANGE', KEYS[2], 0, excess - 1)) do
    if old ~= ARGV[2] and old ~= redis.call('HGET', KEYS[3], ARGV[1]) then
      redis.call('ZREM', KEYS[2], old)
      redis.call('HDEL', KEYS[1], old)
    end
  end
end
return redis.call('INCR', KEYS[4])
"""

# KEYS: versions, active, revision, published, audit. ARGV: name, version, publish record
# JSON, audit entry JSON ("": none), only_if_published ("1": refuse a version never live).
# Returns the new revision; -1 when the version is not stored (it may have been deleted
# since it was read); -2 when only_if_published and it never was live.
_ACTIVATE_LUA = """
if redis.call('HEXISTS', KEYS[1], ARGV[2]) == 0 then
  return -1
end
if ARGV[5] == '1' and redis.call('HEXISTS', KEYS[4], ARGV[2]) == 0 then
  return -2
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[4], ARGV[2], ARGV[3])
if ARGV[4] ~= '' then
  redis.call('XADD', KEYS[5], '*', 'entry', ARGV[4])
end
return redis.call('INCR', KEYS[3])
"""

# KEYS: versions, history, active, revision, published, names, audit. ARGV: name, audit
# entry JSON ("": none). Returns 1 when something was removed.
_DELETE_LUA = """
local removed = redis.call('DEL', KEYS[1], KEYS[2], KEYS[5]) + redis.call('HDEL', KEYS[3], ARGV[1])
  + redis.call('SREM', KEYS[6], ARGV[1])
if removed > 0 then
  if ARGV[2] ~= '' then
    redis.call('XADD', KEYS[7], '*', 'entry', ARGV[2])
  end
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
    # The comment given when this version was last saved ("" for none).
    comment: str = ""


@dataclass(frozen=True)
class PublishRecord:
    """The last time a version was made live: when (Unix seconds), by whom, and why."""

    at: float
    by: str
    comment: str


def checked_comment(comment: str, *, required: bool, action: str) -> str:
    if not isinstance(comment, str):
        raise InvalidRequest(f"the comment of a {action} must be text, got {type(comment).__name__}")
    comment = comment.strip()
    if required and not comment:
        raise InvalidRequest(f"a {action} needs a comment saying why (it goes into the audit trail); add one")
    if len(comment) > MAX_COMMENT_CHARS:
        raise InvalidRequest(f"the comment of a {action} is {len(comment)} characters; keep it under "
                             f"{MAX_COMMENT_CHARS}")
    return comment


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
        self._names_key = f"{prefix}profiles:names"
        self._audit_key = audit_key(prefix)
        self._prefix = f"{prefix}profiles:"
        self.audit = AuditLog(settings, client=self.client)
        self._save = self.client.register_script(_SAVE_LUA)
        self._save_if_absent = self.client.register_script(_SAVE_IF_ABSENT_LUA)
        self._activate = self.client.register_script(_ACTIVATE_LUA)
        self._delete = self.client.register_script(_DELETE_LUA)

    def _versions_key(self, name: str) -> str:
        return f"{self._prefix}{name}:versions"

    def _history_key(self, name: str) -> str:
        return f"{self._prefix}{name}:history"

    def _published_key(self, name: str) -> str:
        return f"{self._prefix}{name}:published"

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
            message = (f"name {profile.name!r} in the YAML does not match the profile name {name!r} it is saved "
                       f"under; set `name: {name}`")
            raise ProfileRejected(message, problems=(("name", message),))
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
            comment=str(data.get("comment", "")),
        )

    def _write(self, name: str, text: str, profile: ScoreProfile, *, author: str, only_if_absent: bool,
               activate: bool = True, comment: str = "", audited: bool = False) -> StoredProfile | None:
        version = profile_version(profile)
        saved_at = time.time()
        payload = json.dumps({"text": text, "saved_at": saved_at, "author": author, "comment": comment},
                             ensure_ascii=False)
        entry = audit_payload(at=saved_at, actor=author, action="save_draft", target="profile", name=name,
                              version=version, comment=comment) if audited else ""
        script = self._save_if_absent if only_if_absent else self._save
        keys = [self._versions_key(name), self._history_key(name), self._active_key, self._revision_key,
                self._names_key, self._audit_key]
        args = [name, version, payload, repr(saved_at), MAX_VERSIONS, "1" if activate else "0", entry]
        with self._errors(f"saving score profile {name!r}"):
            revision = int(script(keys=keys, args=args))
        if revision == 0:
            return None
        _log.info("score profile %r version %s saved%s by %r (revision %d)", name, version,
                  "" if activate else " as a draft", author, revision)
        return StoredProfile(name=name, version=version, text=text, profile=profile, saved_at=saved_at, author=author,
                             comment=comment)

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

    def save_draft(self, name: str, text: str, *, author: str, comment: str = "") -> StoredProfile:
        """Return the stored version of ``text``: a draft of ``name``, not live (the active
        version stays), with an audit entry.

        Raises ProfileRejected (nothing stored) like ``save``, and InvalidRequest for a comment
        over MAX_COMMENT_CHARS.
        """
        _checked_name(name)
        comment = checked_comment(comment, required=False, action="draft")
        profile = self._parsed(name, text)
        stored = self._write(name, text, profile, author=author, only_if_absent=False, activate=False,
                             comment=comment, audited=True)
        assert stored is not None  # an unconditional save always writes
        return stored

    def validate(self, name: str, text: str) -> tuple[tuple[str, str], ...]:
        """Return the ``(location, message)`` of every problem ``text`` has as profile ``name``
        (empty when it would save): a dry run, nothing is stored."""
        _checked_name(name)
        try:
            self._parsed(name, text)
        except ProfileRejected as exc:
            return exc.problems
        return ()

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
        """Return the stored ``version`` of ``name`` after making it the active one (no audit
        entry: for scripts; the console publishes).

        Raises NotFound when that version is not stored and ProfileRejected when it no
        longer validates (the active version then stays as it was).
        """
        return self._make_live(name, version, actor="", comment="", action=None)

    def publish(self, name: str, version: str, *, actor: str, comment: str) -> StoredProfile:
        """Return the stored ``version`` of ``name``, now live, with an audit entry.

        Raises InvalidRequest for an empty comment, NotFound when that version is not stored
        and ProfileRejected when it no longer validates (the active version then stays).
        """
        return self._make_live(name, version, actor=actor, comment=comment, action="publish")

    def rollback(self, name: str, version: str, *, actor: str, comment: str) -> StoredProfile:
        """Return the stored ``version`` of ``name``, a version that was live before, live again,
        with an audit entry.

        Raises InvalidRequest for an empty comment or a version that never was live (publish
        that instead), and what ``publish`` raises.
        """
        return self._make_live(name, version, actor=actor, comment=comment, action="rollback")

    def _make_live(self, name: str, version: str, *, actor: str, comment: str, action: str | None) -> StoredProfile:
        _checked_name(name)
        if action is not None:
            comment = checked_comment(comment, required=True, action=action)
        _checked_version(name, version)
        stored = self.get_version(name, version)
        if stored is None:
            raise NotFound(f"profile {name!r} has no version {version!r}; see its history for the stored versions")
        at = time.time()
        record = json.dumps({"at": at, "by": actor, "comment": comment}, ensure_ascii=False)
        entry = "" if action is None else audit_payload(at=at, actor=actor, action=action, target="profile",
                                                        name=name, version=version, comment=comment)
        keys = [self._versions_key(name), self._active_key, self._revision_key, self._published_key(name),
                self._audit_key]
        args = [name, version, record, entry, "1" if action == "rollback" else "0"]
        with self._errors(f"activating score profile {name!r} version {version!r}"):
            revision = int(self._activate(keys=keys, args=args))
        if revision == -1:
            raise NotFound(f"profile {name!r} version {version!r} was deleted meanwhile; save it again")
        if revision == -2:
            raise InvalidRequest(f"profile {name!r} version {version!r} was never live, so there is nothing to roll "
                                 f"back to; publish it instead")
        _log.info("score profile %r version %s made live by %r (%s, revision %d)", name, version, actor,
                  action or "activate", revision)
        return stored

    def published(self, name: str) -> dict[str, PublishRecord]:
        """Return version -> its last publish, for every version of ``name`` that has been live."""
        _checked_name(name)
        with self._errors(f"reading the publishes of score profile {name!r}"):
            raw = self.client.hgetall(self._published_key(name))
        out = {}
        for version, payload in raw.items():
            data = json.loads(payload)
            out[version] = PublishRecord(at=float(data["at"]), by=str(data["by"]), comment=str(data["comment"]))
        return out

    def diff(self, name: str, old_version: str, new_version: str) -> str:
        """Return the unified diff of the YAML of two stored versions of ``name`` ("" when equal).

        Raises NotFound naming a version that is not stored.
        """
        texts = []
        for version in (old_version, new_version):
            _checked_version(name, version)
            with self._errors(f"reading score profile {name!r} version {version!r}"):
                payload = self.client.hget(self._versions_key(_checked_name(name)), version)
            if payload is None:
                raise NotFound(f"profile {name!r} has no version {version!r}; see its history for the stored versions")
            texts.append(json.loads(payload)["text"])
        lines = difflib.unified_diff(texts[0].splitlines(keepends=True), texts[1].splitlines(keepends=True),
                                     fromfile=f"{name}@{old_version}", tofile=f"{name}@{new_version}")
        return "".join(line if line.endswith("\n") else line + "\n" for line in lines)

    def delete(self, name: str, *, actor: str = "", comment: str = "") -> bool:
        """Return True when ``name`` existed and is now gone with all its versions (with an audit
        entry when ``actor`` is given).

        Raises InvalidRequest for ``default``: serving falls back to it, so it always exists.
        """
        _checked_name(name)
        if name == DEFAULT_PROFILE:
            raise InvalidRequest(
                f"profile {DEFAULT_PROFILE!r} cannot be deleted, serving falls back to it; "
                f"save a new version or activate an older one instead"
            )
        entry = audit_payload(at=time.time(), actor=actor, action="delete", target="profile", name=name,
                              version="", comment=checked_comment(comment, required=False, action="delete")
                              ) if actor else ""
        keys = [self._versions_key(name), self._history_key(name), self._active_key, self._revision_key,
                self._published_key(name), self._names_key, self._audit_key]
        with self._errors(f"deleting score profile {name!r}"):
            return bool(self._delete(keys=keys, args=[name, entry]))

    def names(self) -> list[str]:
        """Return the sorted names of all profiles that have an active version."""
        with self._errors("listing score profiles"):
            return sorted(self.client.hkeys(self._active_key))

    def all_names(self) -> list[str]:
        """Return the sorted names of all profiles with a stored version, live or draft only."""
        with self._errors("listing score profiles"):
            # Names saved before the names set existed are in the active hash only.
            return sorted(set(self.client.smembers(self._names_key)) | set(self.client.hkeys(self._active_key)))

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
