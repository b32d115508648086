"""Session models: TailNet-style, SASRec and GRU4Rec over one shared item-embedding table.

A model only says how to turn a session into a query vector, how to score items for it
and what its training loss is; it owns no optimizer, loop or file I/O (trainer.py does).

Sessions arrive as right-padded index tensors ``items [B, L]`` (0 = padding) with
``lengths [B]``; every encoder is causal, so the state at position ``length - 1`` has seen
exactly the session and none of the padding.

TailNet-style (Liu & Zheng, RecSys 2020, "Long-tail Session-based Recommendation"):
a GRU encodes the clicks; additive attention of every state against the last one gives
the global representation s_g, the last state is the local representation s_l, and
``q = W [s_g; s_l]`` is the query. Items are scored by scaled cosine
``z_i = scale * cos(q, e_i)``. The preference mechanism reads ``[s_g; s_l]`` and outputs the
session's tail preference ``p = sigmoid(w . [s_g; s_l] + b)``; the rectification factors
``R_head = 1 - p`` and ``R_tail = p`` multiply the softmax probabilities of head and tail items,
i.e. ``logit_i = z_i + log R_head`` for head items and ``z_i + log R_tail`` for tail items, so a
session that leans to the long tail lifts every tail item against every head item.
``tail_bias`` adds a fixed offset to the preference logit at scoring time (0 = as learned).
Which items are tail is data: a bool tensor given at construction.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recommender.errors import ConfigError

__all__ = ["ItemEmbedding", "SessionModel", "TailNet", "SASRec", "GRU4Rec", "MODELS", "build_model"]


class ItemEmbedding(nn.Module):
    """The item-embedding table every model shares in shape: [num_items, dim], row 0 = padding."""

    def __init__(self, num_items: int, dim: int):
        super().__init__()
        self.table = nn.Embedding(num_items, dim, padding_idx=0)
        nn.init.normal_(self.table.weight, std=dim ** -0.5)
        with torch.no_grad():
            self.table.weight[0].zero_()

    def forward(self, items: Tensor) -> Tensor:
        return self.table(items)

    @property
    def weight(self) -> Tensor:
        return self.table.weight


def _last_state(states: Tensor, lengths: Tensor) -> Tensor:
    """Return states[b, lengths[b] - 1] for every row b: [B, D]."""
    index = (lengths - 1).clamp(min=0).view(-1, 1, 1).expand(-1, 1, states.size(-1))
    return states.gather(1, index).squeeze(1)


class SessionModel(nn.Module):
    """Base class: a session encoder plus item scoring over the shared embedding table."""

    name: ClassVar[str]
    # Constructor keywords read from the model's config (configs/<name>.yaml).
    hyper_parameters: ClassVar[tuple[str, ...]] = ("embedding_dim", "dropout")

    def __init__(self, *, num_items: int, is_tail: Tensor, embedding_dim: int = 64, dropout: float = 0.2):
        super().__init__()
        if is_tail.shape != (num_items,):
            raise ConfigError(f"is_tail has shape {tuple(is_tail.shape)!r}; expected ({num_items},)")
        self.num_items = num_items
        self.embedding_dim = embedding_dim
        self.items = ItemEmbedding(num_items, embedding_dim)
        self.dropout = nn.Dropout(dropout)
        self.register_buffer("is_tail", is_tail.to(torch.bool).clone())

    def represent(self, items: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor | None]:
        """Return (query [B, D], tail-preference logit [B] or None for models without one)."""
        raise NotImplementedError

    def _raw_scores(self, query: Tensor, weights: Tensor) -> Tensor:
        """Return query-item affinities before rectification; ``weights`` is [C, D] or [B, C, D]."""
        if weights.dim() == 2:
            return query @ weights.T
        return torch.einsum("bd,bcd->bc", query, weights)

    def score(self, items: Tensor, lengths: Tensor, candidates: Tensor | None = None) -> Tensor:
        """Return logits: [B, num_items] (padding column = -inf) or [B, C] for ``candidates``.

        ``candidates`` is [C] (shared by the batch) or [B, C] (one list per session).
        """
        query, preference = self.represent(items, lengths)
        return self.score_represented(query, preference, candidates)

    def score_represented(self, query: Tensor, preference: Tensor | None, candidates: Tensor | None = None) -> Tensor:
        """Return ``score``'s logits for sessions already represented (``represent``'s output).

        Serving represents a session once, uses the query for kNN and scores the engine's
        candidates from the same representation.
        """
        weights = self.items.weight if candidates is None else self.items(candidates)
        logits = self._raw_scores(query, weights)
        if preference is not None:
            logits = logits + self._rectification(preference, candidates)
        if candidates is None:
            logits = logits.clone()
            logits[:, 0] = float("-inf")
        return logits

    def score_vectors(self, query: Tensor, preference: Tensor | None, vectors: Tensor) -> Tensor:
        """Return logits [B, C] of items the table does not hold, given their vectors [C, D] in
        the item space (content vectors of new listings). They count as tail items: no clicks yet."""
        logits = self._raw_scores(query, vectors)
        if preference is not None:
            logits = logits + F.logsigmoid(preference).unsqueeze(1)
        return logits

    def _rectification(self, preference: Tensor, candidates: Tensor | None) -> Tensor:
        """Return log R per (session, item): log p for tail items, log(1 - p) for head items."""
        tail = self.is_tail if candidates is None else self.is_tail[candidates]
        log_tail = F.logsigmoid(preference).unsqueeze(1)
        log_head = F.logsigmoid(-preference).unsqueeze(1)
        tail = tail.unsqueeze(0) if tail.dim() == 1 else tail
        return torch.where(tail, log_tail, log_head)

    def loss(self, items: Tensor, lengths: Tensor, targets: Tensor, *, negatives: Tensor | None = None) -> Tensor:
        """Return the mean cross-entropy of the next item.

        Full softmax over every item when ``negatives`` is None; otherwise sampled softmax
        over the batch's targets plus ``negatives`` [K], with a target's duplicates in other
        columns masked so an item is never its own negative.
        """
        if negatives is None:
            return F.cross_entropy(self.score(items, lengths).float(), targets)
        candidates = torch.cat([targets, negatives])
        logits = self.score(items, lengths, candidates).float()
        rows = torch.arange(len(targets), device=targets.device)
        collision = candidates.unsqueeze(0) == targets.unsqueeze(1)
        collision[rows, rows] = False
        return F.cross_entropy(logits.masked_fill(collision, float("-inf")), rows)

    def encode(self, items: Tensor, lengths: Tensor) -> Tensor:
        """Return L2-normalized query vectors [B, D] (the kNN query in the items index)."""
        return F.normalize(self.represent(items, lengths)[0], dim=-1)

    def item_vectors(self) -> Tensor:
        """Return L2-normalized item embeddings [num_items, D]; row 0 (padding) is all zeros."""
        vectors = F.normalize(self.items.weight, dim=-1)
        return torch.cat([torch.zeros_like(vectors[:1]), vectors[1:]])


class GRU4Rec(SessionModel):
    """GRU4Rec (Hidasi et al. 2016): the last GRU state scores items by dot product."""

    name = "gru4rec"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.gru = nn.GRU(self.embedding_dim, self.embedding_dim, batch_first=True)

    def represent(self, items: Tensor, lengths: Tensor) -> tuple[Tensor, None]:
        states, _ = self.gru(self.dropout(self.items(items)))
        return _last_state(states, lengths), None


class SASRec(SessionModel):
    """SASRec (Kang & McAuley 2018): causal self-attention; the last position's output is the query."""

    name = "sasrec"
    hyper_parameters = (*SessionModel.hyper_parameters, "num_layers", "num_heads", "max_length")

    def __init__(self, *, num_layers: int = 2, num_heads: int = 2, max_length: int = 20, **kwargs):
        super().__init__(**kwargs)
        d = self.embedding_dim
        if d % num_heads:
            raise ConfigError(f"sasrec: embedding_dim {d!r} is not divisible by num_heads {num_heads!r}")
        self.positions = nn.Embedding(max_length, d)
        layer = nn.TransformerEncoderLayer(
            d, num_heads, dim_feedforward=d, dropout=self.dropout.p, batch_first=True, norm_first=True
        )
        self.blocks = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        self.max_length = max_length

    def represent(self, items: Tensor, lengths: Tensor) -> tuple[Tensor, None]:
        width = items.size(1)
        positions = torch.arange(width, device=items.device).clamp(max=self.max_length - 1)
        x = self.items(items) * self.embedding_dim ** 0.5 + self.positions(positions)
        mask = nn.Transformer.generate_square_subsequent_mask(width, device=items.device)
        # Right padding plus the causal mask means real positions never attend to padding.
        states = self.norm(self.blocks(self.dropout(x), mask=mask, is_causal=True))
        return _last_state(states, lengths), None


