"""A synthetic marketplace (items, users, events) for demos, tests and benchmarks.

What it models, and how:

- Categories are two-level paths (``electronics/phones``) from ``TAXONOMY``. Each top level
  has hand-set appeal multipliers by gender and age band, and per-region multipliers drawn
  from the seed, so popularity really differs between cohorts.
- Users have gender, birth_year, region, platform and signup_date, each missing for a share
  of users (``MISSING_SHARE``); activity is log-normal, so a few users are very active.
  About ``ANONYMOUS_SESSION_SHARE`` of sessions belong to logged-out visitors.
- Items have a power-law (Pareto) attractiveness, so a few items draw most views. Each view
  picks, with probability ``fresh_view_share``, an item listed less than ``FRESH_AGE`` ago
  (marketplaces report about 70% of views on items under 8 hours old), else an older one,
  within the session's current category and weighted by attractiveness.
- Sessions drift: each next event stays in its category, moves to a sibling under the same
  top level, or jumps to a new category drawn from the user's cohort preferences.
- Non-view events (click, like, chat) act on the item viewed just before. Items get sold,
  reserved, deleted or sanctioned at times drawn per item; nobody sees an item after it
  left the market, and each sold item that had a viewer gets a purchase event from its last
  viewer, two minutes after that view, which becomes its sold time.

Everything is drawn from one ``numpy.random.Generator`` seeded by ``seed``, with no clock
read, so the same arguments give the same frames.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from recommender.data_model import EVENT_TYPES, ITEM_STATUSES
from recommender.errors import InvalidRequest
from indexer._time import utc_timestamp
from recommender.cohorts import AGE_BANDS, age_band_series

__all__ = [
    "TAXONOMY",
    "REGIONS",
    "PLATFORMS",
    "FRESH_AGE",
    "MISSING_SHARE",
    "ANONYMOUS_SESSION_SHARE",
    "DEFAULT_SYNTH_END",
    "SYNTH_STAGES",
    "SynthMarketplace",
    "generate_marketplace",
]

# top level -> (leaves, (male, female) appeal, appeal per AGE_BANDS band, median price)
TAXONOMY: dict[str, tuple[tuple[str, ...], tuple[float, float], tuple[float, ...], float]] = {
    "womens-fashion": (("dresses", "shoes", "bags", "jackets", "jewelry"), (0.2, 2.0), (1.3, 1.4, 1.2, 1.0, 0.8, 0.6), 25),
    "mens-fashion": (("shirts", "shoes", "jackets", "watches"), (2.0, 0.2), (1.2, 1.3, 1.2, 1.0, 0.8, 0.6), 30),
    "kids": (("toys", "clothes", "strollers", "books"), (0.7, 1.4), (0.2, 0.5, 1.6, 1.8, 0.8, 0.6), 15),
    "electronics": (("phones", "laptops", "consoles", "headphones", "cameras"), (1.6, 0.6), (1.5, 1.5, 1.2, 1.0, 0.8, 0.6), 180),
    "home": (("furniture", "kitchen", "decor", "garden"), (0.8, 1.2), (0.2, 0.6, 1.2, 1.4, 1.4, 1.5), 60),
    "auto": (("cars", "parts", "tires", "motorcycles"), (1.9, 0.3), (0.3, 1.0, 1.3, 1.3, 1.1, 0.9), 400),
    "sports": (("bikes", "fitness", "camping", "ski"), (1.2, 0.8), (1.2, 1.3, 1.2, 1.0, 0.8, 0.6), 70),
    "beauty": (("skincare", "makeup", "perfume"), (0.2, 2.2), (1.2, 1.5, 1.2, 1.0, 0.9, 0.7), 20),
    "hobbies": (("books", "music", "collectibles", "art"), (1.0, 1.0), (0.9, 0.8, 0.9, 1.0, 1.3, 1.6), 25),
    "realty": (("rent", "sale", "rooms"), (1.0, 1.0), (0.1, 1.2, 1.5, 1.2, 1.0, 0.8), 900),
    "pets": (("dogs", "cats", "accessories"), (0.8, 1.2), (1.0, 1.0, 1.1, 1.1, 1.0, 1.0), 30),
}
REGIONS: tuple[str, ...] = ("capital", "north", "south", "east", "west", "coast", "mountains", "lakes")
_REGION_SHARE = (0.30, 0.12, 0.12, 0.10, 0.10, 0.10, 0.08, 0.08)
PLATFORMS: tuple[str, ...] = ("ios", "android", "web")
_PLATFORM_SHARE = (0.40, 0.45, 0.15)
FRESH_AGE = pd.Timedelta(hours=8)
MISSING_SHARE: dict[str, float] = {"gender": 0.10, "birth_year": 0.15, "region": 0.05, "platform": 0.05}
ANONYMOUS_SESSION_SHARE = 0.10
DEFAULT_SYNTH_END = pd.Timestamp("2026-11-01T00:00:00Z")

# Event mix inside a session after its first event (always a view); purchases come from sales.
_EVENT_MIX: dict[str, float] = {"view": 0.82, "click": 0.08, "like": 0.06, "chat": 0.04}
# Session drift between consecutive events: stay in the category, move to a sibling, jump.
_DRIFT_STAY, _DRIFT_SIBLING = 0.70, 0.20
_MEAN_SESSION_EVENTS = 8.0
_MAX_SESSION_EVENTS = 60
_MEAN_EVENT_GAP_S = 45.0
_MAX_EVENT_GAP_S = 20 * 60.0
# Share of items ending each way, and the mean delay after listing (hours).
_ENDINGS: dict[str, tuple[float, float]] = {
    "sold": (0.20, 48.0), "deleted": (0.05, 96.0), "sanctioned": (0.01, 6.0), "reserved": (0.04, 36.0),
}
# Items are listed from this long before the event window, so old items exist from its start.
_CATALOG_LEAD = pd.Timedelta(days=14)
_OLD_ITEM_MAX_AGE = pd.Timedelta(days=30)
_RESAMPLE_ROUNDS = 4
# The stages generate_marketplace reports through on_stage, in order.
SYNTH_STAGES: tuple[str, ...] = ("users", "items", "sessions", "views", "sales", "frames")


@dataclass
class SynthMarketplace:
    """The generated frames in the documented formats, with figures for the summary line."""

    items: pd.DataFrame
    users: pd.DataFrame
    events: pd.DataFrame
    start: pd.Timestamp
    end: pd.Timestamp
    fresh_view_share: float
    seconds: float

    def summary(self) -> str:
        """Return the one-line summary: sizes, time range, fresh-view share, statuses, wall time."""
        status = self.items["status"].value_counts()
        statuses = ", ".join(f"{s} {int(status.get(s, 0)):,}" for s in ITEM_STATUSES)
        return (
            f"synth: {len(self.items):,} items, {len(self.users):,} users, {len(self.events):,} events "
            f"from {self.start:%Y-%m-%d %H:%M} to {self.end:%Y-%m-%d %H:%M} UTC; "
            f"{self.fresh_view_share:.0%} of views on items under {FRESH_AGE.total_seconds() / 3600:g} h old; "
            f"items {statuses}; generated in {self.seconds:.1f} s"
        )


def _leaf_table() -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return (leaf paths, leaf -> top index, top gender appeal [T,2], top age appeal [T,6], top price, top start)."""
    paths, top_of_leaf, gender, age, price, top_start = [], [], [], [], [], []
    for t, (top, (leaves, g, a, p)) in enumerate(TAXONOMY.items()):
        top_start.append(len(paths))
        paths += [f"{top}/{leaf}" for leaf in leaves]
        top_of_leaf += [t] * len(leaves)
        gender.append(g)
        age.append(a)
        price.append(p)
    return (paths, np.array(top_of_leaf), np.array(gender, float), np.array(age, float),
            np.array(price, float), np.array(top_start))


