"""Non-neural baselines scored through the same evaluator as the models: POP, S-POP, item-KNN.

Each baseline is fitted on training sessions (arrays of vocabulary indices) and scores a
batch of right-padded sessions into [B, num_items] scores, padding column = -inf.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = ["Popularity", "SessionPopularity", "SessionItemKNN", "BASELINES"]


def _normalized_popularity(counts: np.ndarray) -> np.ndarray:
    """Return popularity scaled into [0, 1), usable as a tie-breaker below 1."""
    counts = np.asarray(counts, dtype=np.float64)
    return counts / (counts.max() + 1.0)


def _mask_padding(scores: np.ndarray) -> np.ndarray:
    scores[:, 0] = -np.inf
    return scores


class Popularity:
    """POP: every session gets the items ranked by training interactions."""

    name = "POP"

    def __init__(self, item_counts: np.ndarray):
        self.popularity = _normalized_popularity(item_counts).astype(np.float32)

    def score_sessions(self, items: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Return [B, num_items] scores: global popularity for every row."""
        return _mask_padding(np.tile(self.popularity, (len(items), 1)))


class SessionPopularity(Popularity):
    """S-POP: items of the current session by how often they were clicked in it, then POP."""

    name = "S-POP"

    def score_sessions(self, items: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Return [B, num_items] scores: in-session click count plus popularity in [0, 1)."""
        scores = np.tile(self.popularity, (len(items), 1))
        rows = np.repeat(np.arange(len(items)), items.shape[1])
        np.add.at(scores, (rows, items.ravel()), 1.0)
        return _mask_padding(scores)


class SessionItemKNN(Popularity):
    """Session item-KNN: items similar to the session's clicks, recent clicks weighing more.

    sim(i, j) = n_ij / (sqrt(n_i * n_j) + shrink), with n_ij the training sessions holding both
    items and n_i those holding i; the shrink term (20, as in Hidasi et al.'s item-KNN) stops a
    single co-occurrence of two rare items from outranking well-supported pairs. Each item
    keeps its ``neighbours`` most similar items. A session
    s_1..s_m scores item j as sum_t (t / m) * sim(s_t, j), ties broken by popularity.
    """

    name = "ItemKNN"

    def __init__(
        self, item_counts: np.ndarray, train_sessions: Sequence[np.ndarray], *, neighbours: int = 100,
        shrink: float = 20.0,
    ):
        super().__init__(item_counts)
        num_items = len(item_counts)
        sid = np.repeat(np.arange(len(train_sessions)), [len(s) for s in train_sessions])
        pairs = pd.DataFrame({"s": sid, "i": np.concatenate(list(train_sessions))}).drop_duplicates()
        n_i = np.bincount(pairs["i"].to_numpy(), minlength=num_items).astype(np.float64)
        both = pairs.merge(pairs, on="s", suffixes=("", "_j"))
        both = both.loc[both["i"] != both["i_j"]]
        co = both.groupby(["i", "i_j"], sort=False).size().reset_index(name="n")
        co["sim"] = co["n"] / (np.sqrt(n_i[co["i"].to_numpy()] * n_i[co["i_j"].to_numpy()]) + shrink)
        co = co.sort_values(["i", "sim"], ascending=[True, False]).groupby("i", sort=False).head(neighbours)
        self.neighbour_items = np.zeros((num_items, neighbours), dtype=np.int64)
        self.neighbour_sims = np.zeros((num_items, neighbours), dtype=np.float32)
        slot = co.groupby("i", sort=False).cumcount().to_numpy()
        self.neighbour_items[co["i"].to_numpy(), slot] = co["i_j"].to_numpy()
        self.neighbour_sims[co["i"].to_numpy(), slot] = co["sim"].to_numpy()

    def score_sessions(self, items: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Return [B, num_items] scores: recency-weighted neighbour similarity plus 1e-6 * popularity."""
        batch, width = items.shape
        positions = np.arange(1, width + 1)[None, :]
        weights = np.where(positions <= lengths[:, None], positions / lengths[:, None], 0.0)
        scores = np.tile(self.popularity * 1e-6, (batch, 1))
        neighbour_items = self.neighbour_items[items]  # [B, L, N]
        contrib = self.neighbour_sims[items] * weights[:, :, None]
        rows = np.broadcast_to(np.arange(batch)[:, None, None], neighbour_items.shape)
        np.add.at(scores, (rows.ravel(), neighbour_items.ravel()), contrib.ravel())
        return _mask_padding(scores.astype(np.float32))


BASELINES: tuple[str, ...] = ("POP", "S-POP", "ItemKNN")
