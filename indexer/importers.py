"""Importers for the real event samples: Taobao UserBehavior and REES46 into the documented frames.

Each importer reads one raw file, reports every row it leaves out (with its row number in
the source and the reason), derives what the source lacks, and returns an ``ImportResult``
holding the events, items and users frames of ``recommender.data_model`` plus plain-text
notes on what was derived. ``write_import`` stores them as Parquet.

Row numbers: Taobao has no header, so row n is line n of the file; REES46 has a header, so
row n is its n-th data line (the header is not counted), as in ``recommender.data_model``.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from recommender.data_model import (
    BadRow,
    ValidationReport,
    validate_events,
    validate_items,
    validate_users,
    write_frame,
)
from recommender.errors import InvalidRequest, NotFound
from indexer.sessions import assign_sessions_by_gap

__all__ = [
    "TAOBAO_SAMPLE",
    "REES46_SAMPLE",
    "TAOBAO_EVENT_TYPES",
    "REES46_EVENT_TYPES",
    "ImportResult",
    "read_complete_lines",
    "locate_sample",
    "import_taobao",
    "import_rees46",
    "write_import",
]

# Paths relative to settings.paths.shared_data_dir.
TAOBAO_SAMPLE = Path("taobao-userbehavior-head") / "UserBehavior_head.csv"
REES46_SAMPLE = Path("rees46-oct2019-head") / "2019-Oct_head.csv"

TAOBAO_EVENT_TYPES: dict[str, str] = {"pv": "view", "cart": "cart", "fav": "like", "buy": "purchase"}
# remove_from_cart has no counterpart in our event types; validation rejects it by name.
REES46_EVENT_TYPES: dict[str, str] = {"view": "view", "cart": "cart", "purchase": "purchase"}

_TAOBAO_COLUMNS = ["user_id", "item_id", "category_id", "behavior", "ts"]
# The official UserBehavior window is 2017-11-25 .. 2017-12-03 in UTC+8; a few rows lie outside it.
_TAOBAO_WINDOW_UTC = (pd.Timestamp("2017-11-24 16:00", tz="UTC"), pd.Timestamp("2017-12-03 16:00", tz="UTC"))


@dataclass
class ImportResult:
    """The frames an import produced, the validation reports and notes on what was derived."""

    name: str
    source: Path
    events: pd.DataFrame
    items: pd.DataFrame
    users: pd.DataFrame
    reports: dict[str, ValidationReport]
    derived: list[str] = field(default_factory=list)

    def summary_lines(self) -> list[str]:
        """Return human-readable lines: each derivation note, then each report's summary."""
        lines = [f"derived: {note}" for note in self.derived]
        lines += [f"validation: {report.summary()}" for report in self.reports.values()]
        return lines


def locate_sample(shared_data_dir: Path, relative: Path, *, src: Path | None = None) -> Path:
    """Return the sample file to read: ``src`` when given, else ``shared_data_dir / relative``.

    Raises NotFound naming the path and where the file should come from.
    """
    if src is not None and not Path(src).is_file():
        raise NotFound(
            f"--src {str(src)!r} does not exist; pass an existing file, or omit --src to read "
            f"{str(Path(shared_data_dir) / relative)!r}"
        )
    path = Path(src) if src is not None else Path(shared_data_dir) / relative
    if not path.is_file():
        raise NotFound(
            f"sample file {str(path)!r} does not exist; expected {relative.as_posix()!r} under the shared data "
            f"folder {str(shared_data_dir)!r} (see SOURCE.md there). Pass --src PATH or set "
            f"HOTFEED_PATHS_SHARED_DATA_DIR to the folder that holds it."
        )
    return path


def read_complete_lines(path: Path) -> tuple[bytes, int | None]:
    """Return (the file's bytes up to its last newline, 1-based number of the cut line or None).

    A file that does not end in a newline was cut mid-line (both samples are): that last line
    is incomplete, so it is left out and its line number returned for the report.
    """
    data = Path(path).read_bytes()
    if not data or data.endswith(b"\n"):
        return data, None
    cut = data.rfind(b"\n") + 1
    return data[:cut], data.count(b"\n", 0, cut) + 1


def _read_csv_text(data: bytes, **options) -> pd.DataFrame:
    return pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False, **options)


class _RowRules:
    """Rejects rows of a raw frame before validation, keeping source row numbers for the report."""

    def __init__(self, raw: pd.DataFrame, first_row: int = 1):
        self.raw = raw.reset_index(drop=True)
        self.rownum = np.arange(first_row, first_row + len(raw))
        self.bad_rows: list[BadRow] = []
        self.rows_in = len(raw)

    def reject(self, mask: pd.Series | np.ndarray, reason: str) -> int:
        mask = np.asarray(mask, dtype=bool)
        if mask.any():
            self.bad_rows.extend(BadRow(int(r), reason) for r in self.rownum[mask].tolist())
            self.raw = self.raw.loc[~mask].reset_index(drop=True)
            self.rownum = self.rownum[~mask]
        return int(mask.sum())

    def validate_events(self, events_raw: pd.DataFrame, *, extra_bad: list[BadRow]) -> tuple[pd.DataFrame, ValidationReport]:
        """Return validated events and one report whose row numbers point into the source."""
        events, report = validate_events(events_raw)
        # validate_events numbers rows 1.. within the frame it got; map them back to the source.
        mapped = [BadRow(int(self.rownum[b.row - 1]), b.reason) for b in report.bad_rows]
        bad = sorted(extra_bad + self.bad_rows + mapped, key=lambda b: b.row)
        rows_in = self.rows_in + len(extra_bad)
        return events, ValidationReport("events", rows_in, len(events), bad)


