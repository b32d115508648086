"""Hand-built top-20 lists for the tests of the long-tail rules (significance, hybrid)."""

import numpy as np

from recommender.model.metrics import RankedLists


def hand_lists(n: int, lost: int, tail: int = 0) -> RankedLists:
    """``n`` prefixes whose targets are items 1..n, each at rank 1 except the first ``lost``, whose
    first place goes to a head item that is no target (n + 21); every list ends with ``tail`` of
    the tail items n + 1..n + 20 (the only tail items)."""
    targets = np.arange(1, n + 1)
    is_tail = np.zeros(n + 22, dtype=bool)
    is_tail[n + 1:n + 21] = True
    top = np.zeros((n, 20), dtype=np.int64)
    top[:, 0] = targets
    top[:lost, 0] = n + 21
    if tail:
        top[:, 20 - tail:] = np.arange(n + 1, n + 1 + tail)
    return RankedLists(topk=top, targets=targets, is_tail=is_tail)
