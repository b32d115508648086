"""The GRU models' forward pass for one session on the CPU, compiled (numba): what the rerank runs
per request when the scorer is on the CPU.

Why compiled: for one session of ten clicks, torch's GRU runs a dozen small operations per click,
and TailNet's attention, rectification and candidate scoring another thirty; their per-call
overhead, not the arithmetic, was 0.4 ms of a 1 ms request (a profile of
bench/bench_model_scoring.py). The loops below do the same arithmetic in a tenth of that.

The formulas are the torch models' (recommender/model/network.py, the one definition: training,
`hotfeed eval` and batched or GPU serving run those); this module repeats them for one session,
in float32, for TailNet and GRU4Rec (SASRec stays on torch). ``CompiledForward.of`` checks the
two against each other on sample sessions when a scorer loads and returns None, so the scorer
keeps torch, when they disagree; tests/unit/recommender/model/test_forward_kernels.py checks the
same on every shape the models take. ``cache=True`` keeps the machine code between processes
(as knn_kernels.py does).
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch
import torch.nn.functional as F
from numba import njit

from recommender.model.network import GRU4Rec, SessionModel, TailNet

__all__ = ["CompiledForward"]

_log = logging.getLogger("hotfeed.model")
_CHECK_TOLERANCE = 1e-4  # the largest difference from torch ``of`` accepts (logits are ~1-20)


@njit(cache=True, nogil=True)
def _project(weight_t, x, out):
    """out = weight @ x, from the weight transposed ([in, out], C-contiguous: the inner loop vectorizes)."""
    out[:] = 0.0
    for j in range(weight_t.shape[0]):
        xj = x[j]
        for i in range(weight_t.shape[1]):
            out[i] += weight_t[j, i] * xj


@njit(cache=True, nogil=True)
def _sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x))


@njit(cache=True, nogil=True)
def _gru_states(items, table, w_ih_t, w_hh_t, b_ih, b_hh):
    """Return the GRU's states [L, H] over the items' embeddings (torch.nn.GRU's equations, gates r, z, n)."""
    hidden = w_hh_t.shape[0]
    states = np.empty((len(items), hidden), np.float32)
    h = np.zeros(hidden, np.float32)
    gi = np.empty(3 * hidden, np.float32)
    gh = np.empty(3 * hidden, np.float32)
    for t in range(len(items)):
        _project(w_ih_t, table[items[t]], gi)
        _project(w_hh_t, h, gh)
        for i in range(hidden):
            r = _sigmoid(gi[i] + b_ih[i] + gh[i] + b_hh[i])
            z = _sigmoid(gi[hidden + i] + b_ih[hidden + i] + gh[hidden + i] + b_hh[hidden + i])
            n = math.tanh(gi[2 * hidden + i] + b_ih[2 * hidden + i] + r * (gh[2 * hidden + i] + b_hh[2 * hidden + i]))
            h[i] = (1.0 - z) * n + z * h[i]
        states[t] = h
    return states


@njit(cache=True, nogil=True)
def _tailnet_query(items, table, w_ih_t, w_hh_t, b_ih, b_hh, state_t, last_t, out_w, combine_t, preference_w,
                   preference_b):
    """Return (query [D], preference logit before the tail offset): TailNet.represent for one session."""
    states = _gru_states(items, table, w_ih_t, w_hh_t, b_ih, b_hh)
    width = states.shape[1]
    local = states[len(items) - 1]
    last = np.empty(width, np.float32)
    _project(last_t, local, last)
    both = np.zeros(2 * width, np.float32)
    attended = np.empty(width, np.float32)
    for t in range(len(items)):
        _project(state_t, states[t], attended)
        weight = 0.0
        for i in range(width):
            weight += out_w[i] * _sigmoid(attended[i] + last[i])
        for i in range(width):
            both[i] += weight * states[t, i]
    both[width:] = local
    query = np.empty(combine_t.shape[1], np.float32)
    _project(combine_t, both, query)
    preference = preference_b
    for i in range(2 * width):
        preference += preference_w[i] * both[i]
    return query, preference


@njit(cache=True, nogil=True)
def _dot_logits(query, table, candidates, tail, log_tail, log_head):
    """Return query . table[c] for each candidate, plus log_tail or log_head by the candidate's tail flag."""
    out = np.empty(len(candidates), np.float32)
    for c in range(len(candidates)):
        row = table[candidates[c]]
        s = 0.0
        for i in range(len(query)):
            s += query[i] * row[i]
        out[c] = s + (log_tail if tail[candidates[c]] else log_head)
    return out


def _log_sigmoid(x: float) -> float:
    return min(x, 0.0) - math.log1p(math.exp(-abs(x)))


def _numpy(tensor: torch.Tensor, *, transpose: bool = False) -> np.ndarray:
    array = tensor.detach().to("cpu", torch.float32).numpy()
    return np.ascontiguousarray(array.T if transpose else array)


class CompiledForward:
    """One session through TailNet or GRU4Rec and its candidates' logits, compiled, on the CPU.

    ``represent(items)`` -> (query [D] float32, TailNet's preference logit or None) and
    ``logits(query, preference, candidates)`` -> float32 [C]: ``SessionModel.represent`` and
    ``score_represented`` for a batch of one, within float32 rounding.
    """

    def __init__(self, model: SessionModel):
        gru = model.gru
        if gru.num_layers != 1 or gru.bidirectional or not gru.bias or not gru.batch_first:
            raise ValueError("only a one-layer, one-way GRU with biases is compiled")
        self.name = model.name
        self._gru = (_numpy(gru.weight_ih_l0, transpose=True), _numpy(gru.weight_hh_l0, transpose=True),
                     _numpy(gru.bias_ih_l0), _numpy(gru.bias_hh_l0))
        self._table = _numpy(model.items.weight)
        self._tail = model.is_tail.detach().cpu().numpy().astype(np.bool_)
        if isinstance(model, TailNet):
            self._attention = (_numpy(model.attend_state.weight, transpose=True),
                               _numpy(model.attend_last.weight, transpose=True), _numpy(model.attend_out.weight)[0],
                               _numpy(model.combine.weight, transpose=True), _numpy(model.preference.weight)[0],
                               np.float32(model.preference.bias.item()))
            self._tail_bias = float(model.tail_bias)
            # TailNet scores by cosine: the candidates' unit vectors once, the query's per request.
            self._scale = float(model.scale)
            self._score_table = _numpy(F.normalize(model.items.weight.detach().float(), dim=-1))
        else:
            self._attention = None
            self._scale = None
            self._score_table = self._table

    @classmethod
    def of(cls, model: SessionModel, *, max_length: int = 20) -> "CompiledForward | None":
        """Return the compiled forward of ``model`` (on the CPU, in eval mode), checked against torch on
        a few sample sessions; None for models it does not cover or when the two disagree."""
        if type(model) not in (TailNet, GRU4Rec) or model.training:
            return None
        try:
            compiled = cls(model)
        except (ValueError, AttributeError) as exc:
            _log.info("serving %s with torch: %s", model.name, exc)
            return None
        difference = compiled.difference_from(model, max_length=max_length)
        if not difference <= _CHECK_TOLERANCE:
            _log.warning("serving %s with torch: the compiled forward differs from it by %.3g", model.name, difference)
            return None
        return compiled

    def represent(self, items: np.ndarray) -> tuple[np.ndarray, float | None]:
        items = np.ascontiguousarray(items, dtype=np.int64)
        if self._attention is None:
            return _gru_states(items, self._table, *self._gru)[-1], None
        query, preference = _tailnet_query(items, self._table, *self._gru, *self._attention)
        return query, float(preference) + self._tail_bias

    def logits(self, query: np.ndarray, preference: float | None, candidates: np.ndarray) -> np.ndarray:
        candidates = np.ascontiguousarray(candidates, dtype=np.int64)
        if self._scale is not None:  # TailNet: scale * cosine
            query = query * np.float32(self._scale / max(float(np.linalg.norm(query)), 1e-12))
        if preference is None:
            return _dot_logits(query, self._score_table, candidates, self._tail, 0.0, 0.0)
        return _dot_logits(query, self._score_table, candidates, self._tail, _log_sigmoid(preference),
                           _log_sigmoid(-preference))

    @torch.inference_mode()
    def difference_from(self, model: SessionModel, *, sessions: int = 8, max_length: int = 20,
                        seed: int = 0) -> float:
        """Return the largest absolute difference from ``model``'s torch forward (queries, preference
        logits, logits of up to 2,000 items) over ``sessions`` random sessions of 1 to ``max_length`` items."""
        rng = np.random.default_rng(seed)
        num_items = len(self._table)
        if num_items < 2:
            return 0.0
        worst = 0.0
        sample = rng.permutation(np.arange(1, num_items))[:2000]
        for length in np.linspace(1, max_length, sessions).astype(int):
            items = rng.integers(1, num_items, size=int(length))
            query, preference = model.represent(torch.as_tensor(items)[None], torch.tensor([len(items)]))
            logits = model.score_represented(query, preference, torch.as_tensor(sample))[0].numpy()
            mine, my_preference = self.represent(items)
            worst = max(worst, float(np.abs(query[0].numpy() - mine).max()),
                        float(np.abs(logits - self.logits(mine, my_preference, sample)).max()))
            if preference is not None:
                worst = max(worst, abs(float(preference[0]) - my_preference))
        return worst
