"""Serving the session model: encode sessions, score candidates, export item embeddings.

Loads a checkpoint written by ``hotfeed train`` (through checkpoint.py; the trainer is never
imported here). Item ids are the catalog's text ids; ids the model never saw are ignored in
sessions. As candidates they are scored from a vector in the item space: the content vector
the indexer wrote for them (passed in by the caller), else the catalogue's mean direction, and
count as tail items (no clicks yet). No score is ever -inf or NaN.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from recommender.model.checkpoint import Checkpoint, load_checkpoint
from recommender.model.content import Listing, cold_vector_norm
from recommender.model.data import PAD_INDEX, pad_sessions
from recommender.model.device import pick_device
from recommender.model.forward_kernels import CompiledForward
from recommender.model.hybrid import blend, knn_at, repeat_at

__all__ = ["SessionScorer", "ScoreRequest", "RepresentedSession"]

# (session item ids oldest first, candidate item ids)
ScoreRequest = tuple[Sequence[str], Sequence[str]]


@dataclass(frozen=True)
class RepresentedSession:
    """A session run through the model once: its query vector for kNN and what scoring needs.

    ``query`` is None when the session holds no item the model knows (then candidates are
    scored by popularity and there is no query vector).
    """

    query: torch.Tensor | None
    preference: torch.Tensor | None
    items: np.ndarray | None = None  # the session's vocabulary indices, oldest first (what the blend reads)

    @property
    def vector(self) -> np.ndarray | None:
        """Return the L2-normalized query vector [D] (float32), or None for an unknown session."""
        if self.query is None:
            return None
        return torch.nn.functional.normalize(self.query, dim=-1)[0].float().cpu().numpy()


def _plain(query: torch.Tensor, preference: torch.Tensor | None) -> tuple[np.ndarray, float | None]:
    """Return a represented session's query [1, D] and preference [1] as the compiled forward takes them."""
    return query[0].numpy(), None if preference is None else float(preference[0])


