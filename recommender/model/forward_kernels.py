"""The session models' forward pass for one session on the CPU, compiled (numba): what the rerank
runs per request when the scorer is on the CPU.

Why compiled: for one session of ten clicks, torch's GRU runs a dozen small operations per click,
and TailNet's attention, rectification and candidate scoring another thirty (SASRec's two
attention layers about as many); their per-call overhead, not the arithmetic, was 0.4-0.5 ms of
a 1 ms request (a profile of bench/bench_model_scoring.py). The loops below do the same arithmetic
in a fifth of that or less.

The formulas are the torch models' (recommender/model/network.py, the one definition: training,
`hotfeed eval` and batched or GPU serving run those); this module repeats them for one session,
in float32, for TailNet, GRU4Rec and SASRec. ``CompiledForward.of`` checks the two against each
other on sample sessions when a scorer loads and returns None, so the scorer keeps torch, when
they disagree or the model is built in a way not repeated here;
tests/unit/recommender/model/test_forward_kernels.py checks the same for every model and session
length. The item table is read in place (a view of the model's weight, no second copy of the
catalogue); the other weights are small copies. ``cache=True`` keeps the machine code between
processes (as knn_kernels.py does).
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch
import torch.nn.functional as F
from numba import njit

from recommender.model.network import GRU4Rec, SASRec, SessionModel, TailNet

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
def _layer_norm(x, weight, bias, eps, out):
    """out = LayerNorm(x) over its one dimension (biased variance, as torch)."""
    mean = 0.0
    for i in range(len(x)):
        mean += x[i]
    mean /= len(x)
    variance = 0.0
    for i in range(len(x)):
        variance += (x[i] - mean) * (x[i] - mean)
    scale = 1.0 / math.sqrt(variance / len(x) + eps)
    for i in range(len(x)):
        out[i] = (x[i] - mean) * scale * weight[i] + bias[i]


@njit(cache=True, nogil=True)
def _sasrec_query(items, table, positions, input_scale, norm1, in_proj_t, in_bias, out_proj_t, out_bias, norm2,
                  linear1_t, bias1, linear2_t, bias2, final_norm, eps, heads):
    """Return SASRec.represent's query [D] for one session: pre-norm causal self-attention layers
    (torch.nn.TransformerEncoderLayer with norm_first, ReLU), the final LayerNorm at the last position.
    Per-layer weights are stacked on their first axis; ``norm*`` are [layers or 1, 2, D] (weight, bias)."""
    length, width = len(items), table.shape[1]
    head_width = width // heads
    x = np.empty((length, width), np.float32)
    for t in range(length):
        row = table[items[t]]
        pos = positions[min(t, len(positions) - 1)]
        for i in range(width):
            x[t, i] = row[i] * input_scale + pos[i]
    normed = np.empty((length, width), np.float32)
    qkv = np.empty((length, 3 * width), np.float32)
    context = np.empty(width, np.float32)
    projected = np.empty(width, np.float32)
    hidden = np.empty(linear1_t.shape[2], np.float32)
    weights = np.empty(length, np.float32)
    for layer in range(in_proj_t.shape[0]):
        for t in range(length):
            _layer_norm(x[t], norm1[layer, 0], norm1[layer, 1], eps, normed[t])
            _project(in_proj_t[layer], normed[t], qkv[t])
            for i in range(3 * width):
                qkv[t, i] += in_bias[layer, i]
        attended = np.empty((length, width), np.float32)
        for t in range(length):
            for h in range(heads):
                lo = h * head_width
                top = -np.inf
                for u in range(t + 1):  # causal: position t reads positions 0..t
                    score = 0.0
                    for i in range(head_width):
                        score += qkv[t, lo + i] * qkv[u, width + lo + i]
                    weights[u] = score / math.sqrt(head_width)
                    top = max(top, weights[u])
                total = 0.0
                for u in range(t + 1):
                    weights[u] = math.exp(weights[u] - top)
                    total += weights[u]
                for i in range(head_width):
                    value = 0.0
                    for u in range(t + 1):
                        value += weights[u] * qkv[u, 2 * width + lo + i]
                    context[lo + i] = value / total
            _project(out_proj_t[layer], context, projected)
            for i in range(width):
                attended[t, i] = x[t, i] + projected[i] + out_bias[layer, i]
        for t in range(length):
            _layer_norm(attended[t], norm2[layer, 0], norm2[layer, 1], eps, normed[t])
            _project(linear1_t[layer], normed[t], hidden)
            for i in range(len(hidden)):
                hidden[i] = max(hidden[i] + bias1[layer, i], 0.0)
            _project(linear2_t[layer], hidden, projected)
            for i in range(width):
                x[t, i] = attended[t, i] + projected[i] + bias2[layer, i]
    query = np.empty(width, np.float32)
    _layer_norm(x[length - 1], final_norm[0], final_norm[1], eps, query)
    return query


@njit(cache=True, nogil=True)
def _dot_logits(query, table, candidates, cosine, tail, log_tail, log_head):
    """Return query . table[c] for each candidate (the row made unit length first when ``cosine``, as
    F.normalize does), plus log_tail or log_head by the candidate's tail flag."""
    out = np.empty(len(candidates), np.float32)
    for c in range(len(candidates)):
        row = table[candidates[c]]
        s = 0.0
        squares = 0.0
        for i in range(len(query)):
            s += query[i] * row[i]
            squares += row[i] * row[i]
        if cosine:
            s /= max(math.sqrt(squares), 1e-12)
        out[c] = s + (log_tail if tail[candidates[c]] else log_head)
    return out