def _items_from_events(events: pd.DataFrame, attributes: pd.DataFrame) -> pd.DataFrame:
    """Return raw item rows: first-seen time as created_at plus each item's last-seen attributes."""
    frame = attributes.assign(item_id=events["item_id"].array, ts=events["ts"].array)
    frame = frame.sort_values("ts", kind="stable")
    grouped = frame.groupby("item_id", sort=True)
    items = grouped.last().drop(columns=["ts"])
    items["created_at"] = grouped["ts"].min()
    return items.reset_index()


def _type_counts(events: pd.DataFrame) -> str:
    counts = events["event_type"].value_counts()
    return ", ".join(f"{kind} {n:,}" for kind, n in counts[counts > 0].items())


def _duplicate_mask(raw: pd.DataFrame) -> np.ndarray:
    return raw.duplicated(keep="first").to_numpy()


def import_taobao(path: Path, *, session_gap_min: float = 30.0) -> ImportResult:
    """Return the Taobao UserBehavior sample as documented frames, with reports and derivations.

    Maps pv/cart/fav/buy to view/cart/like/purchase; leaves out the cut last line, exact
    duplicate rows and rows outside the dataset's official 2017-11-25..2017-12-03 (UTC+8)
    window; derives sessions from ``session_gap_min``-minute gaps and items from events.
    """
    data, cut_line = read_complete_lines(path)
    raw = _read_csv_text(data, header=None)
    if raw.shape[1] != len(_TAOBAO_COLUMNS):
        raise InvalidRequest(
            f"{str(path)!r} has {raw.shape[1]} columns, not Taobao UserBehavior's 5 "
            f"(no header; user,item,category,behavior,unix ts); pass the right file with --src"
        )
    raw.columns = _TAOBAO_COLUMNS
    extra_bad = [BadRow(cut_line, "truncated last line (no trailing newline)")] if cut_line else []
    rules = _RowRules(raw)
    rules.reject(_duplicate_mask(rules.raw), "exact duplicate of an earlier row")
    ts = pd.to_datetime(pd.to_numeric(rules.raw["ts"], errors="coerce"), unit="s", utc=True)
    outside = ts.notna() & ((ts < _TAOBAO_WINDOW_UTC[0]) | (ts >= _TAOBAO_WINDOW_UTC[1]))
    rules.reject(outside, "ts outside the dataset window 2017-11-25..2017-12-03 (UTC+8)")

    kept = rules.raw
    behavior = kept["behavior"].str.strip().str.lower()
    events_raw = pd.DataFrame(
        {
            # Parsed here: validation guesses unix seconds only when most rows are numeric.
            "ts": pd.to_datetime(pd.to_numeric(kept["ts"], errors="coerce"), unit="s", utc=True),
            "user_id": kept["user_id"],
            "item_id": kept["item_id"],
            "event_type": behavior.map(TAOBAO_EVENT_TYPES).fillna(behavior),
            "category": kept["category_id"].str.strip(),
        }
    )
    events, report = rules.validate_events(events_raw, extra_bad=extra_bad)
    valid_rows = _valid_positions(events_raw, report, rules)
    category = events_raw["category"].to_numpy()[valid_rows]
    events["session_id"] = assign_sessions_by_gap(events, gap_min=session_gap_min)

    items_raw = _items_from_events(events, pd.DataFrame({"category": category}))
    items_raw["price"] = 0.0
    items, items_report = validate_items(items_raw)
    users, users_report = validate_users(pd.DataFrame({"user_id": events["user_id"].dropna().unique()}))
    n_sessions = events["session_id"].nunique()
    derived = [
        f"dropped the cut last line {cut_line} of the file" if cut_line else "the file ends cleanly (no cut line)",
        f"event types: pv->view, cart->cart, fav->like, buy->purchase ({_type_counts(events)})",
        f"session_id: {n_sessions:,} sessions from {session_gap_min:g}-minute inactivity gaps per user",
        f"items: {len(items):,} from events; created_at = first-seen time, bumped_at = created_at, status active",
        "category: the source's leaf category id, a one-level path (Taobao publishes no category tree)",
        f"price: absent from the source; set to 0.0 for all {len(items):,} items (do not use price features here)",
        "title, region, seller_id: absent from the source; left empty",
        f"users: {len(users):,} ids only; gender, birth_year, region, platform, signup_date absent",
        "platform: absent from the source; left empty on events",
    ]
    return ImportResult(
        "taobao", Path(path), events, items, users,
        {"events": report, "items": items_report, "users": users_report}, derived,
    )


