"""The documented data model: items, users and events as pandas frames, with validation.

Every reader and writer in hotfeed (indexer imports, the model trainer, the clustering job)
goes through these frames, so a file in this format works everywhere:

events (CSV or Parquet)
    ts          event time; ISO-8601 text or unix seconds; stored as UTC timestamps
    user_id     permanent user id; empty for anonymous visitors
    session_id  session id; derived from 30-minute gaps when absent
    item_id     item id (text)
    event_type  one of EVENT_TYPES
    platform    optional: ios, android, web, ...
items
    item_id, title, category (slash-separated path, e.g. "electronics/phone"), price,
    region, seller_id, status (one of ITEM_STATUSES), created_at, bumped_at
users (every column but user_id optional)
    user_id, gender ("m", "f" or empty), birth_year, region, platform, signup_date

Validation is vectorized. Rows that fail are reported with their 1-based row number in
the source file and the reason, counted, and left out; nothing is dropped silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from recommender.errors import InvalidRequest, NotFound

__all__ = [
    "EVENT_TYPES",
    "EVENTS_FILE_HELP",
    "ITEM_STATUSES",
    "EVENT_COLUMNS",
    "ITEM_COLUMNS",
    "USER_COLUMNS",
    "BadRow",
    "ValidationReport",
    "validate_events",
    "validate_items",
    "validate_users",
    "read_frame",
    "read_events",
    "read_items",
    "read_users",
    "write_frame",
]

EVENT_TYPES: tuple[str, ...] = ("view", "click", "like", "cart", "chat", "purchase")
ITEM_STATUSES: tuple[str, ...] = ("active", "reserved", "sold", "deleted", "sanctioned")

EVENT_COLUMNS: tuple[str, ...] = ("ts", "user_id", "session_id", "item_id", "event_type", "platform")
ITEM_COLUMNS: tuple[str, ...] = (
    "item_id", "title", "category", "price", "region", "seller_id", "status", "created_at", "bumped_at",
)
USER_COLUMNS: tuple[str, ...] = ("user_id", "gender", "birth_year", "region", "platform", "signup_date")

# What an events file must hold, in one sentence for --help texts and error messages.
EVENTS_FILE_HELP = (
    "events file: CSV or Parquet with columns ts (ISO-8601 or unix seconds), item_id, event_type "
    "(view|click|like|cart|chat|purchase) and user_id and/or session_id; sessions are cut at 30-minute "
    "gaps when session_id is absent. Diginetica/YOOCHOOSE: rename sessionId->session_id, itemId->item_id, "
    "timestamp/eventdate->ts, add event_type=click (see docs/session-model.md)."
)

_EXAMPLE_ROWS = 5


@dataclass(frozen=True)
class BadRow:
    row: int  # 1-based data row in the source (header not counted)
    reason: str


@dataclass
class ValidationReport:
    """What validation kept and what it left out, with reasons."""

    kind: str
    rows_in: int = 0
    rows_out: int = 0
    bad_rows: list[BadRow] = field(default_factory=list)

    @property
    def rejected(self) -> int:
        return self.rows_in - self.rows_out

    def reasons(self) -> dict[str, int]:
        """Return how many rows each reason rejected."""
        counts: dict[str, int] = {}
        for bad in self.bad_rows:
            counts[bad.reason] = counts.get(bad.reason, 0) + 1
        return counts

    def summary(self) -> str:
        """Return a one-line account: kept, rejected, by reason, with example row numbers."""
        if not self.bad_rows:
            return f"{self.kind}: {self.rows_out:,} rows kept, none rejected"
        parts = []
        for reason, n in sorted(self.reasons().items(), key=lambda kv: -kv[1]):
            rows = [b.row for b in self.bad_rows if b.reason == reason][:_EXAMPLE_ROWS]
            parts.append(f"{n:,} {reason} (rows {', '.join(map(str, rows))}{', ...' if n > len(rows) else ''})")
        return f"{self.kind}: {self.rows_out:,} rows kept, {self.rejected:,} rejected: " + "; ".join(parts)


def _require_columns(df: pd.DataFrame, required: tuple[str, ...], kind: str) -> None:
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise InvalidRequest(
            f"{kind}: missing column(s) {missing!r}; found {list(df.columns)!r}. "
            f"Rename your columns to the documented format (see recommender/data_model.py)."
        )


def _parse_time(values: pd.Series) -> pd.Series:
    """Return UTC timestamps from ISO text or unix seconds; NaT where unparseable."""
    if pd.api.types.is_datetime64_any_dtype(values):
        out = pd.to_datetime(values, utc=True)
        return out
    numeric = pd.to_numeric(values, errors="coerce")
    if numeric.notna().mean() > 0.9:
        return pd.to_datetime(numeric, unit="s", utc=True, errors="coerce")
    text = values.astype("string").str.replace(" UTC", "", regex=False)
    return pd.to_datetime(text, utc=True, errors="coerce", format="mixed")


def _text(values: pd.Series) -> pd.Series:
    out = values.astype("string").str.strip()
    return out.mask(out == "", pd.NA)


class _Checker:
    """Collects bad rows across rules; each rule marks rows with one reason."""

    def __init__(self, df: pd.DataFrame, kind: str):
        self.kind = kind
        self.df = df
        self.bad = pd.Series(False, index=df.index)
        self.bad_rows: list[BadRow] = []
        self._rownum = pd.Series(np.arange(1, len(df) + 1), index=df.index)

    def reject(self, mask: pd.Series, reason: str) -> None:
        new = mask.fillna(True) & ~self.bad
        if new.any():
            self.bad_rows.extend(BadRow(int(r), reason) for r in self._rownum[new].tolist())
            self.bad |= new

    def result(self) -> tuple[pd.DataFrame, ValidationReport]:
        kept = self.df.loc[~self.bad].reset_index(drop=True)
        self.bad_rows.sort(key=lambda b: b.row)
        return kept, ValidationReport(self.kind, len(self.df), len(kept), self.bad_rows)


def validate_events(raw: pd.DataFrame) -> tuple[pd.DataFrame, ValidationReport]:
    """Return (events in the documented dtypes, report of rejected rows).

    Raises InvalidRequest when a required column is missing.
    """
    _require_columns(raw, ("ts", "item_id", "event_type"), "events")
    df = pd.DataFrame(index=raw.index)
    df["ts"] = _parse_time(raw["ts"])
    df["user_id"] = _text(raw["user_id"]) if "user_id" in raw else pd.Series(pd.NA, index=raw.index, dtype="string")
    df["session_id"] = (
        _text(raw["session_id"]) if "session_id" in raw else pd.Series(pd.NA, index=raw.index, dtype="string")
    )
    df["item_id"] = _text(raw["item_id"])
    df["event_type"] = _text(raw["event_type"]).str.lower()
    df["platform"] = _text(raw["platform"]) if "platform" in raw else pd.Series(pd.NA, index=raw.index, dtype="string")

    check = _Checker(df, "events")
    check.reject(df["ts"].isna(), "unparseable ts")
    check.reject(df["item_id"].isna(), "missing item_id")
    check.reject(~df["event_type"].isin(EVENT_TYPES), f"event_type not in {list(EVENT_TYPES)}")
    check.reject(df["user_id"].isna() & df["session_id"].isna(), "neither user_id nor session_id")
    events, report = check.result()
    events["event_type"] = pd.Categorical(events["event_type"], categories=list(EVENT_TYPES))
    return events, report


def validate_items(raw: pd.DataFrame) -> tuple[pd.DataFrame, ValidationReport]:
    """Return (items in the documented dtypes, report of rejected rows).

    Missing optional columns get defaults: status "active", bumped_at = created_at,
    region/seller_id/title empty. Duplicate item ids keep the last row.
    """
    _require_columns(raw, ("item_id", "category", "price", "created_at"), "items")
    df = pd.DataFrame(index=raw.index)
    df["item_id"] = _text(raw["item_id"])
    df["title"] = _text(raw["title"]).fillna("") if "title" in raw else ""
    df["category"] = _text(raw["category"])
    df["price"] = pd.to_numeric(raw["price"], errors="coerce")
    df["region"] = _text(raw["region"]).fillna("") if "region" in raw else ""
    df["seller_id"] = _text(raw["seller_id"]).fillna("") if "seller_id" in raw else ""
    df["status"] = _text(raw["status"]).str.lower().fillna("active") if "status" in raw else "active"
    df["created_at"] = _parse_time(raw["created_at"])
    df["bumped_at"] = _parse_time(raw["bumped_at"]) if "bumped_at" in raw else df["created_at"]
    df["bumped_at"] = df["bumped_at"].fillna(df["created_at"])

    check = _Checker(df, "items")
    check.reject(df["item_id"].isna(), "missing item_id")
    check.reject(df["category"].isna(), "missing category")
    check.reject(df["price"].isna() | (df["price"] < 0), "price missing or negative")
    check.reject(df["created_at"].isna(), "unparseable created_at")
    check.reject(~df["status"].isin(ITEM_STATUSES), f"status not in {list(ITEM_STATUSES)}")
    items, report = check.result()
    items = items.drop_duplicates("item_id", keep="last").reset_index(drop=True)
    return items, report


def validate_users(raw: pd.DataFrame) -> tuple[pd.DataFrame, ValidationReport]:
    """Return (users in the documented dtypes, report of rejected rows)."""
    _require_columns(raw, ("user_id",), "users")
    df = pd.DataFrame(index=raw.index)
    df["user_id"] = _text(raw["user_id"])
    gender = _text(raw["gender"]).str.lower().str[:1] if "gender" in raw else pd.Series(pd.NA, index=raw.index)
    df["gender"] = gender.astype("string")
    df["birth_year"] = (
        pd.to_numeric(raw["birth_year"], errors="coerce").astype("Int64") if "birth_year" in raw
        else pd.Series(pd.NA, index=raw.index, dtype="Int64")
    )
    for col in ("region", "platform"):
        df[col] = _text(raw[col]) if col in raw else pd.Series(pd.NA, index=raw.index, dtype="string")
    df["signup_date"] = (
        _parse_time(raw["signup_date"]) if "signup_date" in raw
        else pd.Series(pd.NaT, index=raw.index, dtype="datetime64[ns, UTC]")
    )
    check = _Checker(df, "users")
    check.reject(df["user_id"].isna(), "missing user_id")
    check.reject(df["gender"].notna() & ~df["gender"].isin(["m", "f"]), "gender not m/f/empty")
    check.reject(
        df["birth_year"].notna() & ((df["birth_year"] < 1900) | (df["birth_year"] > 2030)), "birth_year out of range"
    )
    users, report = check.result()
    return users.drop_duplicates("user_id", keep="last").reset_index(drop=True), report


def read_frame(path: str | Path, **csv_options) -> pd.DataFrame:
    """Return the raw frame of a CSV or Parquet file, all CSV columns as text.

    Raises NotFound when the file is missing and InvalidRequest for other suffixes.
    """
    p = Path(path)
    if not p.exists():
        raise NotFound(f"file {str(p)!r} does not exist")
    if p.suffix == ".parquet":
        return pd.read_parquet(p)
    if p.suffix in (".csv", ".gz", ".txt"):
        return pd.read_csv(p, dtype=str, keep_default_na=False, **csv_options)
    raise InvalidRequest(f"file {str(p)!r}: unsupported suffix {p.suffix!r}; use .csv or .parquet")


def write_frame(df: pd.DataFrame, path: str | Path) -> Path:
    """Write a frame as Parquet (or CSV when the suffix is .csv) and return the path."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    if p.suffix == ".csv":
        df.to_csv(p, index=False)
    else:
        df.to_parquet(p, index=False)
    return p


def read_events(path: str | Path) -> tuple[pd.DataFrame, ValidationReport]:
    """Return validated events from a file in the documented format, with the report."""
    return validate_events(read_frame(path))


def read_items(path: str | Path) -> tuple[pd.DataFrame, ValidationReport]:
    """Return validated items from a file in the documented format, with the report."""
    return validate_items(read_frame(path))


def read_users(path: str | Path) -> tuple[pd.DataFrame, ValidationReport]:
    """Return validated users from a file in the documented format, with the report."""
    return validate_users(read_frame(path))
