"""Each data-side indexer module's __all__ lists exactly its public definitions."""

from __future__ import annotations

import importlib
import inspect

import pytest

MODULES = ["indexer.cohorts", "indexer.importers", "indexer.popularity", "indexer.sessions", "indexer.synth",
           "indexer.weblogs", "indexer.commands"]


@pytest.mark.parametrize("name", MODULES)
def test_all_is_exact(name):
    module = importlib.import_module(name)
    defined = {
        attr for attr, value in vars(module).items()
        if not attr.startswith("_") and (inspect.isfunction(value) or inspect.isclass(value))
        and value.__module__ == name
    }
    assert set(module.__all__) >= defined, f"{name}: public but not exported: {sorted(defined - set(module.__all__))}"
    assert all(hasattr(module, attr) for attr in module.__all__)
