"""Pure ranking steps after the engine: blend with the session model, then cap categories per page."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["blend_scores", "diversify", "category_key"]


def _minmax(values: np.ndarray) -> np.ndarray:
    finite = np.isfinite(values)
    if not finite.any():
        return np.zeros_like(values, dtype=np.float64)
    lo, hi = values[finite].min(), values[finite].max()
    out = np.zeros_like(values, dtype=np.float64)
    if hi > lo:
        out[finite] = (values[finite] - lo) / (hi - lo)
    else:
        out[finite] = 1.0
    return out


def blend_scores(engine_scores: Sequence[float], model_scores: Sequence[float] | None, *, blend: float) -> np.ndarray:
    """Return (1 - blend) * engine + blend * model, both min-max scaled to [0, 1] over the candidates.

    Candidates the model cannot score (-inf) get model part 0. Without model scores the
    engine scores come back scaled, so the order is the engine's.
    """
    engine = _minmax(np.asarray(engine_scores, dtype=np.float64))
    if model_scores is None or blend == 0:
        return engine
    return (1 - blend) * engine + blend * _minmax(np.asarray(model_scores, dtype=np.float64))


def category_key(category: str, *, level: int) -> str:
    """Return the category prefix diversity counts by: level 1 of "a/b/c" is "a"; level 0 the full path."""
    if level <= 0:
        return category
    if level == 1:
        return category.partition("/")[0]
    return "/".join(category.split("/", level)[:level])


def diversify(categories: Sequence[str], *, page_size: int, max_per_category: int | None) -> list[int]:
    """Return positions of a ranked list reordered so each page holds at most ``max_per_category``
    items of one category; deferred items move to the earliest page with room, in rank order.
    Pages stay full: when only over-full categories remain, the cap gives way.
    """
    order = list(range(len(categories)))
    if not max_per_category:
        return order
    out: list[int] = []
    waiting = order
    while waiting:
        page: list[int] = []
        counts: dict[str, int] = {}
        rest: list[int] = []
        for n, pos in enumerate(waiting):
            if len(page) == page_size:
                # The page is full: everything after it waits, in rank order.
                rest += waiting[n:]
                break
            cat = categories[pos]
            seen = counts.get(cat, 0)
            if seen < max_per_category:
                page.append(pos)
                counts[cat] = seen + 1
            else:
                rest.append(pos)
        if len(page) < page_size and rest:
            # Only over-full categories are left: fill the page with them rather than short pages.
            fill = page_size - len(page)
            page, rest = page + rest[:fill], rest[fill:]
        out += page
        waiting = rest
    return out
