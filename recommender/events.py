"""Events on the wire: what the gRPC RecordEvents call, the HTTP gateway and `hotfeed events push`
send into the event stream, and how one is checked.

Two kinds, as JSON objects:

    interaction  {"type": "view"|"click"|"like"|"cart"|"chat"|"purchase", "item_id": "...",
                  "user_id": "..." (optional), "session_id": "..." (optional, one of the two needed),
                  "ts": ISO-8601 text or unix seconds (optional: time of receipt), "platform": "..."}
    status       {"type": "status", "item_id": "...", "status": "active"|"reserved"|"sold"|"deleted"|"sanctioned"}

``parse_event`` is pure and is the one place these rules live.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from recommender.data_model import EVENT_TYPES, ITEM_STATUSES
from recommender.errors import InvalidRequest

__all__ = ["InteractionEvent", "StatusEvent", "Event", "parse_event", "MAX_ID_LENGTH"]

MAX_ID_LENGTH = 128
# Events more than this far in the future are clock errors, not data.
_MAX_FUTURE_S = 300
# Platforms become cohort ids and child document ids (capped by the engine at 512 bytes).
_MAX_PLATFORM_LENGTH = 64


@dataclass(frozen=True)
class InteractionEvent:
    item_id: str
    event_type: str
    ts: float  # unix seconds
    user_id: str | None = None
    session_id: str | None = None
    platform: str | None = None


@dataclass(frozen=True)
class StatusEvent:
    item_id: str
    status: str


Event = InteractionEvent | StatusEvent


def _id(raw: dict[str, Any], key: str, *, required: bool) -> str | None:
    value = raw.get(key)
    if value is None or value == "":
        if required:
            raise InvalidRequest(f"event field {key!r} is missing; every event needs an {key}")
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InvalidRequest(f"event field {key!r} must be a string id, got {value!r}")
    text = str(value).strip()
    if not text or len(text) > MAX_ID_LENGTH:
        raise InvalidRequest(f"event field {key!r} must be 1..{MAX_ID_LENGTH} characters, got {value!r}")
    return text


def _ts(value: Any, *, now_s: float) -> float:
    if value is None or value == "":
        return now_s
    if isinstance(value, bool):
        raise InvalidRequest(f"event field 'ts' must be ISO-8601 text or unix seconds, got {value!r}")
    if isinstance(value, (int, float)):
        ts = float(value)
        if not math.isfinite(ts):
            raise InvalidRequest(f"event field 'ts' must be a finite number of unix seconds, got {value!r}")
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace(" UTC", "+00:00"))
        except ValueError:
            raise InvalidRequest(f"event field 'ts' is not ISO-8601 or unix seconds: {value!r}") from None
        ts = (parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)).timestamp()
    else:
        raise InvalidRequest(f"event field 'ts' must be ISO-8601 text or unix seconds, got {value!r}")
    if ts < 0:
        raise InvalidRequest(f"event field 'ts' {value!r} is before 1970; send the time the event happened")
    if ts > now_s + _MAX_FUTURE_S:
        raise InvalidRequest(f"event field 'ts' {value!r} is in the future; send the time the event happened")
    return ts


def parse_event(raw: Any, *, now_s: float) -> Event:
    """Return the checked event for a JSON object.

    Raises InvalidRequest naming the field and the bad value.
    """
    if not isinstance(raw, dict):
        raise InvalidRequest(f"an event must be a JSON object, got {type(raw).__name__}: {str(raw)[:80]!r}")
    # Files (data_model.py) name the field event_type, the wire names it type: either is taken.
    kind = raw.get("type", raw.get("event_type"))
    if "type" in raw and "event_type" in raw and raw["type"] != raw["event_type"]:
        raise InvalidRequest(f"event has 'type' {raw['type']!r} and 'event_type' {raw['event_type']!r}; send one")
    item_id = _id(raw, "item_id", required=True)
    if kind == "status":
        status = raw.get("status")
        if status not in ITEM_STATUSES:
            raise InvalidRequest(f"status event: 'status' must be one of {list(ITEM_STATUSES)}, got {status!r}")
        return StatusEvent(item_id=item_id, status=status)
    if kind not in EVENT_TYPES:
        raise InvalidRequest(f"event 'type' must be one of {[*EVENT_TYPES, 'status']}, got {kind!r}")
    user_id = _id(raw, "user_id", required=False)
    session_id = _id(raw, "session_id", required=False)
    if user_id is None and session_id is None:
        raise InvalidRequest("interaction event needs a 'user_id' or a 'session_id'; both are missing")
    platform = raw.get("platform")
    if platform is not None and not isinstance(platform, str):
        raise InvalidRequest(f"event field 'platform' must be text, got {platform!r}")
    if platform is not None and len(platform) > _MAX_PLATFORM_LENGTH:
        raise InvalidRequest(f"event field 'platform' {platform[:40]!r}... is longer than {_MAX_PLATFORM_LENGTH} characters")
    return InteractionEvent(
        item_id=item_id,
        event_type=kind,
        ts=_ts(raw.get("ts"), now_s=now_s),
        user_id=user_id,
        session_id=session_id,
        platform=(platform or "").strip().lower() or None,
    )
