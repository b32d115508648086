"""Item vectors for the index: from the session model's item table when a checkpoint exists,
else from co-occurrence factorization (the documented fallback).

Fallback ("cooc"): items clicked close together in a session are related. Count pairs of
items at most ``window`` steps apart within a session, weight the symmetric count matrix by
positive pointwise mutual information, and factorize it with a randomized truncated SVD
(Halko, Martinsson & Tropp 2011, with power iterations; the matrix is symmetric, so each step
is one sparse CSR product and no transposes); an item's vector is its row of U·sqrt(S). Items with no co-occurrence
(cold items) get the mean vector of their category's warm items, or of the whole catalog's
when the category has none, plus a small seeded jitter so they are not all identical.
Every vector is L2-normalized and has exactly ``dims`` components.
"""

from __future__ import annotations

import hashlib
import logging
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from recommender.errors import ConfigError
from indexer._time import epoch_ns

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
    # Integer codes first: sorting two million session strings costs seconds, sorting ints does not.
    # Sessions come out in code order rather than text order, which changes no pair.
    item_codes, item_uniques = pd.factorize(events["item_id"].astype("string"))
    codes = np.append(item_index.get_indexer(pd.Index(item_uniques, dtype="string")), -1)[item_codes]
    sess = pd.factorize(session)[0]
    ts = epoch_ns(events["ts"])
    known = codes >= 0
    order = np.lexsort((ts[known], sess[known]))
    codes, sess = codes[known][order], sess[known][order]
    firsts, seconds = [], []
    for step in range(1, window + 1):
        same = sess[step:] == sess[:-step]
        a, b = codes[:-step][same], codes[step:][same]
        differ = a != b
        # Count each unordered pair once and mirror it afterwards: half the keys to sort.
        firsts.append(np.minimum(a[differ], b[differ]))
        seconds.append(np.maximum(a[differ], b[differ]))
    lo = np.concatenate(firsts).astype(np.int64) if firsts else np.array([], dtype=np.int64)
    hi = np.concatenate(seconds).astype(np.int64) if seconds else np.array([], dtype=np.int64)
    vectors = np.zeros((n, dims), dtype=np.float64)
    warm = np.zeros(n, dtype=bool)
    if len(lo):
        keys, counts = np.unique(lo * n + hi, return_counts=True)
        r = np.concatenate([keys // n, keys % n])
        c = np.concatenate([keys % n, keys // n])
        counts = np.concatenate([counts, counts])
        row_sum = np.bincount(r, weights=counts, minlength=n)
        total = counts.sum()
        pmi = np.log(counts * total / (row_sum[r] * row_sum[c]))
        keep = pmi > 0
        if keep.any():
            q = min(dims, n - 1) if n > 1 else 1
            u, s = _symmetric_truncated_svd(r[keep], c[keep], pmi[keep], n=n, q=q, niter=2, seed=seed)
            learned = (u * s.sqrt()).numpy()
            vectors[:, : learned.shape[1]] = learned
            warm = np.bincount(r[keep], minlength=n) > 0
    vectors = _fill_cold(vectors, warm, items["category"], rng)
    digest = hashlib.sha1(f"{n}:{len(events)}:{dims}:{window}:{seed}".encode()).hexdigest()[:8]
    return ItemVectors(_normalize(vectors), f"cooc-{digest}", warm=int(warm.sum()))


def _symmetric_truncated_svd(
    rows: np.ndarray, cols: np.ndarray, values: np.ndarray, *, n: int, q: int, niter: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (U, S): the top ``q`` left singular vectors and values of a symmetric sparse n x n matrix.

    ``rows``/``cols`` must hold each (row, col) pair at most once. Randomized range finder with
    ``niter`` power steps (Halko et al. 2011, algorithms 4.4 and 5.3). The matrix is symmetric,
    so A^T = A: every step is one CSR product, where ``torch.svd_lowrank`` on a COO tensor
    transposes and re-coalesces it each time (about 20x slower here at 100k items); and the
    final small SVD comes from the q x q Gram matrix instead of a q x n factorization.
    """
    order = np.argsort(rows * n + cols, kind="stable")
    crow = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n), out=crow[1:])
    with warnings.catch_warnings():
        # torch flags sparse CSR as "beta" on every construction; the product used here is stable.
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta", category=UserWarning)
        matrix = torch.sparse_csr_tensor(
            torch.from_numpy(crow), torch.from_numpy(cols[order].astype(np.int64)),
            torch.from_numpy(values[order].astype(np.float32)), (n, n), check_invariants=False,
        )
    generator = torch.Generator().manual_seed(seed)
    threads = torch.get_num_threads()
    # One thread: these tall-skinny products and QRs are memory-bound, and on a small busy
    # machine (the engine indexing next door) OpenMP threads spinning for cores made them 5x slower.
    torch.set_num_threads(1)
    try:
        basis = torch.linalg.qr(matrix @ torch.randn(n, q, generator=generator)).Q
        for _ in range(niter):
            basis = torch.linalg.qr(matrix @ basis).Q
        # B = Q^T A = (A Q)^T for symmetric A, and B B^T = Y^T Y with Y = A Q is only q x q:
        # its eigenvectors are B's left singular vectors and its eigenvalues their squares.
        projected = (matrix @ basis).double()
        eigenvalues, eigenvectors = torch.linalg.eigh(projected.T @ projected)
    finally:
        torch.set_num_threads(threads)
    top = torch.argsort(eigenvalues, descending=True)
    s = eigenvalues[top].clamp(min=0).sqrt().float()
    return basis @ eigenvectors[:, top].float(), s


def checkpoint_vectors(items: pd.DataFrame, checkpoint: Path, *, dims: int, device: str = "cpu") -> ItemVectors:
    """Return the session model's item vectors for the rows of ``items``; items unknown to the
    model get the vector of its content encoder (title, category, price, region), or, for a
    checkpoint without one, are filled in from their category (see the module docstring).

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
    if scorer.content is not None:
        from recommender.model.content import listings_from_items

        if (~warm).any():
            vectors[~warm] = scorer.content_vectors(listings_from_items(items[~warm]))
    else:
        vectors = _fill_cold(vectors, warm, items["category"], np.random.default_rng(7))
    return ItemVectors(_normalize(vectors), scorer.version, warm=int(warm.sum()))


def item_vectors(items: pd.DataFrame, events: pd.DataFrame, *, dims: int, checkpoint: Path | None) -> ItemVectors:
    """Return vectors from the model checkpoint when it exists, else the co-occurrence fallback."""
    if checkpoint is not None and checkpoint.exists():
        _log.info("item vectors from the session model %s", checkpoint)
        return checkpoint_vectors(items, checkpoint, dims=dims)
    _log.info("no model checkpoint at %s: item vectors from session co-occurrence", checkpoint)
    return cooccurrence_vectors(items, events, dims=dims)
