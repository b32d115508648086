"""Fixtures for every test."""

from __future__ import annotations

import os

import pytest
import torch


# Servers started by the tests run with the development defaults (the public cursor secret,
# no service token), which production refuses; the tests of that refusal turn it off.
os.environ.setdefault("HOTFEED_DEV_MODE", "1")


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    # The models and k-means batches in the tests are tiny: a second intra-op thread only adds
    # contention, and on a busy 2-core machine spinning OpenMP threads made suites 10-30x slower.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
