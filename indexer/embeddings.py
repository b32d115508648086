"""Item vectors for the index: from the session model's item table when a checkpoint exists,
else from co-occurrence factorization (the documented fallback).

Fallback ("cooc"): items clicked close together in a session are related. Count pairs of
items at most ``window`` steps apart within a session, weight the symmetric count matrix by
positive pointwise mutual information, and factorize it with a randomized truncated SVD
(torch.svd_lowrank); an item's vector is its row of U·sqrt(S). Items with no co-occurrence
(cold items) get the mean vector of their category's warm items, or of the whole catalog's
when the category has none, plus a small seeded jitter so they are not all identical.
Every vector is L2-normalized and has exactly ``dims`` components.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from recommender.errors import ConfigError

__all__ = ["ItemVectors", "cooccurrence_vectors", "checkpoint_vectors", "item_vectors"]

_log = logging.getLogger(__name__)


class ItemVectors:
    """Vectors aligned with an items frame, and the version that made them."""

    def __init__(self, vectors: np.ndarray, model_version: str, *, warm: int):
        self.vectors = vectors
        self.model_version = model_version
        self.warm = warm  # how many items got a learned (not filled-in) vector


def _normalize(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return (matrix / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def _fill_cold(vectors: np.ndarray, warm: np.ndarray, categories: pd.Series, rng: np.random.Generator) -> np.ndarray:
    dims = vectors.shape[1]
    out = vectors.copy()
    top = categories.astype("string").str.split("/").str[0].fillna("")
    global_mean = vectors[warm].mean(axis=0) if warm.any() else rng.normal(size=dims)
    frame = pd.DataFrame(vectors[warm]).groupby(top[warm].to_numpy()).mean()
    means = frame.reindex(top.to_numpy()).to_numpy()
    means = np.where(np.isnan(means), global_mean, means)
    cold = ~warm
    jitter = rng.normal(scale=0.1 * (np.abs(global_mean).mean() + 1e-6), size=(int(cold.sum()), dims))
    out[cold] = means[cold] + jitter
    return out


def cooccurrence_vectors(
    items: pd.DataFrame,
    events: pd.DataFrame,
    *,
    dims: int,
    window: int = 2,
    seed: int = 7,
) -> ItemVectors:
    """Return co-occurrence vectors for the rows of ``items`` (see the module docstring)."""
    rng = np.random.default_rng(seed)
    item_index = pd.Index(items["item_id"].astype("string"))
    n = len(item_index)
    session = events["session_id"].astype("string").fillna("u:" + events["user_id"].astype("string"))
    ordered = pd.DataFrame({"s": session, "ts": events["ts"], "i": item_index.get_indexer(events["item_id"].astype("string"))})
    ordered = ordered.loc[ordered["i"] >= 0].sort_values(["s", "ts"], kind="stable")
    codes = ordered["i"].to_numpy()
    sess = pd.factorize(ordered["s"])[0]
    rows, cols = [], []
    for step in range(1, window + 1):
        same = sess[step:] == sess[:-step]
        a, b = codes[:-step][same], codes[step:][same]
        differ = a != b
        rows += [a[differ], b[differ]]
        cols += [b[differ], a[differ]]
    r = np.concatenate(rows) if rows else np.array([], dtype=np.int64)
    c = np.concatenate(cols) if cols else np.array([], dtype=np.int64)
    vectors = np.zeros((n, dims), dtype=np.float64)
    warm = np.zeros(n, dtype=bool)
    if len(r):
        keys, counts = np.unique(r.astype(np.int64) * n + c, return_counts=True)
        r, c = keys // n, keys % n
        row_sum = np.bincount(r, weights=counts, minlength=n)
        total = counts.sum()
        pmi = np.log(counts * total / (row_sum[r] * row_sum[c]))
        keep = pmi > 0
        if keep.any():
            torch.manual_seed(seed)
            matrix = torch.sparse_coo_tensor(
                np.vstack([r[keep], c[keep]]), torch.tensor(pmi[keep], dtype=torch.float32), (n, n)
            ).coalesce()
            q = min(dims, n - 1) if n > 1 else 1
            u, s, _ = torch.svd_lowrank(matrix, q=q, niter=4)
            learned = (u * s.sqrt()).numpy()
            vectors[:, : learned.shape[1]] = learned
            warm = np.bincount(r[keep], minlength=n) > 0
    vectors = _fill_cold(vectors, warm, items["category"], rng)
    digest = hashlib.sha1(f"{n}:{len(events)}:{dims}:{window}:{seed}".encode()).hexdigest()[:8]
    return ItemVectors(_normalize(vectors), f"cooc-{digest}", warm=int(warm.sum()))


def checkpoint_vectors(items: pd.DataFrame, checkpoint: Path, *, dims: int, device: str = "cpu") -> ItemVectors:
    """Return the session model's item vectors for the rows of ``items``; items unknown to the
    model are filled in from their category (see the module docstring).

    Raises ConfigError when the checkpoint's dimension differs from the index's.
    """
    from recommender.model.serving import SessionScorer

    scorer = SessionScorer.load(checkpoint, device=device)
    ids, matrix = scorer.item_embeddings()
    if matrix.shape[1] != dims:
        raise ConfigError(
            f"model checkpoint {str(checkpoint)!r} has {matrix.shape[1]}-dim item vectors but the index expects "
            f"{dims} (HOTFEED_ENGINE_EMBEDDING_DIMS); retrain with that size or change the setting"
        )
    position = pd.Index(pd.array(ids, dtype="string")).get_indexer(items["item_id"].astype("string"))
    warm = position >= 0
    vectors = np.zeros((len(items), dims), dtype=np.float64)
    vectors[warm] = matrix[position[warm]]
    vectors = _fill_cold(vectors, warm, items["category"], np.random.default_rng(7))
    return ItemVectors(_normalize(vectors), scorer.version, warm=int(warm.sum()))


def item_vectors(items: pd.DataFrame, events: pd.DataFrame, *, dims: int, checkpoint: Path | None) -> ItemVectors:
    """Return vectors from the model checkpoint when it exists, else the co-occurrence fallback."""
    if checkpoint is not None and checkpoint.exists():
        _log.info("item vectors from the session model %s", checkpoint)
        return checkpoint_vectors(items, checkpoint, dims=dims)
    _log.info("no model checkpoint at %s: item vectors from session co-occurrence", checkpoint)
    return cooccurrence_vectors(items, events, dims=dims)