class SessionScorer:
    """A loaded session model ready to answer requests on one device."""

    def __init__(self, checkpoint: Checkpoint, *, device: torch.device, compiled: bool = True):
        self.checkpoint = checkpoint
        self.device = device
        self.model = checkpoint.model.to(device).eval()
        self.vocab = checkpoint.vocab
        self.max_length = int(checkpoint.config.get("max_length", 20))
        # Cold sessions (no known click) fall back to log popularity, the best context-free guess.
        self._popularity = np.log1p(checkpoint.item_counts.astype(np.float32))
        self.content = checkpoint.content
        table = self.model.items.weight.detach()[1:].float()
        self._cold_norm = cold_vector_norm(self.model.items.weight.detach())
        self._cold_offset = self.content.offset if self.content is not None else 0.0
        mean = torch.nn.functional.normalize(table.mean(dim=0), dim=0) if len(table) else torch.zeros(table.shape[1])
        self._mean_vector = mean.cpu().numpy().astype(np.float32)
        self.blend = checkpoint.blend
        self._is_tail = np.asarray(checkpoint.is_tail, dtype=bool)
        # One session at a time on the CPU: the compiled forward (forward_kernels.py), checked against
        # the model here; batches and the GPU run the model itself (and every request with compiled=False).
        self._compiled = (CompiledForward.of(self.model, max_length=self.max_length)
                          if compiled and device.type == "cpu" else None)

    @classmethod
    def load(cls, path: Path, *, device: str | torch.device = "auto", compiled: bool = True) -> "SessionScorer":
        """Return a scorer for the checkpoint at ``path`` on ``device`` ("auto", "cpu", "cuda" or a device);
        ``compiled=False`` runs single requests through torch too (the reference the compiled forward is
        measured against).

        Raises NotFound / ConfigError from checkpoint loading and device selection.
        """
        dev = device if isinstance(device, torch.device) else pick_device(device)
        return cls(load_checkpoint(path, device=dev), device=dev, compiled=compiled)

    @property
    def model_name(self) -> str:
        return self.checkpoint.model_name

    @property
    def version(self) -> str:
        """Return the model version, "<model>-<checkpoint sha256 prefix>"."""
        return self.checkpoint.version

    @property
    def compiled(self) -> bool:
        """Whether single requests run the compiled forward (forward_kernels.py) rather than torch."""
        return self._compiled is not None

    @property
    def runs_on(self) -> str:
        """Where single requests run, for logs: "cpu, compiled forward", "cpu" or "cuda:0"."""
        return f"{self.device}, compiled forward" if self.compiled else str(self.device)

    @property
    def embedding_dims(self) -> int:
        return self.model.embedding_dim

    def _session_indices(self, session: Sequence[str]) -> np.ndarray:
        idx = self.vocab.index_of(session)
        return idx[idx != PAD_INDEX][-self.max_length:]

    @torch.inference_mode()
    def represent(self, session: Sequence[str]) -> RepresentedSession:
        """Return the session run through the model once (``score_represented`` reuses it)."""
        idx = self._session_indices(session)
        if not len(idx):
            return RepresentedSession(None, None)
        if self._compiled is not None:
            query, preference = self._compiled.represent(idx)
            return RepresentedSession(torch.from_numpy(query).unsqueeze(0),
                                      None if preference is None else torch.tensor([preference]), idx)
        items = torch.as_tensor(idx, device=self.device).unsqueeze(0)
        lengths = torch.tensor([len(idx)], device=self.device)
        query, preference = self.model.represent(items, lengths)
        return RepresentedSession(query, preference, idx)

    def content_vectors(self, listings: Sequence[Listing]) -> np.ndarray:
        """Return L2-normalized vectors [n, D] of listings from their content (title, category, price,
        region): the checkpoint's content encoder, else the catalogue's mean direction."""
        if self.content is not None:
            return self.content.encode(listings)
        return np.tile(self._mean_vector, (len(listings), 1))

    def _cold_logits(self, query: torch.Tensor, preference: torch.Tensor | None, ids: Sequence[str],
                     vectors: Mapping[str, np.ndarray] | None) -> np.ndarray:
        """Return the logits of items the model does not know, from their vectors (else the mean)."""
        mean, width = self._mean_vector, len(self._mean_vector)
        rows = np.asarray([vector if vectors and (vector := vectors.get(item_id)) is not None and len(vector) == width
                           else mean for item_id in ids], dtype=np.float32)
        rows[~np.isfinite(rows).all(axis=1)] = mean  # a NaN or inf in a stored vector: the mean direction instead
        rows *= self._cold_norm
        if self._compiled is not None:
            logits = self._compiled.vector_logits(*_plain(query, preference), rows)
        else:
            logits = self.model.score_vectors(query, preference, torch.as_tensor(rows, device=self.device))[0]
            logits = logits.float().cpu().numpy()
        return logits + np.float32(self._cold_offset)

    @torch.inference_mode()
    def score_represented(self, session: RepresentedSession, candidates: Sequence[str],
                          vectors: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
        """Return one finite float32 score per candidate (higher is better).

        ``vectors`` holds item-space vectors of candidates the model does not know (the index's
        content vectors); those without one are scored with the catalogue's mean direction. A
        session the model does not know scores known candidates by log popularity and unknown
        ones 0 (no clicks).
        """
        cands = self.vocab.index_of(candidates)
        known = cands != PAD_INDEX
        if session.query is None or not len(cands):
            return np.where(known, self._popularity[cands], 0.0).astype(np.float32)
        if self._compiled is not None:
            scores = self._compiled.logits(*_plain(session.query, session.preference), cands)
        else:
            logits = self.model.score_represented(session.query, session.preference,
                                                  torch.as_tensor(cands, device=self.device))
            scores = logits[0].float().cpu().numpy()
        if not known.all():
            unknown = np.flatnonzero(~known)
            scores = scores.copy()
            scores[unknown] = self._cold_logits(session.query, session.preference,
                                                [candidates[i] for i in unknown], vectors)
        scores = self._blended(session.items, cands, scores)
        return np.nan_to_num(scores, nan=0.0, neginf=-1e9, posinf=1e9).astype(np.float32)

    def _blended(self, session: np.ndarray | None, candidates: np.ndarray, logits: np.ndarray) -> np.ndarray:
        """Return the checkpoint's blend (hybrid.py) of the candidates' logits with the session-KNN, the
        session's own items, their categories and the tail bias: exactly what `hotfeed eval` scores;
        the logits alone without a blend."""
        if self.blend is None or session is None or not len(session):
            return logits
        weights = self.blend.weights
        unused = np.zeros(len(candidates))  # a part with weight 0 is not computed (blend skips it)
        return blend(logits, knn_at(self.blend.knn, session, candidates) if weights.knn else unused,
                     repeat_at(session, candidates, weights.repeat_decay) if weights.repeat else unused, weights,
                     self.blend.categories.at(session, candidates, weights.repeat_decay, weights.category_exponent)
                     if weights.category else None,
                     # Candidates the model does not know have no clicks yet: tail items.
                     np.where(candidates == PAD_INDEX, True, self._is_tail[candidates]) if weights.tail_bias else None)

    def unknown(self, item_ids: Sequence[str]) -> list[str]:
        """Return the ids the model's table does not hold (they need a content vector to be scored)."""
        return [item_id for item_id, index in zip(item_ids, self.vocab.index_of(item_ids)) if index == PAD_INDEX]

    @torch.inference_mode()
    def encode(self, session: Sequence[str]) -> np.ndarray | None:
        """Return the L2-normalized query vector [D] (float32) of a session; None if no id is known."""
        return self.represent(session).vector

    def score(self, session: Sequence[str], candidates: Sequence[str],
              vectors: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
        """Return one finite float32 score per candidate (higher is better); see ``score_represented``."""
        return self.score_represented(self.represent(session), candidates, vectors)

    @torch.inference_mode()
    def score_many(self, requests: Sequence[ScoreRequest]) -> list[np.ndarray]:
        """Return the scores of several (session, candidates) requests, the sessions encoded in one batch.

        Scores are ``score_represented``'s (unknown candidates from the mean direction).
        """
        sessions = [self._session_indices(s) for s, _ in requests]
        candidates = [self.vocab.index_of(c) for _, c in requests]
        out: list[np.ndarray] = [np.where(c != PAD_INDEX, self._popularity[c], 0.0).astype(np.float32)
                                 for c in candidates]
        warm = [n for n, s in enumerate(sessions) if len(s) and len(candidates[n])]
        if warm:
            items, lengths = pad_sessions([sessions[n] for n in warm], max_length=self.max_length)
            width = max(len(candidates[n]) for n in warm)
            cand = np.zeros((len(warm), width), dtype=np.int64)
            for row, n in enumerate(warm):
                cand[row, : len(candidates[n])] = candidates[n]
            shared = cand[0] if len(warm) == 1 else None
            query, preference = self.model.represent(torch.as_tensor(items, device=self.device),
                                                     torch.as_tensor(lengths, device=self.device))
            scores = self.model.score_represented(
                query, preference, torch.as_tensor(shared if shared is not None else cand, device=self.device),
            ).float().cpu().numpy()
            for row, n in enumerate(warm):
                row_scores = scores[row, : len(candidates[n])].copy()
                unknown = np.flatnonzero(candidates[n] == PAD_INDEX)
                if len(unknown):
                    pref = preference[row:row + 1] if preference is not None else None
                    row_scores[unknown] = self._cold_logits(query[row:row + 1], pref,
                                                            [requests[n][1][i] for i in unknown], None)
                out[n] = self._blended(sessions[n], candidates[n], row_scores).astype(np.float32)
        return out

    @torch.inference_mode()
    def item_embeddings(self) -> tuple[list[str], np.ndarray]:
        """Return (item ids, L2-normalized float32 vectors [n_items, D]) for the items index."""
        vectors = self.model.item_vectors().float().cpu().numpy()
        return self.vocab.to_list(), vectors[1:]