class _ListingSlices:
    """Items sorted by (group, listing time), so "group g, listed in (a, b]" is one contiguous slice."""

    def __init__(self, group: np.ndarray, created_s: np.ndarray, attract: np.ndarray):
        self.order = np.lexsort((created_s, group))
        self.base_s = int(created_s.min()) - 10 * 365 * 86_400
        self.stride = int(created_s.max()) - self.base_s + 20 * 365 * 86_400
        self.key = group[self.order].astype(np.int64) * self.stride + (created_s[self.order] - self.base_s)
        self.cum = np.concatenate([[0.0], np.cumsum(attract[self.order])])

    def bounds(self, group: np.ndarray, lo_s: np.ndarray, hi_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return slice bounds [lo, hi) in sorted order of the items of ``group`` listed in (lo_s, hi_s]."""
        base = group.astype(np.int64) * self.stride - self.base_s
        return (np.searchsorted(self.key, base + lo_s, side="right"),
                np.searchsorted(self.key, base + hi_s, side="right"))

    def sample_alive(self, lo: np.ndarray, hi: np.ndarray, at_s: np.ndarray, gone_s: np.ndarray,
                     rng: np.random.Generator) -> np.ndarray:
        """Return an item per slice drawn by attractiveness among items still listed at ``at_s``; -1 if none found."""
        out = np.full(len(lo), -1, dtype=np.int64)
        pending = np.arange(len(lo))
        for _ in range(_RESAMPLE_ROUNDS):
            if len(pending) == 0:
                break
            a, b = self.cum[lo[pending]], self.cum[hi[pending]]
            pos = np.searchsorted(self.cum, a + rng.random(len(pending)) * (b - a), side="right") - 1
            item = self.order[np.clip(pos, lo[pending], hi[pending] - 1)]
            alive = gone_s[item] > at_s[pending]
            out[pending[alive]] = item[alive]
            pending = pending[~alive]
        return out


def _sample_rows(cum: np.ndarray, rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Return one column index per row, drawn from the row's cumulative distribution ``cum[rows]``."""
    u = rng.random(len(rows))[:, None]
    return (cum[rows] < u).sum(axis=1).clip(max=cum.shape[1] - 1)


def _make_users(n_users: int, start: pd.Timestamp, rng: np.random.Generator) -> tuple[pd.DataFrame, dict]:
    gender = rng.choice(np.array(["m", "f"]), size=n_users)
    age = np.clip(rng.normal(34, 12, size=n_users), 14, 80).astype(int)
    birth_year = start.year - age
    region = rng.choice(len(REGIONS), size=n_users, p=_REGION_SHARE)
    platform = rng.choice(len(PLATFORMS), size=n_users, p=_PLATFORM_SHARE)
    missing = {k: rng.random(n_users) < share for k, share in MISSING_SHARE.items()}
    signup = start - pd.to_timedelta(rng.uniform(1, 730, size=n_users) * 86_400, unit="s")
    ids = pd.Series(np.arange(1, n_users + 1)).astype("string").str.zfill(7)
    users = pd.DataFrame(
        {
            "user_id": "u" + ids,
            "gender": pd.array(np.where(missing["gender"], None, gender), dtype="string"),
            "birth_year": pd.array(np.where(missing["birth_year"], None, birth_year), dtype="Int64"),
            "region": pd.array(np.where(missing["region"], None, np.array(REGIONS)[region]), dtype="string"),
            "platform": pd.array(np.where(missing["platform"], None, np.array(PLATFORMS)[platform]), dtype="string"),
            "signup_date": pd.Series(signup).dt.floor("s"),
        }
    )
    # Cohort group per user for the preference table: unknowns get their own slot (average appeal).
    band_label = age_band_series(pd.Series(birth_year), year=start.year)
    band = pd.Categorical(band_label, categories=list(AGE_BANDS)).codes
    codes = {
        "gender": np.where(missing["gender"], 2, (gender == "f").astype(int)),
        "band": np.where(missing["birth_year"], len(AGE_BANDS), band),
        "region": np.where(missing["region"], len(REGIONS), region),
        "platform": platform,
    }
    return users, codes


def _preference_table(rng: np.random.Generator) -> tuple[np.ndarray, list[str], np.ndarray, np.ndarray, np.ndarray]:
    """Return (cumulative leaf preference per group [3*7*9, L], leaf paths, leaf->top, top price, top start).

    Group index = (gender * (bands+1) + band) * (regions+1) + region, unknowns in the last slot.
    """
    paths, top_of_leaf, g_appeal, a_appeal, price, top_start = _leaf_table()
    n_top = len(TAXONOMY)
    leaf_base = rng.lognormal(0.0, 0.35, size=len(paths))
    region_appeal = rng.lognormal(0.0, 0.6, size=(n_top, len(REGIONS)))
    g = np.concatenate([g_appeal, np.ones((n_top, 1))], axis=1)  # [T, 3]: m, f, unknown
    a = np.concatenate([a_appeal, np.ones((n_top, 1))], axis=1)  # [T, 7]
    r = np.concatenate([region_appeal, np.ones((n_top, 1))], axis=1)  # [T, 9]
    top = g[:, :, None, None] * a[:, None, :, None] * r[:, None, None, :]  # [T, 3, 7, 9]
    pref = leaf_base[:, None] * top[top_of_leaf].reshape(len(paths), -1)  # [L, G]
    pref = (pref / pref.sum(axis=0, keepdims=True)).T
    return np.cumsum(pref, axis=1), paths, top_of_leaf, price, top_start


def generate_marketplace(
    *,
    n_items: int,
    n_users: int,
    days: float,
    seed: int,
    n_events: int | None = None,
    end: pd.Timestamp | str = DEFAULT_SYNTH_END,
    fresh_view_share: float = 0.7,
    on_stage: Callable[[str], None] | None = None,
) -> SynthMarketplace:
    """Return a synthetic marketplace: items, users and about ``n_events`` events over ``days`` days to ``end``.

    ``n_events`` defaults to 40 per user. ``on_stage`` is called with the name of each stage as
    it starts (for a progress bar). The event count lands within a few percent of the target:
    sessions are drawn with 2% to spare, and views of items that left the market, or that would
    run past ``end``, are dropped. Deterministic for equal arguments.
    Raises InvalidRequest for non-positive sizes.
    """
    began = time.perf_counter()
    n_events = 40 * n_users if n_events is None else n_events
    for name, value in (("items", n_items), ("users", n_users), ("days", days), ("events", n_events)):
        if not value > 0:
            raise InvalidRequest(f"synth {name} must be > 0, got {value!r}")
    if not 0 <= fresh_view_share <= 1:
        raise InvalidRequest(f"fresh_view_share must be in [0, 1], got {fresh_view_share!r}")
    rng = np.random.default_rng(seed)

    def stage(name: str) -> None:
        if on_stage is not None:
            on_stage(name)

    end_ts = utc_timestamp(end, name="end").floor("s")
    start_ts = end_ts - pd.Timedelta(days=days)
    start_s, end_s = start_ts.value // 10**9, end_ts.value // 10**9

    stage("users")
    cum_pref, paths, top_of_leaf, top_price, top_start = _preference_table(rng)
    top_size = np.diff(np.append(top_start, len(paths)))
    n_leaves = len(paths)
    users, ucode = _make_users(n_users, start_ts, rng)
    user_group = (ucode["gender"] * (len(AGE_BANDS) + 1) + ucode["band"]) * (len(REGIONS) + 1) + ucode["region"]
    anon_group = (2 * (len(AGE_BANDS) + 1) + len(AGE_BANDS)) * (len(REGIONS) + 1) + len(REGIONS)

    stage("items")
    # --- items: leaf in proportion to overall demand, listing times, power-law attractiveness.
    demand = np.diff(np.concatenate([np.zeros((cum_pref.shape[0], 1)), cum_pref], axis=1)).mean(axis=0)
    item_leaf = rng.choice(n_leaves, size=n_items, p=demand / demand.sum())
    lead_s = int(_CATALOG_LEAD.total_seconds())
    created_s = rng.integers(start_s - lead_s, end_s, size=n_items)
    attract = rng.pareto(1.2, size=n_items) + 0.05
    ending = rng.choice(len(_ENDINGS) + 1, size=n_items, p=[s for s, _ in _ENDINGS.values()]
                        + [1 - sum(s for s, _ in _ENDINGS.values())])
    delays_h = np.array([d for _, d in _ENDINGS.values()] + [1.0])
    ended_s = created_s + (rng.exponential(1.0, size=n_items) * delays_h[ending] * 3600).astype(np.int64)
    kinds = list(_ENDINGS)
    leaves_market = np.isin(ending, [kinds.index(k) for k in ("sold", "deleted", "sanctioned")])
    ends = leaves_market & (ended_s < end_s)
    gone_s = np.where(ends, ended_s, np.iinfo(np.int64).max)

    by_leaf = _ListingSlices(item_leaf, created_s, attract)
    # Small catalogs may have no fresh item in a leaf; its top level is the next-nearest choice.
    by_top = _ListingSlices(top_of_leaf[item_leaf], created_s, attract)

    stage("sessions")
    # --- sessions: user, start time with an evening peak, length.
    n_sessions = int(np.ceil(n_events / _MEAN_SESSION_EVENTS * 1.02))
    activity = rng.lognormal(0.0, 1.0, size=n_users)
    session_user = rng.choice(n_users, size=n_sessions, p=activity / activity.sum())
    anonymous = rng.random(n_sessions) < ANONYMOUS_SESSION_SHARE
    session_group = np.where(anonymous, anon_group, user_group[session_user])
    hour_weight = 0.4 + np.exp(-0.5 * ((np.arange(24) - 20.5) / 3.0) ** 2) + 0.5 * np.exp(-0.5 * ((np.arange(24) - 12.5) / 2.0) ** 2)
    day = rng.integers(0, int(np.ceil(days)), size=n_sessions)
    hour = rng.choice(24, size=n_sessions, p=hour_weight / hour_weight.sum())
    session_start_s = start_s + day * 86_400 + hour * 3600 + rng.integers(0, 3600, size=n_sessions)
    length = np.minimum(rng.geometric(1.0 / _MEAN_SESSION_EVENTS, size=n_sessions), _MAX_SESSION_EVENTS)

    # --- categories per session position: drift step by step (a loop over positions, not events).
    max_len = int(length.max())
    leaf_at = np.zeros((n_sessions, max_len), dtype=np.int32)
    leaf_at[:, 0] = _sample_rows(cum_pref, session_group, rng)
    for k in range(1, max_len):
        live = np.flatnonzero(length > k)
        prev = leaf_at[live, k - 1]
        r = rng.random(len(live))
        nxt = prev.copy()
        sib = r >= _DRIFT_STAY
        top = top_of_leaf[prev[sib]]
        nxt[sib] = top_start[top] + rng.integers(0, top_size[top])
        jump = r >= _DRIFT_STAY + _DRIFT_SIBLING
        nxt[jump] = _sample_rows(cum_pref, session_group[live[jump]], rng)
        leaf_at[live, k] = nxt

    # --- flatten to events in session order.
    pos_mask = np.arange(max_len)[None, :] < length[:, None]
    ev_session = np.repeat(np.arange(n_sessions), length)
    ev_leaf = leaf_at[pos_mask]
    first = np.zeros(len(ev_session), dtype=bool)
    first[np.cumsum(length) - length] = True
    gaps = np.minimum(rng.exponential(_MEAN_EVENT_GAP_S, size=len(ev_session)), _MAX_EVENT_GAP_S).astype(np.int64) + 1
    gaps[first] = 0
    ts_s = session_start_s[ev_session] + (np.cumsum(gaps) - np.repeat(np.cumsum(gaps)[first], length))
    mix = np.array(list(_EVENT_MIX.values()))
    ev_type = rng.choice(len(_EVENT_MIX), size=len(ev_session), p=mix / mix.sum())
    ev_type[first] = 0
    is_view = ev_type == 0
    # A click/like/chat acts on the item just viewed, so it keeps that view's category.
    last_view = np.maximum.accumulate(np.where(is_view, np.arange(len(ev_session)), 0))
    ev_leaf = ev_leaf[last_view]

    stage("views")
    # --- items for views: fresh with probability fresh_view_share, else older; alive at ts.
    views = np.flatnonzero(is_view)
    v_leaf = ev_leaf[views].astype(np.int64)
    v_ts = ts_s[views]
    fresh_s = int(FRESH_AGE.total_seconds())

    v_top = top_of_leaf[v_leaf]
    old_s = int(_OLD_ITEM_MAX_AGE.total_seconds())
    fresh = by_leaf.bounds(v_leaf, v_ts - fresh_s, v_ts)
    old = by_leaf.bounds(v_leaf, v_ts - old_s, v_ts - fresh_s)
    top_fresh = by_top.bounds(v_top, v_ts - fresh_s, v_ts)
    has_fresh, has_old, has_top_fresh = (b[1] > b[0] for b in (fresh, old, top_fresh))
    want_fresh = rng.random(len(views)) < fresh_view_share
    # Where the wanted age class has nothing listed, take the other one rather than drop the view.
    use_leaf_fresh = has_fresh & (want_fresh | ~has_old)
    use_top_fresh = ~has_fresh & has_top_fresh & (want_fresh | ~has_old)
    use_old = ~use_leaf_fresh & ~use_top_fresh & has_old
    v_item = np.full(len(views), -1, dtype=np.int64)
    for slices, (lo, hi), use in ((by_leaf, fresh, use_leaf_fresh), (by_top, top_fresh, use_top_fresh),
                                  (by_leaf, old, use_old)):
        rows = np.flatnonzero(use)
        v_item[rows] = slices.sample_alive(lo[rows], hi[rows], v_ts[rows], gone_s, rng)
    ev_item = np.full(len(ev_session), -1, dtype=np.int64)
    ev_item[views] = v_item
    ev_item = ev_item[last_view]
    # Non-views inherit their view's item; drop events whose view found no live item.
    keep = (ev_item >= 0) & (ts_s < gone_s[np.maximum(ev_item, 0)]) & (ts_s < end_s)

    ev_session, ev_item, ts_s, ev_type = ev_session[keep], ev_item[keep], ts_s[keep], ev_type[keep]
    type_names = list(_EVENT_MIX)

    stage("sales")
    # --- sales: each sold item's last viewer buys it two minutes after that view.
    sold_kind = kinds.index("sold")
    sold_items = np.flatnonzero((ending == sold_kind) & ends)
    by_item = np.lexsort((ts_s, ev_item))
    last_of_item = np.flatnonzero(np.append(ev_item[by_item][1:] != ev_item[by_item][:-1], True))
    last_event = by_item[last_of_item]
    last_item = ev_item[last_event]
    viewed_sold = np.isin(last_item, sold_items)
    buy_event = last_event[viewed_sold]
    buy_item = ev_item[buy_event]
    buy_ts = np.minimum(ts_s[buy_event] + 120, end_s - 1)
    ended_s[buy_item] = buy_ts
    ev_session = np.concatenate([ev_session, ev_session[buy_event]])
    ev_item = np.concatenate([ev_item, buy_item])
    ts_s = np.concatenate([ts_s, buy_ts])
    ev_type = np.concatenate([ev_type, np.full(len(buy_event), len(type_names))])
    type_names.append("purchase")

    final = np.lexsort((ev_session, ts_s))
    ev_session, ev_item, ts_s, ev_type = ev_session[final], ev_item[final], ts_s[final], ev_type[final]

    stage("frames")
    # --- frames.
    item_ids = "i" + pd.Series(np.arange(1, n_items + 1)).astype("string").str.zfill(7)
    status = np.full(n_items, "active", dtype=object)
    for k, name in enumerate(kinds):
        status[(ending == k) & (ended_s < end_s)] = name
    bumped = rng.random(n_items) < 0.2
    bumped_s = np.where(bumped, np.minimum(created_s + rng.integers(3600, 5 * 86_400, size=n_items), end_s - 1), created_s)
    bumped_s = np.maximum(bumped_s, created_s)
    item_top = top_of_leaf[item_leaf]
    price = np.round(top_price[item_top] * rng.lognormal(0.0, 0.8, size=n_items), 2)
    leaf_names = np.array([p.split("/")[1] for p in paths], dtype=object)
    adjectives = np.array(["used", "new", "vintage", "like-new", "handmade", "classic", "compact", "large"], dtype=object)
    n_sellers = max(1, n_items // 5)
    seller = rng.zipf(1.6, size=n_items) % n_sellers
    item_region = rng.choice(len(REGIONS), size=n_items, p=_REGION_SHARE)
    items = pd.DataFrame(
        {
            "item_id": item_ids,
            "title": pd.array(adjectives[rng.integers(0, len(adjectives), size=n_items)] + " " + leaf_names[item_leaf],
                              dtype="string"),
            "category": pd.array(np.array(paths, dtype=object)[item_leaf], dtype="string"),
            "price": price,
            "region": pd.array(np.array(REGIONS, dtype=object)[item_region], dtype="string"),
            "seller_id": "s" + pd.Series(seller).astype("string").str.zfill(6),
            "status": pd.array(status, dtype="string"),
            "created_at": pd.to_datetime(created_s, unit="s", utc=True),
            "bumped_at": pd.to_datetime(bumped_s, unit="s", utc=True),
        }
    )

    user_ids = users["user_id"].to_numpy(dtype=object)
    ev_user_code = np.where(anonymous[ev_session], -1, session_user[ev_session])
    user_platform = ucode["platform"]
    # Events always carry the platform they came from, even when the profile lacks it.
    anon_platform = rng.choice(len(PLATFORMS), size=n_sessions, p=_PLATFORM_SHARE)
    session_platform = np.where(anonymous, anon_platform, user_platform[session_user])
    events = pd.DataFrame(
        {
            "ts": pd.to_datetime(ts_s, unit="s", utc=True),
            "user_id": pd.Categorical.from_codes(ev_user_code, categories=user_ids).astype("string"),
            "session_id": "s" + pd.Series(ev_session).astype("string"),
            "item_id": pd.Categorical.from_codes(ev_item, categories=item_ids.to_numpy(dtype=object)).astype("string"),
            "event_type": pd.Categorical(np.array(type_names, dtype=object)[ev_type], categories=list(EVENT_TYPES)),
            "platform": pd.Categorical.from_codes(session_platform[ev_session], categories=list(PLATFORMS)).astype("string"),
        }
    )
    view_rows = ev_type == 0
    age_at_view = ts_s[view_rows] - created_s[ev_item[view_rows]]
    fresh_share = float((age_at_view < fresh_s).mean()) if view_rows.any() else 0.0
    return SynthMarketplace(items, users, events, start_ts, end_ts, fresh_share, time.perf_counter() - began)
