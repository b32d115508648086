"""The admin audit trail in Redis: who did what to which profile version or experiment, when, and why.

Redis layout (``P`` is ``settings.redis.key_prefix``):

    P audit    stream  one entry per admin action, field ``entry`` = JSON of an AuditEntry

The trail is append-only: entries are added by the same Lua script that makes the change
(so a change is never without its entry, nor an entry without its change), nothing here
edits or removes one, and the stream is never trimmed (admin actions are a few a day).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import redis

from recommender.errors import InvalidRequest
from recommender.settings import RedisSettings
from recommender.stores._redis import open_redis, redis_errors_translated

__all__ = ["AUDIT_ACTIONS", "AuditEntry", "AuditLog", "audit_key", "audit_payload"]

AUDIT_ACTIONS = ("save_draft", "publish", "rollback", "delete", "start_experiment", "stop_experiment",
                 "promote_experiment")
# Entries read per round trip while filtering by profile name.
_SCAN_CHUNK = 500


def audit_key(key_prefix: str) -> str:
    """Return the Redis key of the audit stream under ``key_prefix``."""
    return f"{key_prefix}audit"


@dataclass(frozen=True)
class AuditEntry:
    """One admin action, as recorded."""

    # The stream id ("<ms>-<n>"): unique and in the order the actions happened.
    id: str
    # Unix seconds.
    at: float
    actor: str
    action: str
    # What was acted on ("profile" or "experiment") and its name and version ("" when the
    # action has none; for an experiment, the promoted version).
    target: str
    name: str
    version: str
    comment: str


def audit_payload(*, at: float, actor: str, action: str, target: str, name: str, version: str, comment: str) -> str:
    """Return the JSON stored as the ``entry`` field of one stream entry."""
    if action not in AUDIT_ACTIONS:
        raise InvalidRequest(f"audit action {action!r} is not one of {list(AUDIT_ACTIONS)}")
    return json.dumps(
        {"at": at, "actor": actor, "action": action, "target": target, "name": name, "version": version,
         "comment": comment},
        ensure_ascii=False,
    )


def _entry(stream_id: str, fields: dict[str, str]) -> AuditEntry:
    data = json.loads(fields["entry"])
    return AuditEntry(
        id=stream_id, at=float(data["at"]), actor=str(data["actor"]), action=str(data["action"]),
        target=str(data["target"]), name=str(data["name"]), version=str(data["version"]),
        comment=str(data["comment"]),
    )


class AuditLog:
    """Reads the audit stream (writers append through their own Lua scripts, see ``audit_payload``).

    Every method raises StoreUnavailable when Redis is down or times out.
    """

    def __init__(self, settings: RedisSettings, *, client: redis.Redis | None = None):
        self.settings = settings
        self.client = client or open_redis(settings)
        self.key = audit_key(settings.key_prefix)

    def entries(self, *, limit: int = 50, name: str | None = None) -> list[AuditEntry]:
        """Return up to ``limit`` entries, newest first; only those about the profile or experiment
        ``name`` when given."""
        if not 1 <= limit <= 1000:
            raise InvalidRequest(f"audit limit {limit!r} must be 1..1000")
        out: list[AuditEntry] = []
        upper = "+"
        with redis_errors_translated("reading the audit trail", self.settings.url):
            while len(out) < limit:
                chunk = self.client.xrevrange(self.key, max=upper, min="-", count=_SCAN_CHUNK if name else limit)
                for stream_id, fields in chunk:
                    entry = _entry(stream_id, fields)
                    if name is None or entry.name == name:
                        out.append(entry)
                if len(chunk) < (_SCAN_CHUNK if name else limit):
                    break
                upper = "(" + chunk[-1][0]
        return out[:limit]
