"""Sessions, the item vocabulary, the session-based evaluation split, and training batches.

The split follows the standard session-based protocol (GRU4Rec, NARM, TailNet):

1. sessions come from ``session_id``, or from 30-minute inactivity gaps per user when absent;
   repeated consecutive clicks on one item collapse to one click;
2. sessions of length 1 are removed, then items seen fewer than 5 times, then (again)
   sessions left shorter than 2;
3. sessions that end in the last ``test_days`` form the test set; the same cut applied to
   what remains gives the validation set used for early stopping (data spanning less than
   four periods is cut at the 80th percentile of session end times instead);
4. valid/test clicks on items never seen in training are removed (then sessions < 2 again);
5. every prefix ``s[:k]`` of a session predicts its next item ``s[k]``.

That is the "filtered" protocol. The "next-click" protocol (``protocol="next-click"``, the
standard of Ludewig & Jannach's evaluations) keeps repeated consecutive clicks, applies the
item-support filter to training clicks only, and keeps every test click: a test click on an
item training never saw is a target no scorer can hit (``UNKNOWN_INDEX``) and is left out of
the prefixes that follow it. Validation is cut the same way as the test: everything picked on it
(the epoch count, the KNN parameters, the blend weights and both tail offsets) is picked on
prefixes of the test's form, unknown clicks left out of them (``validation_examples``; a prefix
whose target is unknown is left out there, as no setting can hit it).

Head items are the most popular training items that together make up ``head_share`` (80%)
of training interactions, as in the TailNet paper; every other item is tail.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import repeat

import numpy as np
import pandas as pd
import torch

from recommender.errors import InvalidRequest

__all__ = [
    "PAD_INDEX",
    "UNKNOWN_INDEX",
    "PROTOCOLS",
    "ItemVocabulary",
    "SessionSplit",
    "PrefixExamples",
    "build_sessions",
    "split_sessions",
    "refit_split",
    "serving_split",
    "parts_split",
    "known_sessions",
    "tail_mask_from_counts",
    "pad_sessions",
    "prefix_examples",
    "sample_examples",
    "validation_examples",
    "iterate_batches",
]

PAD_INDEX = 0
# A test click on an item training never saw (next-click protocol): a target never hit.
UNKNOWN_INDEX = -1
PROTOCOLS = ("filtered", "next-click")
_log = logging.getLogger(__name__)


class ItemVocabulary:
    """Maps item ids (text) to dense indices; index 0 is padding, unknown ids map to 0."""

    PAD = "<pad>"

    def __init__(self, item_ids: Iterable[str]):
        self.ids: list[str] = [self.PAD, *[str(i) for i in item_ids]]
        self._index = {item: n for n, item in enumerate(self.ids)}
        if len(self._index) != len(self.ids):
            raise InvalidRequest("item vocabulary: item ids must be unique")

    def __len__(self) -> int:
        return len(self.ids)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ItemVocabulary) and self.ids == other.ids

    def __contains__(self, item_id: object) -> bool:
        return item_id != self.PAD and item_id in self._index

    def index_of(self, item_ids: Iterable[str]) -> np.ndarray:
        """Return int64 indices of ``item_ids``; 0 (padding) for ids not in the vocabulary."""
        # map() keeps the loop in C: this sits on the serving path (200+ ids per request).
        return np.fromiter(map(self._index.get, map(str, item_ids), repeat(PAD_INDEX)), dtype=np.int64)

    def to_list(self) -> list[str]:
        """Return the item ids without the padding entry (what a checkpoint stores)."""
        return self.ids[1:]


def build_sessions(events: pd.DataFrame, *, gap_minutes: float = 30.0, collapse_repeats: bool = True) -> pd.DataFrame:
    """Return clicks with columns (session, ts, item_id): sessions ordered by their last click's time
    (ties by session id), each session's clicks by time. The session-KNN methods read that order as
    recency (the most recent sessions are sampled as neighbours, and STAN weighs them by it).

    ``events`` is a validated events frame (recommender.data_model). Rows without a
    ``session_id`` get one from their user's clicks split at gaps longer than ``gap_minutes``.
    Every event type counts as an interaction; with ``collapse_repeats`` repeated consecutive
    clicks on one item (view, then cart of the same item) collapse to one (the filtered
    protocol; the next-click protocol keeps them).
    """
    df = events[["ts", "user_id", "session_id", "item_id"]].copy()
    has_sid = df["session_id"].notna()
    session = pd.Series("s:" + df["session_id"].astype("string"), index=df.index, dtype="string")
    if (~has_sid).any():
        anon = df.loc[~has_sid].sort_values(["user_id", "ts"], kind="stable")
        gap = (anon["ts"].diff() > pd.Timedelta(minutes=gap_minutes)).to_numpy(dtype=bool, na_value=True)
        new_user = (anon["user_id"] != anon["user_id"].shift()).to_numpy(dtype=bool, na_value=True)
        number = pd.Series(np.cumsum(gap | new_user), index=anon.index)
        session.loc[anon.index] = "u:" + anon["user_id"].astype("string") + ":" + number.astype("string")
    df["session"] = session
    df["end"] = df.groupby("session", sort=False)["ts"].transform("max")
    df = df.sort_values(["end", "session", "ts"], kind="stable")
    repeat = ((df["session"] == df["session"].shift()) & (df["item_id"] == df["item_id"].shift())).to_numpy(
        dtype=bool, na_value=False
    )
    if not collapse_repeats:
        repeat[:] = False
    return df.loc[~repeat, ["session", "ts", "item_id"]].reset_index(drop=True)


def tail_mask_from_counts(counts: np.ndarray, *, head_share: float = 0.8) -> np.ndarray:
    """Return a bool mask over ``counts``: True for tail items, False for head items and padding.

    Head = the most popular items whose interactions, taken in descending order, first
    reach ``head_share`` of all interactions (the item that crosses the line is head).
    """
    counts = np.asarray(counts, dtype=np.float64)
    order = np.argsort(-counts, kind="stable")
    cumulative = np.cumsum(counts[order])
    total = cumulative[-1] if len(cumulative) else 0.0
    tail = np.ones(len(counts), dtype=bool)
    if total > 0:
        n_head = int(np.searchsorted(cumulative, head_share * total, side="left")) + 1
        tail[order[:n_head]] = False
    tail[PAD_INDEX] = False
    return tail


@dataclass
class SessionSplit:
    """Train/valid/test sessions as arrays of vocabulary indices, with item statistics."""

    vocab: ItemVocabulary
    train: list[np.ndarray]
    valid: list[np.ndarray]
    test: list[np.ndarray]
    item_counts: np.ndarray  # [len(vocab)] training interactions per item; 0 for padding
    is_tail: np.ndarray  # [len(vocab)] bool
    params: dict[str, float] = field(default_factory=dict)
    # Sessions before the training window (``train_days``), for the blend's counting parts only: see
    # ``parts_split``. Empty without ``train_days``.
    history: list[np.ndarray] = field(default_factory=list)

    def summary(self) -> str:
        """Return a one-line account of the split."""
        targets = sum(len(s) - 1 for s in self.test)
        unseen = sum(int((s[1:] == UNKNOWN_INDEX).sum()) for s in self.test)
        return (
            f"{len(self.vocab) - 1:,} items ({int(self.is_tail.sum()):,} tail); sessions "
            f"train {len(self.train):,}, valid {len(self.valid):,}, test {len(self.test):,}; "
            f"test prefixes {targets:,}"
            + (f" ({unseen / targets:.0%} of their targets unseen in training: no scorer can hit them)" if unseen else "")
            + (f"; {len(self.history):,} earlier sessions for a checkpoint's blend" if self.history else "")
        )


def _with_more_training(split: SessionSplit, sessions: list[np.ndarray], *, test: list[np.ndarray],
                        flag: str) -> SessionSplit:
    """Return ``split`` with the known clicks of ``sessions`` appended to training (sessions left
    with 2+ such clicks) and counted in the item counts (the vocabulary and tail mask unchanged), no
    validation, ``test`` as given and ``flag`` set in params."""
    known = [s[s > PAD_INDEX] for s in sessions]
    known = [s for s in known if len(s) >= 2]
    return SessionSplit(vocab=split.vocab, train=[*split.train, *known], valid=[], test=test,
                        item_counts=_counted(split, known), is_tail=split.is_tail, params={**split.params, flag: True})


def _counted(split: SessionSplit, sessions: list[np.ndarray]) -> np.ndarray:
    """Return ``split``'s item counts plus the clicks of ``sessions`` (vocabulary indices > 0)."""
    clicks = np.concatenate([np.zeros(0, np.int64), *sessions])
    return split.item_counts + np.bincount(clicks, minlength=len(split.item_counts)).astype(split.item_counts.dtype)


