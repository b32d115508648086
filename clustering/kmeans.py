"""Behaviour clusters: mini-batch k-means in torch, a sampled silhouette, and the rule for k.

Rule for k (``choose_k``): with ``k`` fixed in settings, use it. Otherwise try every k in
K_GRID up to ``min(k_max, sqrt(n / 2))`` (the classic rule of thumb as a ceiling, so a
small population never gets tiny clusters), fit each on a sample, and keep the k with
the best silhouette on a sample; ties go to the smaller k.

Everything runs on ``device`` (cuda when present, else cpu); rows are processed in
chunks so a million users never need an n x n or n x k x d tensor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from recommender.errors import InvalidRequest

__all__ = [
    "K_GRID",
    "KMeansResult",
    "KChoice",
    "minibatch_kmeans",
    "assign_clusters",
    "silhouette_on_sample",
    "k_ceiling",
    "choose_k",
]

K_GRID: tuple[int, ...] = (2, 3, 4, 5, 6, 8, 10, 12, 16, 20, 24, 32, 48, 64, 96, 128)
_ASSIGN_CHUNK = 65_536


@dataclass(frozen=True)
class KMeansResult:
    """Centroids (k x d, float32, on cpu), a label per row, inertia and iterations run."""

    centroids: np.ndarray
    labels: np.ndarray
    inertia: float
    n_iter: int

    @property
    def sizes(self) -> np.ndarray:
        """Return the number of rows per cluster (length k)."""
        return np.bincount(self.labels, minlength=len(self.centroids))


@dataclass(frozen=True)
class KChoice:
    """The chosen k, how it was chosen, and the silhouette of every k tried."""

    k: int
    rule: str
    scores: dict[int, float] = field(default_factory=dict)


def _as_tensor(x: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    t = torch.as_tensor(x, dtype=torch.float32)
    if t.ndim != 2 or t.shape[0] == 0:
        raise InvalidRequest(f"k-means needs a non-empty 2-d matrix of user vectors, got shape {tuple(t.shape)!r}")
    return t.to(device)


def _sq_dists(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    # ||x||^2 - 2 x.c + ||c||^2 is one matmul; clamp away the tiny negatives rounding makes.
    return ((x * x).sum(1, keepdim=True) - 2 * x @ c.T + (c * c).sum(1)).clamp_min_(0)


def _kmeanspp(x: torch.Tensor, k: int, gen: torch.Generator) -> torch.Tensor:
    """Return k initial centres picked by greedy k-means++ from the rows of ``x``.

    Each step draws 2 + log(k) candidates by D^2 sampling and keeps the one that lowers
    the total squared distance most (as scikit-learn does); plain k-means++ too often puts
    two centres in one well-separated cluster, which mini-batch updates never undo.
    """
    n = x.shape[0]
    trials = 2 + int(math.log(k))
    first = int(torch.randint(n, (1,), generator=gen).item())
    centres = [x[first]]
    d2 = _sq_dists(x, x[first : first + 1]).squeeze(1)
    for _ in range(1, k):
        total = d2.sum()
        if total <= 0:  # fewer distinct points than k: repeat points rather than fail
            idx = torch.randint(n, (1,), generator=gen)
            centres.append(x[int(idx.item())])
            continue
        cand = torch.multinomial((d2 / total).cpu(), trials, replacement=True, generator=gen).to(x.device)
        cand_d2 = torch.minimum(d2.unsqueeze(0), _sq_dists(x[cand], x))  # trials x n
        best = int(cand_d2.sum(1).argmin())
        centres.append(x[cand[best]])
        d2 = cand_d2[best]
    return torch.stack(centres)


def assign_clusters(x: np.ndarray | torch.Tensor, centroids: np.ndarray | torch.Tensor, *,
                    device: torch.device | None = None) -> tuple[np.ndarray, float]:
    """Return (nearest-centroid label per row as int64, total squared distance), in chunks."""
    device = device or torch.device("cpu")
    xt = _as_tensor(x, device)
    ct = torch.as_tensor(centroids, dtype=torch.float32, device=device)
    labels = torch.empty(xt.shape[0], dtype=torch.int64, device=device)
    inertia = 0.0
    for start in range(0, xt.shape[0], _ASSIGN_CHUNK):
        d = _sq_dists(xt[start : start + _ASSIGN_CHUNK], ct)
        best, idx = d.min(1)
        labels[start : start + _ASSIGN_CHUNK] = idx
        inertia += float(best.sum())
    return labels.cpu().numpy(), inertia


def minibatch_kmeans(
    x: np.ndarray | torch.Tensor,
    k: int,
    *,
    batch_size: int = 4096,
    max_iter: int = 200,
    tol: float = 1e-3,
    init_sample: int = 20_000,
    seed: int = 0,
    device: torch.device | None = None,
) -> KMeansResult:
    """Return a mini-batch k-means fit (Sculley 2010) of the rows of ``x`` into ``k`` clusters.

    Init is k-means++ on a sample of ``init_sample`` rows. Each iteration draws a batch,
    moves every centre towards the mean of its batch members with a per-centre rate
    1 / (points seen), and stops when no centre moves more than ``tol`` (relative to the
    data scale) for 5 iterations running. Centres that stay empty are re-seeded on far
    points. Labels and inertia come from a full final assignment.
    Raises InvalidRequest for k < 1 or k greater than the number of rows.
    """
    device = device or torch.device("cpu")
    xt = _as_tensor(x, device)
    n, _ = xt.shape
    if not 1 <= k <= n:
        raise InvalidRequest(f"k={k!r} must be between 1 and the number of user vectors ({n})")
    gen = torch.Generator(device="cpu").manual_seed(seed)
    init_idx = torch.randperm(n, generator=gen)[: min(n, init_sample)].to(device)
    centres = _kmeanspp(xt[init_idx], k, gen)
    seen = torch.zeros(k, device=device)
    scale = float(xt[init_idx].std(0).pow(2).sum().sqrt()) or 1.0
    calm = 0
    it = 0
    for it in range(1, max_iter + 1):
        batch = xt[torch.randint(n, (min(batch_size, n),), generator=gen).to(device)]
        idx = _sq_dists(batch, centres).argmin(1)
        counts = torch.bincount(idx, minlength=k).float()
        sums = torch.zeros_like(centres).index_add_(0, idx, batch)
        seen += counts
        hit = counts > 0
        rate = torch.where(hit, counts / seen.clamp_min(1), torch.zeros_like(counts)).unsqueeze(1)
        means = sums / counts.clamp_min(1).unsqueeze(1)
        new = centres + rate * (means - centres)
        if it % 10 == 0 and (seen == 0).any():
            # A centre nothing has reached is wasted; put it on the batch point farthest from its centre.
            empty = (seen == 0).nonzero().flatten()
            far = _sq_dists(batch, new).min(1).values.argsort(descending=True)[: len(empty)]
            new[empty[: len(far)]] = batch[far]
        shift = float((new - centres).norm(dim=1).max()) / scale
        centres = new
        calm = calm + 1 if shift < tol else 0
        if calm >= 5:
            break
    labels, inertia = assign_clusters(xt, centres, device=device)
    return KMeansResult(centres.cpu().numpy().astype(np.float32), labels, inertia, it)


def silhouette_on_sample(
    x: np.ndarray | torch.Tensor, labels: np.ndarray, *, sample: int = 2_000, seed: int = 0,
    device: torch.device | None = None,
) -> float:
    """Return the mean silhouette (-1..1, higher is better) over a random sample of rows.

    s(i) = (b - a) / max(a, b), a = mean distance to the other members of i's cluster,
    b = the lowest mean distance to another cluster, both within the sample. Points alone
    in their cluster score 0. Returns 0.0 when the sample holds fewer than 2 clusters.
    """
    device = device or torch.device("cpu")
    xt = _as_tensor(x, device)
    rng = np.random.default_rng(seed)
    idx = rng.choice(xt.shape[0], size=min(sample, xt.shape[0]), replace=False)
    lab = torch.as_tensor(np.asarray(labels)[idx], device=device)
    uniq, lab = torch.unique(lab, return_inverse=True)
    if len(uniq) < 2:
        return 0.0
    xs = xt[torch.as_tensor(idx, device=device)]
    d = _sq_dists(xs, xs).sqrt_()
    onehot = torch.nn.functional.one_hot(lab, len(uniq)).float()
    sums = d @ onehot  # s x k: total distance from each point to each cluster
    sizes = onehot.sum(0)
    own = sizes[lab]
    a = sums.gather(1, lab.unsqueeze(1)).squeeze(1) / (own - 1).clamp_min(1)
    mean_other = sums / sizes
    mean_other.scatter_(1, lab.unsqueeze(1), float("inf"))
    b = mean_other.min(1).values
    s = (b - a) / torch.maximum(a, b).clamp_min(1e-12)
    s = torch.where(own > 1, s, torch.zeros_like(s))
    return float(s.mean())


def k_ceiling(n: int, *, k_max: int) -> int:
    """Return the largest k worth trying for n users: min(k_max, floor(sqrt(n / 2))), at least 2."""
    return max(2, min(k_max, int(math.sqrt(n / 2))))


def choose_k(
    x: np.ndarray | torch.Tensor,
    *,
    k_fixed: int = 0,
    k_max: int = 32,
    fit_sample: int = 10_000,
    silhouette_sample: int = 2_000,
    seed: int = 0,
    device: torch.device | None = None,
) -> KChoice:
    """Return the k to use (rule in the module docstring) with the silhouette of each k tried."""
    n = int(x.shape[0])
    if k_fixed:
        return KChoice(min(k_fixed, n), f"fixed k={k_fixed}")
    ceiling = k_ceiling(n, k_max=k_max)
    grid = [k for k in K_GRID if k <= ceiling] or [2]
    if n < 3:
        return KChoice(1, "fewer than 3 users: one cluster")
    device = device or torch.device("cpu")
    xt = _as_tensor(x, device)
    rng = np.random.default_rng(seed)
    sub = xt[torch.as_tensor(rng.choice(n, size=min(n, fit_sample), replace=False), device=device)]
    scores: dict[int, float] = {}
    for k in grid:
        if k > sub.shape[0]:
            break
        fit = minibatch_kmeans(sub, k, seed=seed, device=device)
        scores[k] = silhouette_on_sample(sub, fit.labels, sample=silhouette_sample, seed=seed, device=device)
    best = max(scores, key=lambda k: (round(scores[k], 4), -k))
    return KChoice(best, f"best silhouette over k in {list(scores)} (ceiling min(k_max={k_max}, sqrt(n/2)))", scores)