class TailNet(SessionModel):
    """TailNet-style model: GRU + attention (global) + last state (local) + head/tail rectification."""

    name = "tailnet"
    hyper_parameters = (*SessionModel.hyper_parameters, "scale", "tail_bias")

    def __init__(self, *, scale: float = 12.0, tail_bias: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        d = self.embedding_dim
        self.gru = nn.GRU(d, d, batch_first=True)
        self.attend_state = nn.Linear(d, d, bias=False)
        self.attend_last = nn.Linear(d, d, bias=False)
        self.attend_out = nn.Linear(d, 1, bias=False)
        self.combine = nn.Linear(2 * d, d, bias=False)
        self.preference = nn.Linear(2 * d, 1)
        self.scale = scale
        self.tail_bias = tail_bias

    def represent(self, items: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        states, _ = self.gru(self.dropout(self.items(items)))
        local = _last_state(states, lengths)
        weights = self.attend_out(torch.sigmoid(self.attend_state(states) + self.attend_last(local).unsqueeze(1)))
        valid = torch.arange(items.size(1), device=items.device).unsqueeze(0) < lengths.unsqueeze(1)
        weights = weights.squeeze(-1).masked_fill(~valid, 0.0)
        global_ = (weights.unsqueeze(-1) * states).sum(1)
        both = self.dropout(torch.cat([global_, local], dim=-1))
        preference = self.preference(both).squeeze(-1)
        if not self.training:
            preference = preference + self.tail_bias
        return self.combine(both), preference

    def _raw_scores(self, query: Tensor, weights: Tensor) -> Tensor:
        # Cosine scores stop frequent items from winning by embedding norm alone (NISER's
        # observation), which is most of why plain dot-product models under-serve the tail.
        return self.scale * super()._raw_scores(F.normalize(query, dim=-1), F.normalize(weights, dim=-1))


MODELS: dict[str, type[SessionModel]] = {m.name: m for m in (TailNet, SASRec, GRU4Rec)}


def build_model(name: str, *, num_items: int, is_tail: Tensor, config: dict) -> SessionModel:
    """Return an untrained model ``name`` built from the architecture keys of ``config``.

    Raises ConfigError for an unknown model name.
    """
    if name not in MODELS:
        raise ConfigError(f"model {name!r} is unknown; choose one of {sorted(MODELS)!r}")
    cls = MODELS[name]
    kwargs = {k: config[k] for k in cls.hyper_parameters if k in config}
    return cls(num_items=num_items, is_tail=is_tail, **kwargs)