def refit_split(split: SessionSplit) -> SessionSplit:
    """Return ``split`` with the validation sessions added to training (known items only, sessions of
    2+ such clicks, time order kept; the vocabulary, tail mask and test unchanged) and no validation:
    the final fit once everything is picked."""
    return _with_more_training(split, split.valid, test=split.test, flag="refit")


def parts_split(split: SessionSplit) -> SessionSplit:
    """Return ``split`` with its ``history`` sessions before the training ones (counted in the item
    counts; validation, test, vocabulary and tail mask unchanged): what a checkpoint's blend is
    picked with (its KNN parameters, weights and tail bias), so that its counting parts hold as many
    days of sessions then as they will when published (``serving_split``: training, validation and
    test). With ``train_days`` 1 they held one day at the pick and three once published, and the
    weights under-weighed the KNN (docs/session-model.md, "Parts picked as published").
    """
    if not split.history:
        return split
    return SessionSplit(vocab=split.vocab, train=[*split.history, *split.train], valid=split.valid, test=split.test,
                        item_counts=_counted(split, split.history), is_tail=split.is_tail,
                        params={**split.params, "history": len(split.history)})


def serving_split(split: SessionSplit) -> SessionSplit:
    """Return ``split`` with its validation and test sessions added to training (known items only,
    sessions of 2+ such clicks; the vocabulary and tail mask unchanged) and neither left: what a
    checkpoint's item counts and counting parts (the blend's KNN and category shares) are built from
    once training and every comparison are done, so they are as fresh as the log (where listings
    churn within hours they go stale faster than the model: docs/session-model.md, "Fresh counting
    parts").
    """
    return _with_more_training(split, [*split.valid, *split.test], test=[], flag="serving")