def _log_sigmoid(x: float) -> float:
    return min(x, 0.0) - math.log1p(math.exp(-abs(x)))


def _numpy(tensor: torch.Tensor, *, transpose: bool = False) -> np.ndarray:
    array = tensor.detach().to("cpu", torch.float32).numpy()
    return np.ascontiguousarray(array.T if transpose else array)


class CompiledForward:
    """One session through TailNet, GRU4Rec or SASRec and its candidates' logits, compiled, on the CPU.

    ``represent(items)`` -> (query [D] float32, TailNet's preference logit or None) and
    ``logits(query, preference, candidates)`` -> float32 [C]: ``SessionModel.represent`` and
    ``score_represented`` for a batch of one, within float32 rounding.
    """

    def __init__(self, model: SessionModel):
        self.name = model.name
        self._table = _numpy(model.items.weight)
        self._tail = model.is_tail.detach().cpu().numpy().astype(np.bool_)
        self._scale = None  # TailNet's cosine scale; the others score by dot product
        if isinstance(model, SASRec):
            self._encode = self._sasrec(model)
            return
        gru = model.gru
        if gru.num_layers != 1 or gru.bidirectional or not gru.bias or not gru.batch_first:
            raise ValueError("only a one-layer, one-way GRU with biases is compiled")
        weights = (self._table, _numpy(gru.weight_ih_l0, transpose=True), _numpy(gru.weight_hh_l0, transpose=True),
                   _numpy(gru.bias_ih_l0), _numpy(gru.bias_hh_l0))
        if not isinstance(model, TailNet):
            self._encode = lambda items: (_gru_states(items, *weights)[-1], None)
            return
        weights += (_numpy(model.attend_state.weight, transpose=True), _numpy(model.attend_last.weight, transpose=True),
                    _numpy(model.attend_out.weight)[0], _numpy(model.combine.weight, transpose=True),
                    _numpy(model.preference.weight)[0], np.float32(model.preference.bias.item()))
        tail_bias = float(model.tail_bias)

        def encode(items):
            query, preference = _tailnet_query(items, *weights)
            return query, float(preference) + tail_bias

        self._encode = encode
        self._scale = float(model.scale)  # TailNet scores by cosine

    def _sasrec(self, model: SASRec):
        layers = list(model.blocks.layers)
        if (model.blocks.norm is not None or not layers
                or any(not layer.norm_first or layer.activation is not F.relu or not layer.self_attn._qkv_same_embed_dim
                       or layer.self_attn.in_proj_bias is None for layer in layers)):
            raise ValueError("only pre-norm ReLU encoder layers with packed attention weights are compiled")
        eps = {layer.norm1.eps for layer in layers} | {layer.norm2.eps for layer in layers} | {model.norm.eps}
        if len(eps) != 1:
            raise ValueError("the layer norms' eps differ")

        def stacked(get, transpose=False):
            return np.ascontiguousarray(np.stack([_numpy(get(layer), transpose=transpose) for layer in layers]))

        def norms(get):
            return np.ascontiguousarray(np.stack([np.stack([_numpy(get(layer).weight), _numpy(get(layer).bias)])
                                                  for layer in layers]))

        weights = (self._table, _numpy(model.positions.weight), np.float32(model.embedding_dim ** 0.5),
                   norms(lambda layer: layer.norm1), stacked(lambda layer: layer.self_attn.in_proj_weight, True),
                   stacked(lambda layer: layer.self_attn.in_proj_bias),
                   stacked(lambda layer: layer.self_attn.out_proj.weight, True),
                   stacked(lambda layer: layer.self_attn.out_proj.bias), norms(lambda layer: layer.norm2),
                   stacked(lambda layer: layer.linear1.weight, True), stacked(lambda layer: layer.linear1.bias),
                   stacked(lambda layer: layer.linear2.weight, True), stacked(lambda layer: layer.linear2.bias),
                   np.stack([_numpy(model.norm.weight), _numpy(model.norm.bias)]), float(eps.pop()),
                   int(layers[0].self_attn.num_heads))
        return lambda items: (_sasrec_query(items, *weights), None)

    @classmethod
    def of(cls, model: SessionModel, *, max_length: int = 20) -> "CompiledForward | None":
        """Return the compiled forward of ``model`` (on the CPU, in eval mode), checked against torch on
        a few sample sessions; None for models it does not cover or when the two disagree."""
        if type(model) not in (TailNet, GRU4Rec, SASRec) or model.training:
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
        return self._encode(np.ascontiguousarray(items, dtype=np.int64))

    def logits(self, query: np.ndarray, preference: float | None, candidates: np.ndarray) -> np.ndarray:
        candidates = np.ascontiguousarray(candidates, dtype=np.int64)
        if self._scale is not None:  # TailNet: scale * cosine
            query = query * np.float32(self._scale / max(float(np.linalg.norm(query)), 1e-12))
        cosine = self._scale is not None
        if preference is None:
            return _dot_logits(query, self._table, candidates, cosine, self._tail, 0.0, 0.0)
        return _dot_logits(query, self._table, candidates, cosine, self._tail, _log_sigmoid(preference),
                           _log_sigmoid(-preference))

    def vector_logits(self, query: np.ndarray, preference: float | None, vectors: np.ndarray) -> np.ndarray:
        """Return ``SessionModel.score_vectors``'s logits [C] of items given by their vectors [C, D] (new
        listings: tail items)."""
        vectors = np.asarray(vectors, dtype=np.float32)
        if self._scale is not None:  # TailNet: scale * cosine
            query = query * np.float32(self._scale / max(float(np.linalg.norm(query)), 1e-12))
            vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), np.float32(1e-12))
        logits = vectors @ query
        return logits if preference is None else logits + np.float32(_log_sigmoid(preference))

    @torch.inference_mode()
    def difference_from(self, model: SessionModel, *, sessions: int = 8, max_length: int = 20,
                        seed: int = 0) -> float:
        """Return the largest absolute difference from ``model``'s torch forward (queries, preference
        logits, logits of up to 2,000 items and of 50 of them given as vectors) over ``sessions`` random sessions of 1 to ``max_length`` items."""
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
            vectors = self._table[sample[:50]] * 1.5  # as content vectors of new listings come in
            cold = model.score_vectors(query, preference, torch.as_tensor(vectors))[0].numpy()
            worst = max(worst, float(np.abs(cold - self.vector_logits(mine, my_preference, vectors)).max()))
            if preference is not None:
                worst = max(worst, abs(float(preference[0]) - my_preference))
        return worst
