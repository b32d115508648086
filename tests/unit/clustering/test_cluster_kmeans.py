"""Mini-batch k-means, the sampled silhouette and the rule for k."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from clustering.kmeans import choose_k, k_ceiling, minibatch_kmeans, silhouette_on_sample
from recommender.errors import InvalidRequest


def planted(n: int = 6_000, k: int = 5, dims: int = 12, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, dims)) * 6
    truth = rng.integers(0, k, n)
    return (centres[truth] + rng.normal(size=(n, dims))).astype(np.float32), truth


def test_kmeans_recovers_planted_clusters():
    x, truth = planted()
    fit = minibatch_kmeans(x, 5, seed=0)
    table = pd.crosstab(truth, fit.labels)
    # Each planted cluster lands in exactly one found cluster and vice versa.
    assert (table.max(axis=1) / table.sum(axis=1)).min() > 0.99
    assert sorted(table.idxmax(axis=1)) == [0, 1, 2, 3, 4]
    assert fit.sizes.sum() == len(x)
    assert fit.centroids.shape == (5, 12) and fit.centroids.dtype == np.float32


def test_choose_k_finds_the_planted_number_of_clusters():
    x, _ = planted(k=6)
    choice = choose_k(x, k_max=16, seed=0)
    assert choice.k == 6
    assert choice.scores[6] == max(choice.scores.values())


def test_k_ceiling_is_sqrt_half_n_capped_by_k_max_and_at_least_two():
    assert k_ceiling(200, k_max=32) == 10          # sqrt(200 / 2) = 10
    assert k_ceiling(1_000_000, k_max=32) == 32    # sqrt(500000) = 707, capped
    assert k_ceiling(3, k_max=32) == 2


def test_choose_k_never_tries_more_than_the_ceiling():
    x, _ = planted(n=200, k=3)
    choice = choose_k(x, k_max=64, seed=0)
    assert max(choice.scores) <= 10


def test_fixed_k_is_used_as_given():
    x, _ = planted(n=500)
    choice = choose_k(x, k_fixed=7)
    assert choice.k == 7 and choice.scores == {} and "fixed" in choice.rule


def test_silhouette_is_high_for_separated_clusters_and_near_zero_for_noise():
    x, truth = planted()
    assert silhouette_on_sample(x, truth, sample=1_000) > 0.6
    noise = np.random.default_rng(0).normal(size=(2_000, 12)).astype(np.float32)
    assert abs(silhouette_on_sample(noise, np.random.default_rng(1).integers(0, 4, 2_000), sample=1_000)) < 0.05


def test_silhouette_of_one_cluster_is_zero():
    x, _ = planted(n=300)
    assert silhouette_on_sample(x, np.zeros(300, dtype=np.int64)) == 0.0


def test_more_clusters_than_points_is_rejected():
    with pytest.raises(InvalidRequest, match="k=5"):
        minibatch_kmeans(np.zeros((3, 2), dtype=np.float32), 5)


def test_fewer_distinct_points_than_k_still_fits():
    x = np.repeat(np.eye(2, dtype=np.float32), 50, axis=0)
    fit = minibatch_kmeans(x, 4, seed=0)
    assert fit.inertia == pytest.approx(0.0, abs=1e-6)