def _drop_short(clicks: pd.DataFrame, min_length: int) -> pd.DataFrame:
    sizes = clicks.groupby("session", sort=False)["item_id"].transform("size")
    return clicks.loc[sizes >= min_length]


def _period_cut(session_ends: pd.Series, days: float, what: str) -> pd.Timestamp:
    """Return the time after which sessions end in the last ``days``.

    ``session_ends`` holds one end time per session. When the data spans less than four such
    periods (the REES46 head covers under 3 hours, most of it in its last 40 minutes), the cut
    falls at the 80th percentile of session end times instead: still a split in time order,
    with a fifth of the sessions after it.
    """
    t_min, t_max = session_ends.min(), session_ends.max()
    period = pd.Timedelta(days=days)
    if t_max - t_min < 4 * period:
        cut = session_ends.quantile(0.8)
        _log.info("%s: data span %s is short for %.3g days; sessions ending after %s (last 20%%) form it",
                  what, t_max - t_min, days, cut)
        return cut
    return t_max - period


def _to_arrays(clicks: pd.DataFrame, vocab: ItemVocabulary, *, unknown: int = 0) -> list[np.ndarray]:
    idx = vocab.index_of(clicks["item_id"].tolist())
    if unknown != PAD_INDEX:
        idx = np.where(idx == PAD_INDEX, unknown, idx)
    codes, uniques = pd.factorize(clicks["session"], sort=False)
    bounds = np.flatnonzero(np.diff(codes)) + 1
    return [a for a in np.split(idx, bounds) if len(a)]


def _later_sessions(clicks: pd.DataFrame, vocab: ItemVocabulary, *, next_click: bool,
                    min_length: int) -> list[np.ndarray]:
    """Return the validation or test sessions of ``clicks``: under next-click every click, an
    unknown item as ``UNKNOWN_INDEX``; under filtered the known clicks of sessions that keep
    ``min_length`` of them."""
    if next_click:
        return _to_arrays(clicks, vocab, unknown=UNKNOWN_INDEX)
    return known_sessions(clicks, vocab, min_length=min_length)


