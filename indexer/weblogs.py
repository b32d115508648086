"""nginx access logs (combined format) into cleaned events.

The cleaning rules run in this order, each counting what it removed:

1. unparseable line         not in nginx ``combined`` format (reported with its line number)
2. not an item page         the request path does not match the item regex
3. non-2xx status           aborted (499), redirected (301/302), failed (4xx/5xx) requests
4. exact duplicate line     the same line logged twice (double logging); the first is kept
5. abusive burst            the same client hit the same item ``min_hits`` or more times
                            within ``window_s`` seconds; every hit of the burst is removed
6. invalid event            rows ``recommender.data_model.validate_events`` rejects

The survivors are sessionized per client by inactivity gaps. A client is the logged-in
user (``$remote_user``) when there is one, else the address and user agent together.

The item regex must have a named group ``item_id``; an optional group ``event_type``
(for example ``/items/42/like``) names the event type, and requests without it are views.
"""

from __future__ import annotations

import gzip
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from recommender.data_model import BadRow, ValidationReport, validate_events
from recommender.errors import InvalidRequest, NotFound
from indexer._time import epoch_ns
from indexer.sessions import assign_sessions_by_gap

__all__ = [
    "COMBINED_LOG_PATTERN",
    "WeblogImport",
    "read_log_lines",
    "parse_combined_log",
    "match_item_requests",
    "drop_non_2xx",
    "drop_exact_duplicates",
    "drop_abusive_bursts",
    "platform_from_user_agent",
    "clean_weblog",
]

COMBINED_LOG_PATTERN = (
    r'^(?P<remote_addr>\S+) \S+ (?P<remote_user>\S+) \[(?P<time_local>[^\]]+)\] '
    r'"(?P<request>(?:[^"\\]|\\.)*)" (?P<status>\d{3}) (?P<body_bytes_sent>\S+) '
    r'"(?P<http_referer>(?:[^"\\]|\\.)*)" "(?P<http_user_agent>(?:[^"\\]|\\.)*)"'
)
_REQUEST_PATTERN = r"^(?P<method>[A-Z]+) (?P<path>\S+)(?: (?P<protocol>\S+))?$"
_TIME_FORMAT = "%d/%b/%Y:%H:%M:%S %z"


@dataclass
class WeblogImport:
    """Events cleaned from a log, how many lines each rule removed, and the unparseable lines."""

    events: pd.DataFrame
    lines_in: int
    removed: dict[str, int]
    bad_lines: list[BadRow] = field(default_factory=list)

    def report(self) -> ValidationReport:
        """Return the unparseable and invalid lines as a ValidationReport (line numbers, reasons)."""
        return ValidationReport("nginx log", self.lines_in, len(self.events), list(self.bad_lines))

    def summary_lines(self) -> list[str]:
        """Return one line per rule with the rows it removed, then the total kept."""
        lines = [f"removed {n:,} rows: {rule}" for rule, n in self.removed.items()]
        lines.append(f"kept {len(self.events):,} events of {self.lines_in:,} log lines")
        return lines


def _extract_groups(text: pd.Series, pattern: str | re.Pattern) -> pd.DataFrame:
    """Return one string column per named group of ``pattern``; <NA> in every column where it does not match.

    Uses Arrow's RE2 engine (vectorized C++); patterns RE2 cannot run (backreferences,
    lookarounds) fall back to Python's re, row by row. Groups that did not take part in
    a match come back as <NA> as well.
    """
    source = pattern.pattern if isinstance(pattern, re.Pattern) else pattern
    names = list(re.compile(source).groupindex)
    try:
        found = pc.extract_regex(pa.array(text.to_numpy(dtype=object, na_value=None), type=pa.string()), source)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        out = text.str.extract(source)
        return out[names].astype("string").mask(lambda f: f == "")
    matched = np.asarray(found.is_valid(), dtype=bool)
    columns = {}
    for name in names:
        values = pd.Series(pd.array(found.field(name).to_pylist(), dtype="string"), index=text.index)
        columns[name] = values.where(matched & (values != "").fillna(False).to_numpy(), pd.NA)
    return pd.DataFrame(columns, index=text.index)


def read_log_lines(path: Path) -> pd.Series:
    """Return the lines of an access log (plain or .gz) as a Series indexed by 1-based line number.

    Raises NotFound when the file does not exist.
    """
    p = Path(path)
    if not p.is_file():
        raise NotFound(f"log file {str(p)!r} does not exist; pass the path of an nginx access log")
    opener = gzip.open if p.suffix == ".gz" else open
    with opener(p, "rt", encoding="utf-8", errors="replace") as fh:
        lines = fh.read().splitlines()
    return pd.Series(lines, index=pd.RangeIndex(1, len(lines) + 1), dtype="string")