def _valid_positions(events_raw: pd.DataFrame, report: ValidationReport, rules: _RowRules) -> np.ndarray:
    """Return positions in ``events_raw`` that validation kept, to carry extra columns along."""
    rejected_rows = {b.row for b in report.bad_rows}
    return np.flatnonzero(~np.isin(rules.rownum, np.fromiter(rejected_rows, dtype=np.int64, count=len(rejected_rows))))


def import_rees46(path: Path, *, session_gap_min: float = 30.0) -> ImportResult:
    """Return the REES46 multi-category store sample as documented frames, with reports and derivations.

    Keeps the source's user_session as session_id (deriving gap-based sessions only where it is
    empty); category_code "a.b.c" becomes the path "a/b/c", or "other/<category_id>" where the
    code is empty; an item's price is the last price seen for it. Leaves out the cut last line,
    exact duplicate rows, and event types we do not model (remove_from_cart).
    """
    data, cut_line = read_complete_lines(path)
    raw = _read_csv_text(data)
    expected = {"event_time", "event_type", "product_id", "category_id", "category_code", "brand", "price",
                "user_id", "user_session"}
    missing = sorted(expected - set(raw.columns))
    if missing:
        raise InvalidRequest(f"{str(path)!r}: missing REES46 column(s) {missing!r}; found {list(raw.columns)!r}")
    # The header is not a data row, so the cut line's data-row number is one less than its line number.
    extra_bad = [BadRow(cut_line - 1, "truncated last line (no trailing newline)")] if cut_line else []
    rules = _RowRules(raw)
    n_duplicates = rules.reject(_duplicate_mask(rules.raw), "exact duplicate of an earlier row")

    kept = rules.raw
    event_type = kept["event_type"].str.strip().str.lower()
    code = kept["category_code"].str.strip()
    category = code.str.replace(".", "/", regex=False).where(code != "", "other/" + kept["category_id"].str.strip())
    events_raw = pd.DataFrame(
        {
            "ts": kept["event_time"],
            "user_id": kept["user_id"],
            "session_id": kept["user_session"],
            "item_id": kept["product_id"],
            "event_type": event_type.map(REES46_EVENT_TYPES).fillna(event_type),
        }
    )
    events, report = rules.validate_events(events_raw, extra_bad=extra_bad)
    valid_rows = _valid_positions(events_raw, report, rules)
    missing_session = events["session_id"].isna()
    if missing_session.any():
        derived_sessions = assign_sessions_by_gap(events, gap_min=session_gap_min, prefix="gap-")
        events["session_id"] = events["session_id"].fillna(derived_sessions)

    attributes = pd.DataFrame(
        {
            "category": category.to_numpy()[valid_rows],
            "price": pd.to_numeric(kept["price"], errors="coerce").to_numpy()[valid_rows],
            "brand": kept["brand"].str.strip().to_numpy()[valid_rows],
            "leaf": code.str.rsplit(".", n=1).str[-1].to_numpy()[valid_rows],
        }
    )
    items_raw = _items_from_events(events, attributes)
    items_raw["title"] = (items_raw["brand"] + " " + items_raw["leaf"]).str.strip()
    items, items_report = validate_items(items_raw.drop(columns=["brand", "leaf"]))
    users, users_report = validate_users(pd.DataFrame({"user_id": events["user_id"].dropna().unique()}))
    n_other = int(items["category"].str.startswith("other/").sum())
    derived = [
        f"dropped the cut last line (data row {cut_line - 1})" if cut_line else "the file ends cleanly (no cut line)",
        f"left out {n_duplicates:,} exact duplicate rows (double logging in the source)",
        f"session_id: the source's user_session; {int(missing_session.sum()):,} empty ones derived from "
        f"{session_gap_min:g}-minute gaps",
        f"items: {len(items):,} from events; created_at = first-seen time, bumped_at = created_at, status active",
        f"category: category_code as a path (a.b -> a/b); {n_other:,} items without a code get 'other/<category_id>'",
        "price: the last price seen for the item (the source logs price at event time)",
        "title: brand + leaf category name; region and seller_id absent, left empty",
        f"users: {len(users):,} ids only; gender, birth_year, region, platform, signup_date absent",
    ]
    return ImportResult(
        "rees46", Path(path), events, items, users,
        {"events": report, "items": items_report, "users": users_report}, derived,
    )


def write_import(result: ImportResult, out_dir: Path) -> dict[str, Path]:
    """Write events/items/users of ``result`` as Parquet under ``out_dir``; return the paths by kind."""
    out_dir = Path(out_dir)
    return {
        kind: write_frame(frame, out_dir / f"{kind}.parquet")
        for kind, frame in (("events", result.events), ("items", result.items), ("users", result.users))
    }
