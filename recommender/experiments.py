"""A/B experiments on score profiles: the variant a viewer gets, and the statistics of a variant.

An experiment splits the viewers of one profile between published versions of it. The split
is a stable hash: ``sha256(experiment name + viewer)`` picks one of ``BUCKETS`` buckets, and
the variants own consecutive bucket ranges sized by their percentages. The viewer is the user
id, or the session id of an anonymous viewer, so the same viewer always gets the same variant
of the same experiment, on every replica, with no stored assignment; a new experiment (a new
name) reshuffles viewers.

A variant counts impressions (items served), its exposed viewers (distinct viewers served at
least one of its pages) and the events (COUNTED_EVENTS) of its exposed viewers only
(``recommender.stores.experiment_counts``).

Everything here is pure (no I/O): ``recommender.stores.experiments`` stores experiments and
counts, the feed path calls ``assign_variant`` and the console calls ``variant_stats``.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass

from recommender.errors import InvalidRequest

__all__ = [
    "BUCKETS", "COUNTED_EVENTS", "EXPERIMENT_STATES", "EXPOSED_VIEWERS", "Experiment", "Variant", "VariantStats",
    "assign_bucket", "assign_variant", "checked_experiment_name", "checked_variants", "variant_stats",
    "wilson_interval",
]

# 10,000 buckets: a percentage has two decimals (0.01 % is one bucket).
BUCKETS = 10_000
# Events counted per variant (of its exposed viewers only), next to the impressions (feed items served).
COUNTED_EVENTS = ("click", "like", "chat", "purchase")
# The count of distinct viewers served at least one page of a variant.
EXPOSED_VIEWERS = "exposed_viewers"
EXPERIMENT_STATES = ("running", "stopped")
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,63}$")
# 95 % two-sided normal quantile.
_Z_95 = 1.959963984540054


@dataclass(frozen=True)
class Variant:
    """One arm of an experiment: a published profile version and its share of viewers in percent."""

    version: str
    percent: float


@dataclass(frozen=True)
class Experiment:
    """An experiment as stored: which profile it splits, between which variants, and its state."""

    name: str
    profile: str
    variants: tuple[Variant, ...]
    state: str
    created_by: str
    # Unix seconds.
    created_at: float
    stopped_by: str = ""
    stopped_at: float | None = None
    # The version published by "promote the winner" ("" when it was stopped without one).
    promoted_version: str = ""


@dataclass(frozen=True)
class VariantStats:
    """The counts of one variant and its rates over impressions, each with a 95 % Wilson interval."""

    version: str
    percent: float
    impressions: int
    # Distinct viewers served at least one page of the variant; only their events are counted.
    exposed_viewers: int
    events: dict[str, int]
    # rate name ("ctr", "conversion") -> (rate, low, high); rate is None without impressions.
    rates: dict[str, tuple[float | None, float, float]]


def checked_experiment_name(name: str) -> str:
    """Return ``name`` when it is a valid experiment name; raises InvalidRequest saying the rule."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise InvalidRequest(f"experiment name {name!r} is not valid; use 1-64 characters of a-z, 0-9, '_' and '-', "
                             f"starting with a letter or digit")
    return name


def checked_variants(variants: list[tuple[str, float]], *, published: set[str], profile: str) -> tuple[Variant, ...]:
    """Return the variants of ``(version, percent)`` pairs, checked against the ``published``
    versions of ``profile``.

    Raises InvalidRequest for fewer than two variants, a repeated or unpublished version, a
    percentage outside (0, 100] or not a multiple of 0.01, or percentages not summing to 100.
    """
    if len(variants) < 2:
        raise InvalidRequest(f"an experiment needs at least two variants, got {len(variants)}; "
                             f"add the published versions of {profile!r} to compare")
    out: list[Variant] = []
    seen: set[str] = set()
    for version, percent in variants:
        if version in seen:
            raise InvalidRequest(f"version {version!r} appears twice in the variants; list each version once")
        seen.add(version)
        if version not in published:
            raise InvalidRequest(f"version {version!r} is not a published version of profile {profile!r} "
                                 f"(published: {sorted(published)}); publish it first")
        if isinstance(percent, bool) or not isinstance(percent, (int, float)) or not 0 < percent <= 100:
            raise InvalidRequest(f"variant {version!r} has percent {percent!r}; give a number above 0 and at most 100")
        if abs(percent * 100 - round(percent * 100)) > 1e-6:
            raise InvalidRequest(f"variant {version!r} has percent {percent!r}; use at most two decimals "
                                 f"(one of {BUCKETS} buckets is 0.01 %)")
        out.append(Variant(version, float(percent)))
    total = sum(round(v.percent * 100) for v in out)
    if total != BUCKETS:
        raise InvalidRequest(f"variant percentages sum to {total / 100:g}, not 100: "
                             f"{[(v.version, v.percent) for v in out]}; adjust them")
    return tuple(out)


def assign_bucket(experiment: str, viewer: str) -> int:
    """Return the bucket, 0..BUCKETS-1, of ``viewer`` in ``experiment``: the same for the same pair, always."""
    # A separator keeps ("ab", "c") and ("a", "bc") apart; sha256 is stable across processes
    # and versions, unlike hash().
    digest = hashlib.sha256(f"{experiment}\x1f{viewer}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def assign_variant(experiment: Experiment, viewer: str) -> Variant:
    """Return the variant of ``experiment`` that serves ``viewer`` (a user id, or a session id when anonymous)."""
    bucket = assign_bucket(experiment.name, viewer)
    upper = 0
    for variant in experiment.variants:
        upper += round(variant.percent * 100)
        if bucket < upper:
            return variant
    return experiment.variants[-1]  # unreachable for checked variants (they own all buckets)


def wilson_interval(successes: int, trials: int, *, z: float = _Z_95) -> tuple[float, float]:
    """Return the (low, high) Wilson score interval of the proportion successes/trials; (0, 1) without trials.

    With p = s/n: centre = (p + z²/2n) / (1 + z²/n),
    half-width = z·sqrt(p(1-p)/n + z²/4n²) / (1 + z²/n). Unlike p ± z·sqrt(p(1-p)/n) it stays
    inside [0, 1] and is not zero-width at 0 or n successes (few clicks are the usual case).
    """
    if trials <= 0:
        return 0.0, 1.0
    if not 0 <= successes <= trials:
        raise InvalidRequest(f"successes {successes!r} must be within 0..trials ({trials!r})")
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def variant_stats(variant: Variant, counts: dict[str, int]) -> VariantStats:
    """Return the statistics of ``variant`` from its counts (``impressions``, EXPOSED_VIEWERS and
    COUNTED_EVENTS).

    CTR is clicks per impression and conversion is purchases per impression. Counts can
    exceed impressions (an exposed viewer's click on an item seen elsewhere); a rate is then
    capped at 1.
    """
    impressions = int(counts.get("impressions", 0))
    exposed_viewers = int(counts.get(EXPOSED_VIEWERS, 0))
    events = {name: int(counts.get(name, 0)) for name in COUNTED_EVENTS}
    rates: dict[str, tuple[float | None, float, float]] = {}
    for rate, event in (("ctr", "click"), ("conversion", "purchase")):
        hits = min(events[event], impressions)
        low, high = wilson_interval(hits, impressions)
        rates[rate] = (hits / impressions if impressions else None, low, high)
    return VariantStats(variant.version, variant.percent, impressions, exposed_viewers, events, rates)
