"""The real samples of the shared data folder, for the ``real_data`` tests.

They live under settings.paths.shared_data_dir (../shared/data beside the repository, or
HOTFEED_PATHS_SHARED_DATA_DIR) and are left out of the default run (``make test-real-data``
runs them). A missing sample makes the test that asks for it FAIL, naming the folder; it never
skips.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import pytest

from indexer.importers import REES46_SAMPLE, TAOBAO_SAMPLE, ImportResult, import_rees46, import_taobao
from recommender.settings import load_settings


def sample(relative: Path) -> Path:
    """Return the path of a sample in the shared data folder; fail the calling test when it is absent."""
    shared = load_settings().paths.shared_data_dir
    path = shared / relative
    if not path.is_file():
        pytest.fail(
            f"real sample {str(path)!r} is absent: the real_data tests need the shared data folder "
            f"{str(shared)!r} holding {relative.as_posix()!r} (see SOURCE.md there). Put the samples there or "
            f"set HOTFEED_PATHS_SHARED_DATA_DIR to the folder that holds them; the default `make test` does not need them.",
            pytrace=False,
        )
    return path


# A cached function rather than a fixture, so that a missing sample makes each test FAIL (a
# fixture's failure is reported as an error in setup). A failed call is not cached.
@lru_cache(maxsize=None)
def imported(kind: str) -> ImportResult:
    """Return the import of the "taobao" or "rees46" sample (once per test session)."""
    if kind == "taobao":
        return import_taobao(sample(TAOBAO_SAMPLE))
    return import_rees46(sample(REES46_SAMPLE))
