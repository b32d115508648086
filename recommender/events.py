"""Events on the wire: what the gRPC RecordEvents call, the HTTP gateway and `hotfeed events push`
send into the event stream, and how one is checked.

Three kinds, as JSON objects:

    interaction  {"type": "view"|"click"|"like"|"cart"|"chat"|"purchase", "item_id": "...",
                  "user_id": "..." (optional), "session_id": "..." (optional, one of the two needed),
                  "ts": ISO-8601 text or unix seconds (optional: time of receipt), "platform": "..."}
    status       {"type": "status", "item_id": "...", "status": "active"|"reserved"|"sold"|"deleted"|"sanctioned"}
    item         {"type": "item", "item_id": "...", and any of: "title", "category" (a path, "a/b/c"),
                  "price" (>= 0), "region", "seller_id", "status", "created_at", "bumped_at" (ISO-8601
                  text or unix seconds)}: a listing created (every field but status and the times,
                  which default to "active" and the time of receipt) or edited (only what changed).
                  Any other field is refused by name.

``parse_event`` is pure and is the one place these rules live.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from recommender.data_model import EVENT_TYPES, ITEM_STATUSES
from recommender.errors import InvalidRequest

__all__ = ["InteractionEvent", "StatusEvent", "ItemEvent", "Event", "parse_event", "MAX_ID_LENGTH",
           "ITEM_EVENT_FIELDS", "NEW_ITEM_FIELDS"]

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


@dataclass(frozen=True)
class ItemEvent:
    """A listing created or edited: the fields the event carried, checked (None: not sent).

    Times are unix seconds. Whether it creates or edits depends on the index, so the
    indexer, not the parser, decides whether the fields suffice (``NEW_ITEM_FIELDS``).
    """

    item_id: str
    title: str | None = None
    category: str | None = None
    price: float | None = None
    region: str | None = None
    seller_id: str | None = None
    status: str | None = None
    created_at: float | None = None
    bumped_at: float | None = None

    def changes(self) -> dict[str, Any]:
        """Return the fields the event set, by name."""
        return {name: value for name in ITEM_EVENT_FIELDS if (value := getattr(self, name)) is not None}


Event = InteractionEvent | StatusEvent | ItemEvent

# The listing fields an item event may carry, and those a new listing must have.
ITEM_EVENT_FIELDS = ("title", "category", "price", "region", "seller_id", "status", "created_at", "bumped_at")
NEW_ITEM_FIELDS = ("title", "category", "price", "region", "seller_id")
_MAX_TITLE_LENGTH = 300
_MAX_CATEGORY_LENGTH = 200
_MAX_REGION_LENGTH = 64
_MAX_PRICE = 1e12


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


def _ts(value: Any, *, now_s: float, key: str = "ts") -> float:
    if value is None or value == "":
        return now_s
    if isinstance(value, bool):
        raise InvalidRequest(f"event field {key!r} must be ISO-8601 text or unix seconds, got {value!r}")
    if isinstance(value, (int, float)):
        ts = float(value)
        if not math.isfinite(ts):
            raise InvalidRequest(f"event field {key!r} must be a finite number of unix seconds, got {value!r}")
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace(" UTC", "+00:00"))
        except ValueError:
            raise InvalidRequest(f"event field {key!r} is not ISO-8601 or unix seconds: {value!r}") from None
        ts = (parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)).timestamp()
    else:
        raise InvalidRequest(f"event field {key!r} must be ISO-8601 text or unix seconds, got {value!r}")
    if ts < 0:
        raise InvalidRequest(f"event field {key!r} {value!r} is before 1970; send the time the event happened")
    if ts > now_s + _MAX_FUTURE_S:
        raise InvalidRequest(f"event field {key!r} {value!r} is in the future; send the time the event happened")
    return ts


def _text(raw: dict[str, Any], key: str, *, limit: int) -> str | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidRequest(f"item event field {key!r} must be text, got {value!r}")
    text = " ".join(value.split())
    if not text or len(text) > limit:
        raise InvalidRequest(f"item event field {key!r} must be 1..{limit} characters, got {value[:60]!r}")
    return text


def _category(raw: dict[str, Any]) -> str | None:
    path = _text(raw, "category", limit=_MAX_CATEGORY_LENGTH)
    if path is None:
        return None
    parts = [part.strip() for part in path.split("/")]
    if not all(parts):
        raise InvalidRequest(f"item event field 'category' {path!r} has an empty level; send a path like 'a/b/c'")
    return "/".join(parts)


def _price(raw: dict[str, Any]) -> float | None:
    value = raw.get("price")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidRequest(f"item event field 'price' must be a number, got {value!r}")
    price = float(value)
    if not math.isfinite(price) or price < 0 or price > _MAX_PRICE:
        raise InvalidRequest(f"item event field 'price' must be a finite number in 0..{_MAX_PRICE:.0e}, got {value!r}")
    return price


def _parse_item(raw: dict[str, Any], item_id: str, *, now_s: float) -> ItemEvent:
    unknown = sorted(set(raw) - {"type", "event_type", "item_id", *ITEM_EVENT_FIELDS})
    if unknown:
        raise InvalidRequest(f"item event has unknown field(s) {unknown}; an item event carries item_id and "
                             f"any of {list(ITEM_EVENT_FIELDS)}")
    status = raw.get("status")
    if status is not None and status not in ITEM_STATUSES:
        raise InvalidRequest(f"item event: 'status' must be one of {list(ITEM_STATUSES)}, got {status!r}")
    times = {key: (None if raw.get(key) in (None, "") else _ts(raw[key], now_s=now_s, key=key))
             for key in ("created_at", "bumped_at")}
    if times["created_at"] is not None and times["bumped_at"] is not None and times["bumped_at"] < times["created_at"]:
        raise InvalidRequest(f"item event: 'bumped_at' {raw['bumped_at']!r} is before 'created_at' {raw['created_at']!r}")
    event = ItemEvent(
        item_id=item_id,
        title=_text(raw, "title", limit=_MAX_TITLE_LENGTH),
        category=_category(raw),
        price=_price(raw),
        region=_text(raw, "region", limit=_MAX_REGION_LENGTH),
        seller_id=_id(raw, "seller_id", required=False),
        status=status,
        **times,
    )
    if not event.changes():
        raise InvalidRequest(f"item event for {item_id!r} changes nothing; send at least one of {list(ITEM_EVENT_FIELDS)}")
    return event


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
    if kind == "item":
        return _parse_item(raw, item_id, now_s=now_s)
    if kind == "status":
        status = raw.get("status")
        if status not in ITEM_STATUSES:
            raise InvalidRequest(f"status event: 'status' must be one of {list(ITEM_STATUSES)}, got {status!r}")
        return StatusEvent(item_id=item_id, status=status)
    if kind not in EVENT_TYPES:
        raise InvalidRequest(f"event 'type' must be one of {[*EVENT_TYPES, 'status', 'item']}, got {kind!r}")
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