def known_sessions(clicks: pd.DataFrame, vocab: ItemVocabulary, *, min_length: int = 2) -> list[np.ndarray]:
    """Return the sessions of ``clicks`` (build_sessions' frame) as vocabulary indices: clicks on
    items outside ``vocab`` left out, then sessions shorter than ``min_length`` dropped."""
    kept = clicks.loc[clicks["item_id"].isin(vocab.to_list())]
    return _to_arrays(_drop_short(kept, min_length), vocab)


def split_sessions(
    clicks: pd.DataFrame,
    *,
    test_days: float = 1.0,
    min_item_support: int = 5,
    min_session_length: int = 2,
    head_share: float = 0.8,
    train_days: float | None = None,
    protocol: str = "filtered",
) -> SessionSplit:
    """Return the train/valid/test split of ``clicks`` (from build_sessions) under the protocol above.

    ``train_days`` keeps only training sessions that end within that many days before the
    validation period (None: all), to fit training into a time budget on large logs.
    Raises InvalidRequest when filtering leaves no training or no test sessions, naming the
    counts and what to change.
    """
    if protocol not in PROTOCOLS:
        raise InvalidRequest(f"protocol {protocol!r} is unknown; choose one of {list(PROTOCOLS)}")
    next_click = protocol == "next-click"
    before = clicks["session"].nunique()
    clicks = _drop_short(clicks, min_session_length)
    support = clicks.groupby("item_id")["item_id"].transform("size")
    # Next-click: support is a training matter, every test click stays (see the module docstring).
    raw = clicks
    clicks = _drop_short(clicks.loc[support >= min_item_support], min_session_length)
    if clicks.empty:
        raise InvalidRequest(
            f"events: none of {before:,} sessions keeps {min_session_length}+ clicks on items seen "
            f"{min_item_support}+ times; supply more events or lower --min-item-support"
        )
    # Next-click keeps every validation and test click, so a session's period is that of its last
    # click of any item: one session is never both training (its frequent items) and test (the rest).
    later = raw if next_click else clicks
    last = later.groupby("session", sort=False)["ts"].max()
    test_cut = _period_cut(last, test_days, "test split")
    before_test = last.loc[last <= test_cut]
    valid_cut = _period_cut(before_test, test_days, "validation split") if len(before_test) else test_cut

    train_end, later_end = clicks["session"].map(last), later["session"].map(last)
    train = clicks.loc[train_end <= valid_cut]
    valid, test = later.loc[(later_end > valid_cut) & (later_end <= test_cut)], later.loc[later_end > test_cut]
    history = train.iloc[:0]
    if train_days is not None:
        # The published counting parts add the validation and test periods after training; the
        # blend is picked with as long a span before the training window (``parts_split``).
        train_from = valid_cut - pd.Timedelta(days=train_days)
        span = last.max() - valid_cut
        ended = train_end.loc[train.index]
        history = train.loc[(ended <= train_from) & (ended > train_from - span)]
        train = train.loc[ended > train_from]

    counts_by_id = train["item_id"].value_counts(sort=False)
    vocab = ItemVocabulary(sorted(counts_by_id.index.tolist()))
    item_counts = np.zeros(len(vocab), dtype=np.int64)
    item_counts[vocab.index_of(counts_by_id.index.tolist())] = counts_by_id.to_numpy()

    split = SessionSplit(
        vocab=vocab,
        train=_to_arrays(train, vocab),
        valid=_later_sessions(valid, vocab, next_click=next_click, min_length=min_session_length),
        test=_later_sessions(test, vocab, next_click=next_click, min_length=min_session_length),
        history=known_sessions(history, vocab, min_length=min_session_length),
        item_counts=item_counts,
        is_tail=tail_mask_from_counts(item_counts, head_share=head_share),
        params={
            "test_days": test_days, "min_item_support": min_item_support,
            "min_session_length": min_session_length, "head_share": head_share,
            "train_days": train_days, "protocol": protocol,
        },
    )
    if not split.train or not split.test:
        raise InvalidRequest(
            f"events: the split left {len(split.train):,} training and {len(split.test):,} test sessions; "
            f"both must be non-empty (supply a longer time span or change --test-days {test_days!r})"
        )
    return split


