"""Fixtures for every test."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    # The models and k-means batches in the tests are tiny: a second intra-op thread only adds
    # contention, and on a busy 2-core machine spinning OpenMP threads made suites 10-30x slower.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
