"""Serving the session model: encode sessions, score candidates, export item embeddings.

Loads a checkpoint written by ``hotfeed train`` (through checkpoint.py; the trainer is never
imported here). Item ids are the catalog's text ids; ids the model never saw are ignored in
sessions and score -inf as candidates, so the reranker can drop or demote them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from recommender.model.checkpoint import Checkpoint, load_checkpoint
from recommender.model.data import PAD_INDEX, pad_sessions
from recommender.model.device import pick_device

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

    @property
    def vector(self) -> np.ndarray | None:
        """Return the L2-normalized query vector [D] (float32), or None for an unknown session."""
        if self.query is None:
            return None
        return torch.nn.functional.normalize(self.query, dim=-1)[0].float().cpu().numpy()


class SessionScorer:
    """A loaded session model ready to answer requests on one device."""

    def __init__(self, checkpoint: Checkpoint, *, device: torch.device):
        self.checkpoint = checkpoint
        self.device = device
        self.model = checkpoint.model.to(device).eval()
        self.vocab = checkpoint.vocab
        self.max_length = int(checkpoint.config.get("max_length", 20))
        # Cold sessions (no known click) fall back to log popularity, the best context-free guess.
        self._popularity = np.log1p(checkpoint.item_counts.astype(np.float32))

    @classmethod
    def load(cls, path: Path, *, device: str | torch.device = "auto") -> "SessionScorer":
        """Return a scorer for the checkpoint at ``path`` on ``device`` ("auto", "cpu", "cuda" or a device).

        Raises NotFound / ConfigError from checkpoint loading and device selection.
        """
        dev = device if isinstance(device, torch.device) else pick_device(device)
        return cls(load_checkpoint(path, device=dev), device=dev)

    @property
    def model_name(self) -> str:
        return self.checkpoint.model_name

    @property
    def version(self) -> str:
        """Return the model version, "<model>-<checkpoint sha256 prefix>"."""
        return self.checkpoint.version

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
        items = torch.as_tensor(idx, device=self.device).unsqueeze(0)
        lengths = torch.tensor([len(idx)], device=self.device)
        query, preference = self.model.represent(items, lengths)
        return RepresentedSession(query, preference)

    @torch.inference_mode()
    def score_represented(self, session: RepresentedSession, candidates: Sequence[str]) -> np.ndarray:
        """Return one float32 score per candidate (higher is better); -inf for unknown candidates.

        A session the model does not know scores candidates by log popularity.
        """
        cands = self.vocab.index_of(candidates)
        known = cands != PAD_INDEX
        if session.query is None or not len(cands):
            return np.where(known, self._popularity[cands], -np.inf).astype(np.float32)
        logits = self.model.score_represented(session.query, session.preference, torch.as_tensor(cands, device=self.device))
        return np.where(known, logits[0].float().cpu().numpy(), -np.inf).astype(np.float32)

    @torch.inference_mode()
    def encode(self, session: Sequence[str]) -> np.ndarray | None:
        """Return the L2-normalized query vector [D] (float32) of a session; None if no id is known."""
        idx = self._session_indices(session)
        if not len(idx):
            return None
        items = torch.as_tensor(idx, device=self.device).unsqueeze(0)
        lengths = torch.tensor([len(idx)], device=self.device)
        return self.model.encode(items, lengths)[0].float().cpu().numpy()

    def score(self, session: Sequence[str], candidates: Sequence[str]) -> np.ndarray:
        """Return one float32 score per candidate (higher is better); -inf for unknown candidates."""
        return self.score_many([(session, candidates)])[0]

    @torch.inference_mode()
    def score_many(self, requests: Sequence[ScoreRequest]) -> list[np.ndarray]:
        """Return the scores of several (session, candidates) requests, computed in one batch.

        Sessions with no known item are scored by log popularity instead of the network.
        """
        sessions = [self._session_indices(s) for s, _ in requests]
        candidates = [self.vocab.index_of(c) for _, c in requests]
        out: list[np.ndarray] = [np.full(len(c), -np.inf, dtype=np.float32) for c in candidates]
        warm = [n for n, s in enumerate(sessions) if len(s) and len(candidates[n])]
        for n, cands in enumerate(candidates):
            if n not in warm and len(cands):
                out[n] = np.where(cands != PAD_INDEX, self._popularity[cands], -np.inf).astype(np.float32)
        if warm:
            items, lengths = pad_sessions([sessions[n] for n in warm], max_length=self.max_length)
            width = max(len(candidates[n]) for n in warm)
            cand = np.zeros((len(warm), width), dtype=np.int64)
            for row, n in enumerate(warm):
                cand[row, : len(candidates[n])] = candidates[n]
            shared = cand[0] if len(warm) == 1 else None
            scores = self.model.score(
                torch.as_tensor(items, device=self.device),
                torch.as_tensor(lengths, device=self.device),
                torch.as_tensor(shared if shared is not None else cand, device=self.device),
            ).float().cpu().numpy()
            for row, n in enumerate(warm):
                known = candidates[n] != PAD_INDEX
                out[n] = np.where(known, scores[row, : len(known)], -np.inf).astype(np.float32)
        return out

    @torch.inference_mode()
    def item_embeddings(self) -> tuple[list[str], np.ndarray]:
        """Return (item ids, L2-normalized float32 vectors [n_items, D]) for the items index."""
        vectors = self.model.item_vectors().float().cpu().numpy()
        return self.vocab.to_list(), vectors[1:]