@dataclass
class PrefixExamples:
    """Every prefix of every session with its next item: right-padded item indices."""

    items: np.ndarray  # [N, max_length] int64, right-padded with 0, most recent clicks kept
    lengths: np.ndarray  # [N] int64, 1..max_length
    targets: np.ndarray  # [N] int64

    def __len__(self) -> int:
        return len(self.targets)


def pad_sessions(sessions: Sequence[np.ndarray], *, max_length: int) -> tuple[np.ndarray, np.ndarray]:
    """Return (items [B, L] right-padded with 0, lengths [B]) keeping each session's last clicks.

    L = min(max_length, longest session). Sessions must be non-empty.
    """
    lengths = np.array([min(len(s), max_length) for s in sessions], dtype=np.int64)
    width = int(lengths.max()) if len(lengths) else 1
    items = np.zeros((len(sessions), width), dtype=np.int64)
    for row, (s, n) in enumerate(zip(sessions, lengths)):
        items[row, :n] = s[len(s) - n:]
    return items, lengths


def prefix_examples(sessions: Sequence[np.ndarray], *, max_length: int = 20) -> PrefixExamples:
    """Return one example per prefix ``s[:k]`` (k = 1..len-1) with target ``s[k]``.

    Clicks on unknown items (``UNKNOWN_INDEX``, next-click protocol) stay targets but are
    left out of the prefixes; a prefix with no known click is the padding item alone (the
    scorers answer it with popularity).
    """
    def known(prefix: np.ndarray) -> np.ndarray:
        kept = prefix[prefix > PAD_INDEX]
        return kept if len(kept) else np.zeros(1, dtype=np.int64)

    prefixes = [known(s[:k]) for s in sessions for k in range(1, len(s))]
    targets = np.array([s[k] for s in sessions for k in range(1, len(s))], dtype=np.int64)
    if not prefixes:
        return PrefixExamples(np.zeros((0, 1), np.int64), np.zeros(0, np.int64), targets)
    items, lengths = pad_sessions(prefixes, max_length=max_length)
    return PrefixExamples(items, lengths, targets)


def validation_examples(split: "SessionSplit", *, max_length: int, limit: int | None = None,
                        seed: int = 0) -> PrefixExamples:
    """Return the validation prefixes settings are picked on: every prefix of ``split.valid`` whose
    target training has seen (at most ``limit``, a seeded sample; all when None).

    Under next-click the prefixes keep the test's form (unknown clicks left out of them, a prefix of
    unknown clicks only as the padding item), but a prefix whose target is unknown is a miss for
    every scorer and setting: it tells no two of them apart, and in a capped sample it would only
    take the place of one that does (92% of the Taobao head's next-click validation targets).
    """
    examples = prefix_examples(split.valid, max_length=max_length)
    known = examples.targets > PAD_INDEX
    if not known.all():
        examples = PrefixExamples(examples.items[known], examples.lengths[known], examples.targets[known])
    return sample_examples(examples, limit, seed=seed)


def sample_examples(examples: PrefixExamples, limit: int | None, *, seed: int = 0) -> PrefixExamples:
    """Return at most ``limit`` of ``examples`` (a seeded sample, in their order); all when ``limit`` is None."""
    if limit is None or len(examples) <= limit:
        return examples
    rows = np.sort(np.random.default_rng(seed).choice(len(examples), size=limit, replace=False))
    return PrefixExamples(examples.items[rows], examples.lengths[rows], examples.targets[rows])


def iterate_batches(
    examples: PrefixExamples,
    *,
    batch_size: int,
    shuffle: bool = False,
    generator: np.random.Generator | None = None,
    device: torch.device | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Yield (items [B, L], lengths [B], targets [B]) tensors; L is trimmed to the batch's longest."""
    order = np.arange(len(examples))
    if shuffle:
        (generator or np.random.default_rng()).shuffle(order)
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        lengths = examples.lengths[rows]
        items = examples.items[rows, : int(lengths.max())]
        yield (
            torch.as_tensor(items, device=device),
            torch.as_tensor(lengths, device=device),
            torch.as_tensor(examples.targets[rows], device=device),
        )
