"""Compiled loops of the session-KNN methods (numba): one session's neighbour votes, and sums at
the candidates. ``session_knn.SessionKNN.votes`` and the blend's serving path call them; the
formulas are those of session_knn.py's docstring, written out as loops.

Why compiled: the serving path scores one session per request, where a vectorized numpy
version spends most of its time in per-call overhead of some thirty small array operations
(0.3 ms of the rerank's 2 ms budget at 200,000 training sessions); the loops below do the same
arithmetic in about a third of that. ``cache=True`` keeps the machine code between processes
(next to this file, or under ``NUMBA_CACHE_DIR`` / the user's cache folder when that is
read-only); ``nogil=True`` lets the gRPC server's threads score in parallel.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = ["DECAYS", "neighbour_votes", "sum_at"]

# The session-weight decay of KNNParams.decay, as the kernel's integer code.
DECAYS: dict[str, int] = {"none": 0, "linear": 1, "exp": 2}


@njit(inline="always")
def _find(sorted_keys, n, value):
    """Return the index of ``value`` in ``sorted_keys[:n]`` (ascending, distinct), or -1."""
    lo, hi = 0, n
    while lo < hi:
        mid = (lo + hi) >> 1
        if sorted_keys[mid] < value:
            lo = mid + 1
        else:
            hi = mid
    return lo if lo < n and sorted_keys[lo] == value else -1


@njit(cache=True, nogil=True)
def neighbour_votes(session, postings, post_indptr, distinct_indptr, distinct_items, distinct, indptr, clicks, idf,
                    n_sessions, k, sample, decay, lambda_1, lambda_2, lambda_3, idf_weight):
    """Return (items, votes) of one session (int64 item indices > 0, oldest first): one vote per
    kept neighbour and distinct item it holds, neighbours in order of similarity.

    The index arrays are SessionKNN's (see there); the parameters are KNNParams' with ``decay``
    as its DECAYS code.
    """
    m = len(session)
    # The session's distinct items, each with the rank (0-based position) of its latest click.
    keys = np.empty(m, np.int64)
    key_rank = np.empty(m, np.int64)
    n_keys = 0
    for p in range(m):
        found = -1
        for u in range(n_keys):
            if keys[u] == session[p]:
                found = u
                break
        if found < 0:
            found = n_keys
            keys[found] = session[p]
            n_keys += 1
        key_rank[found] = p
    order = np.argsort(keys[:n_keys])
    keys = keys[:n_keys][order]
    key_rank = key_rank[:n_keys][order]
    key_weight = np.empty(n_keys)
    squares = 0.0
    for u in range(n_keys):
        p = key_rank[u] + 1
        if decay == 1:
            key_weight[u] = p / m
        elif decay == 2:
            key_weight[u] = math.exp((p - m) / lambda_1)
        else:
            key_weight[u] = 1.0
        squares += key_weight[u] * key_weight[u]
    norm = math.sqrt(squares) if decay == 2 else math.sqrt(n_keys)

    # Candidate neighbours: the ``sample`` most recent sessions among each item's ``sample`` most
    # recent ones. Postings are most recent first, so merging their heads finds them in order.
    heads = np.empty(n_keys, np.int64)
    ends = np.empty(n_keys, np.int64)
    for u in range(n_keys):
        heads[u] = post_indptr[keys[u]]
        ends[u] = min(post_indptr[keys[u] + 1], heads[u] + sample)
    newest_first = np.empty(sample, np.int64)
    n_candidates = 0
    while n_candidates < sample:
        newest = -1
        for u in range(n_keys):
            if heads[u] < ends[u] and postings[heads[u]] > newest:
                newest = postings[heads[u]]
        if newest < 0:
            break
        for u in range(n_keys):
            if heads[u] < ends[u] and postings[heads[u]] == newest:
                heads[u] += 1
        newest_first[n_candidates] = newest
        n_candidates += 1
    candidates = newest_first[:n_candidates][::-1]  # oldest first: ties in similarity keep this order

    # Similarity: the session weights of each candidate's distinct items, normalized, aged.
    sims = np.zeros(n_candidates)
    for c in range(n_candidates):
        n = candidates[c]
        s = 0.0
        for j in range(distinct_indptr[n], distinct_indptr[n + 1]):
            u = _find(keys, n_keys, distinct_items[j])
            if u >= 0:
                s += key_weight[u]
        s = s / (norm * math.sqrt(distinct[n]))
        if math.isfinite(lambda_2):
            s = s * math.exp(-(1.0 - (n + 1) / max(n_sessions, 1)) / lambda_2)
        sims[c] = s
    top = np.argsort(-sims, kind="mergesort")[:k]
    n_top = 0
    while n_top < len(top) and sims[top[n_top]] > 0:
        n_top += 1

    # Votes: each kept neighbour's distinct items, at the strongest position factor of the item.
    size = 0
    for t in range(n_top):
        n = candidates[top[t]]
        size += distinct_indptr[n + 1] - distinct_indptr[n]
    items = np.empty(size, np.int64)
    votes = np.empty(size)
    at = 0
    for t in range(n_top):
        n = candidates[top[t]]
        lo, hi = indptr[n], indptr[n + 1]
        row = distinct_items[distinct_indptr[n]:distinct_indptr[n + 1]]
        best = np.zeros(len(row))
        if math.isfinite(lambda_3):
            # c: the most recent click of s that the neighbour holds; its last position there.
            c_rank, c_pos = -1, 0
            for j in range(lo, hi):
                u = _find(keys, n_keys, clicks[j])
                if u >= 0 and key_rank[u] >= c_rank:
                    c_rank, c_pos = key_rank[u], j - lo
            for j in range(lo, hi):
                factor = math.exp(-abs(j - lo - c_pos) / lambda_3)
                r = _find(row, len(row), clicks[j])
                if factor > best[r]:
                    best[r] = factor
        else:
            best[:] = 1.0
        for r in range(len(row)):
            vote = sims[top[t]] * best[r]
            if idf_weight != 0.0:
                vote = vote * (1.0 + idf_weight * idf[row[r]])
            items[at] = row[r]
            votes[at] = vote
            at += 1
    return items, votes


@njit(cache=True, nogil=True)
def sum_at(keys, values, at):
    """Return, for each entry of ``at``, the sum of ``values`` whose key equals it (0 where none
    does); values are added in their order. ``keys`` and ``at`` are int64."""
    order = np.argsort(at, kind="mergesort")
    sorted_at = at[order]
    n = len(at)
    out = np.zeros(n)
    for j in range(len(keys)):
        lo, hi = 0, n
        while lo < hi:
            mid = (lo + hi) >> 1
            if sorted_at[mid] < keys[j]:
                lo = mid + 1
            else:
                hi = mid
        while lo < n and sorted_at[lo] == keys[j]:
            out[order[lo]] += values[j]
            lo += 1
    return out