def parse_combined_log(lines: pd.Series | Iterable[str]) -> tuple[pd.DataFrame, list[BadRow]]:
    """Return (one row per parseable line, the unparseable lines as BadRows).

    Columns: line (the line number), raw, remote_addr, remote_user (<NA> for "-"), ts (UTC),
    method, path, status (int), http_referer, http_user_agent. Line numbers are the Series
    index when given a Series, else 1-based positions.
    """
    if not isinstance(lines, pd.Series):
        lines = pd.Series(list(lines), dtype="string")
        lines.index = pd.RangeIndex(1, len(lines) + 1)
    text = lines.astype("string")
    fields = _extract_groups(text, COMBINED_LOG_PATTERN)
    request = _extract_groups(fields["request"], _REQUEST_PATTERN)
    parsed_time = pc.strptime(
        pa.array(fields["time_local"].to_numpy(dtype=object, na_value=None), type=pa.string()),
        format=_TIME_FORMAT, unit="s", error_is_null=True,
    )
    ts = pd.Series(pd.to_datetime(parsed_time.to_numpy(zero_copy_only=False), utc=True), index=text.index)
    ok = fields["remote_addr"].notna() & request["path"].notna() & ts.notna()
    bad = [BadRow(int(n), "not nginx combined log format") for n in lines.index[~ok.to_numpy()].tolist()]
    user = fields["remote_user"]
    parsed = pd.DataFrame(
        {
            "line": lines.index.to_numpy(),
            "raw": text,
            "remote_addr": fields["remote_addr"],
            "remote_user": user.mask(user == "-"),
            "ts": ts,
            "method": request["method"],
            "path": request["path"],
            "status": pd.to_numeric(fields["status"], errors="coerce"),
            "http_referer": fields["http_referer"],
            "http_user_agent": fields["http_user_agent"],
        },
        index=lines.index,
    )
    parsed = parsed.loc[ok.to_numpy()].reset_index(drop=True)
    parsed["status"] = parsed["status"].astype("int64")
    return parsed, bad


def match_item_requests(parsed: pd.DataFrame, *, item_regex: str) -> tuple[pd.DataFrame, int]:
    """Return (the requests whose path matches ``item_regex``, with item_id and event_type; rows removed).

    Raises InvalidRequest when the regex does not compile or has no ``item_id`` group.
    """
    try:
        compiled = re.compile(item_regex)
    except re.error as exc:
        raise InvalidRequest(f"item regex {item_regex!r} does not compile ({exc}); fix --item-regex") from None
    if "item_id" not in compiled.groupindex:
        raise InvalidRequest(
            f"item regex {item_regex!r} has no named group 'item_id'; write it like r'^/items/(?P<item_id>\\d+)'"
        )
    found = _extract_groups(parsed["path"], compiled)
    is_item = found["item_id"].notna() & (found["item_id"] != "")
    out = parsed.loc[is_item.to_numpy()].copy()
    out["item_id"] = found.loc[is_item, "item_id"].to_numpy()
    if "event_type" in compiled.groupindex:
        out["event_type"] = found.loc[is_item, "event_type"].fillna("view").str.lower().to_numpy()
    else:
        out["event_type"] = "view"
    return out.reset_index(drop=True), int((~is_item).sum())


def drop_non_2xx(hits: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Return (the hits answered 2xx, how many were not): 499 aborted, 3xx, 4xx and 5xx go."""
    ok = hits["status"].between(200, 299).to_numpy()
    return hits.loc[ok].reset_index(drop=True), int((~ok).sum())


def drop_exact_duplicates(hits: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Return (hits without repeated identical log lines, how many repeats were dropped); first kept."""
    dup = hits["raw"].duplicated(keep="first").to_numpy()
    return hits.loc[~dup].reset_index(drop=True), int(dup.sum())


def _client_key(hits: pd.DataFrame) -> pd.Series:
    anonymous = hits["remote_addr"].astype("string") + " " + hits["http_user_agent"].fillna("").astype("string")
    return hits["remote_user"].astype("string").fillna(anonymous)


def drop_abusive_bursts(hits: pd.DataFrame, *, min_hits: int = 3, window_s: float = 10.0) -> tuple[pd.DataFrame, int]:
    """Return (hits outside abusive bursts, how many hits the bursts held).

    A burst is ``min_hits`` or more hits by the same client on the same item whose first and
    last are at most ``window_s`` seconds apart; every hit inside such a window is removed, so
    a 3-hit burst removes 3 rows. Hits further apart than that stay.
    """
    if min_hits < 2:
        raise InvalidRequest(f"burst min_hits must be at least 2, got {min_hits!r}")
    n = len(hits)
    if n == 0:
        return hits, 0
    pair, _ = pd.factorize(_client_key(hits) + "\x1f" + hits["item_id"].astype("string"))
    t_ms = epoch_ns(hits["ts"]) // 1_000_000
    t_rel = t_ms - t_ms.min()
    window_ms = int(round(window_s * 1000))
    # One sortable int per hit: pair-major, time-minor, with a stride wider than span + window so
    # that "t - window" of a pair's first hit still sorts after every hit of the previous pair.
    stride = int(t_rel.max()) + window_ms + 1
    if (int(pair.max()) + 1) * stride >= np.iinfo(np.int64).max:
        raise InvalidRequest("log spans too long a time for burst detection; split the log by day")
    composite = pair.astype(np.int64) * stride + t_rel
    order = np.argsort(composite, kind="stable")
    sorted_key = composite[order]
    first_in_window = np.searchsorted(sorted_key, sorted_key - window_ms, side="left")
    positions = np.arange(n)
    in_window = positions - first_in_window + 1
    burst_end = in_window >= min_hits
    # Mark every position from first_in_window..j for each burst end j (a difference array).
    delta = np.bincount(first_in_window[burst_end], minlength=n + 1) - np.bincount(
        positions[burst_end] + 1, minlength=n + 1
    )
    in_burst_sorted = np.cumsum(delta)[:n] > 0
    in_burst = np.empty(n, dtype=bool)
    in_burst[order] = in_burst_sorted
    return hits.loc[~in_burst].reset_index(drop=True), int(in_burst.sum())


def platform_from_user_agent(user_agent: pd.Series) -> pd.Series:
    """Return "ios", "android" or "web" per user agent (<NA> stays web): a coarse guess from its text."""
    ua = user_agent.astype("string").fillna("")
    platform = pd.Series("web", index=ua.index, dtype="string")
    platform = platform.mask(ua.str.contains(r"android", case=False, regex=True), "android")
    return platform.mask(ua.str.contains(r"iphone|ipad|ipod|\bios\b", case=False, regex=True), "ios")


def clean_weblog(
    lines: pd.Series | Iterable[str],
    *,
    item_regex: str,
    burst_min_hits: int = 3,
    burst_window_s: float = 10.0,
    session_gap_min: float = 30.0,
) -> WeblogImport:
    """Return the events of an nginx combined log after every cleaning rule, with per-rule counts."""
    if not isinstance(lines, pd.Series):
        lines = pd.Series(list(lines), dtype="string")
        lines.index = pd.RangeIndex(1, len(lines) + 1)
    parsed, bad_lines = parse_combined_log(lines)
    removed: dict[str, int] = {"unparseable line": len(bad_lines)}
    hits, removed["not an item page"] = match_item_requests(parsed, item_regex=item_regex)
    hits, removed["non-2xx status"] = drop_non_2xx(hits)
    hits, removed["exact duplicate line"] = drop_exact_duplicates(hits)
    hits, removed[f"abusive burst (>= {burst_min_hits} hits on one item within {burst_window_s:g} s)"] = (
        drop_abusive_bursts(hits, min_hits=burst_min_hits, window_s=burst_window_s)
    )
    client = _client_key(hits)
    # Long address+agent keys hash into a short, stable id; logged-in users keep their name.
    client_id = hits["remote_user"].astype("string").fillna(
        "anon-" + pd.Series(pd.util.hash_array(client.to_numpy(dtype=object)), index=hits.index).astype("string")
    )
    sessions = assign_sessions_by_gap(
        pd.DataFrame({"client": client_id, "ts": hits["ts"]}), client_column="client",
        gap_min=session_gap_min, prefix="web-",
    )
    events_raw = pd.DataFrame(
        {
            "ts": hits["ts"],
            "user_id": hits["remote_user"],
            "session_id": sessions,
            "item_id": hits["item_id"],
            "event_type": hits["event_type"],
            "platform": platform_from_user_agent(hits["http_user_agent"]),
        }
    )
    events, report = validate_events(events_raw)
    line_of = hits["line"].to_numpy()
    invalid = [BadRow(int(line_of[b.row - 1]), b.reason) for b in report.bad_rows]
    removed["invalid event"] = len(invalid)
    return WeblogImport(events, len(lines), removed, sorted(bad_lines + invalid, key=lambda b: b.row))
