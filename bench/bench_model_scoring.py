"""Benchmark: session-model scoring latency for the rerank path (200 candidates per request).

Measures the serving API (recommender.model.serving.SessionScorer) end to end: id lookup,
the network, and copying scores back. Without --checkpoint it builds untrained models over
--items items (weights do not change the cost) and loads them through a real checkpoint.

    .venv/bin/python bench/bench_model_scoring.py                       # all models, cpu (+cuda if present)
    .venv/bin/python bench/bench_model_scoring.py --checkpoint artifacts/model/model.pt

On the CPU, every model serves single requests with the compiled forward
(recommender/model/forward_kernels.py); each is measured again through torch in the same run
(rows 'torch'; --no-torch-forward skips them), the reference it replaced.

Each checkpoint is measured twice in one run: with its blend (the model plus the session-KNN,
the session's own items and their categories, recommender/model/hybrid.py: what the
recommender serves) and
with the model's logits alone. Untrained checkpoints get a blend over random sessions
(--sessions) and 500 item categories. Sessions are drawn from the blend's training sessions, so the KNN reads real
neighbourhoods. Prints a table with the load average and writes
bench/results/model_scoring.json. Target: p99 <= 2 ms for one request of 200 candidates on cpu.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from recommender.model.checkpoint import save_checkpoint
from recommender.model.data import ItemVocabulary
from recommender.model.hybrid import Blend, BlendWeights, CategoryPrior
from recommender.model.network import MODELS, build_model
from recommender.model.serving import SessionScorer
from recommender.model.session_knn import SessionKNN

from _report import load_line

RESULTS = Path(__file__).resolve().parent / "results" / "model_scoring.json"


def _percentiles_ms(samples: list[float]) -> tuple[float, float]:
    arr = np.asarray(samples) * 1000.0
    return float(np.percentile(arr, 50)), float(np.percentile(arr, 99))


def _untrained_checkpoint(name: str, n_items: int, n_sessions: int, folder: Path) -> Path:
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    # Random sessions of 2..10 clicks over zipf-popular items: postings as long-tailed as real ones.
    sessions = [(rng.zipf(1.3, size=int(rng.integers(2, 11))) - 1) % n_items + 1 for _ in range(n_sessions)]
    counts = np.bincount(np.concatenate(sessions), minlength=n_items + 1)
    is_tail = torch.as_tensor(np.arange(n_items + 1) > n_items // 5)
    model = build_model(name, num_items=n_items + 1, is_tail=is_tail, config={"embedding_dim": 64})
    vocab = ItemVocabulary([f"i{n}" for n in range(n_items)])
    config = {"embedding_dim": 64, "max_length": 20}
    # Categories of zipf-like sizes, as in a marketplace taxonomy; every part of the blend weighs.
    categories = CategoryPrior.from_codes(np.r_[-1, (rng.zipf(1.5, size=n_items) - 1) % 500], counts)
    blend = Blend(knn=SessionKNN("VSTAN", counts, sessions), info={}, categories=categories,
                  weights=BlendWeights(model=0.3, knn=0.3, repeat=0.2, repeat_decay=0.6, category=0.2, tail_bias=0.5))
    return save_checkpoint(folder / f"{name}.pt", model=model, config=config, vocab=vocab, item_counts=counts,
                           blend=blend)


def _session_pool(scorer: SessionScorer, session_length: int, size: int = 256) -> list[list[str]]:
    """Return ``size`` sessions: prefixes of the blend's training sessions when there is one, else random items."""
    ids = scorer.vocab.to_list()
    rng = np.random.default_rng(2)
    if scorer.blend is None:
        return [[ids[i] for i in rng.integers(len(ids), size=session_length)] for _ in range(size)]
    knn = scorer.blend.knn
    picked = rng.integers(knn.n_sessions, size=size)
    return [[ids[i - 1] for i in knn.clicks[knn.indptr[n]:knn.indptr[n + 1]][:session_length]] for n in picked]


def bench_one(scorer: SessionScorer, *, candidates: int, session_length: int, requests: int, batch: int,
              new_share: float = 0.0) -> dict:
    """Return latency figures for single requests, encode calls and batches of ``batch`` requests;
    ``new_share`` of each request's candidates are new listings the model does not know, scored from
    their content vectors (as the recommender passes them from the index)."""
    ids = scorer.vocab.to_list()
    rng = np.random.default_rng(1)
    new = int(round(candidates * new_share))
    new_vectors = rng.normal(size=(5000, scorer.embedding_dims)).astype(np.float32)
    new_vectors /= np.linalg.norm(new_vectors, axis=1, keepdims=True)
    pool = []
    for session in _session_pool(scorer, session_length):
        fresh = rng.integers(len(new_vectors), size=new)
        pool.append((session, [ids[i] for i in rng.integers(len(ids), size=candidates - new)]
                     + [f"new-{i}" for i in fresh], {f"new-{i}": new_vectors[i] for i in fresh}))
    for session, cands, vectors in pool[:50]:  # warm-up: allocator, kernels, lazy init
        scorer.score(session, cands, vectors)
    single, encode = [], []
    for n in range(requests):
        session, cands, vectors = pool[n % len(pool)]
        t = time.perf_counter()
        scorer.score(session, cands, vectors)
        single.append(time.perf_counter() - t)
        t = time.perf_counter()
        scorer.encode(session)
        encode.append(time.perf_counter() - t)
    batched = []
    for n in range(max(requests // batch, 20)):
        group = [pool[(n * batch + k) % len(pool)][:2] for k in range(batch)]
        t = time.perf_counter()
        scorer.score_many(group)
        batched.append(time.perf_counter() - t)
    p50, p99 = _percentiles_ms(single)
    e50, e99 = _percentiles_ms(encode)
    b50, b99 = _percentiles_ms(batched)
    return {
        "score_p50_ms": p50, "score_p99_ms": p99, "score_per_s": 1.0 / float(np.mean(single)),
        "encode_p50_ms": e50, "encode_p99_ms": e99,
        f"batch{batch}_p50_ms": b50, f"batch{batch}_p99_ms": b99,
        "batched_requests_per_s": batch / float(np.mean(batched)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, help="benchmark this checkpoint instead of untrained models")
    parser.add_argument("--models", default=",".join(sorted(MODELS)))
    parser.add_argument("--items", type=int, default=50_000, help="catalog size of the untrained models")
    parser.add_argument("--sessions", type=int, default=200_000, help="training sessions of the untrained models' "
                        "blend")
    parser.add_argument("--candidates", type=int, default=200)
    parser.add_argument("--session-length", type=int, default=10)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=16, help="requests per score_many call")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1 = one core per request)")
    parser.add_argument("--new-share", type=float, default=0.0,
                        help="share of each request's candidates that are new listings scored from content vectors "
                        "(default: %(default)s)")
    parser.add_argument("--torch-forward", action=argparse.BooleanOptionalAction, default=True,
                        help="also measure single requests through torch where the compiled forward serves them "
                        "(recommender/model/forward_kernels.py), as the reference (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        paths = ([args.checkpoint] if args.checkpoint else
                 [_untrained_checkpoint(m, args.items, args.sessions, Path(tmp)) for m in args.models.split(",")])
        for path in paths:
            for device in devices:
                scorers = [SessionScorer.load(path, device=device)]
                if args.torch_forward and scorers[0].compiled:
                    scorers.append(SessionScorer.load(path, device=device, compiled=False))
                for scorer in scorers:
                    blend = scorer.blend
                    for served in ([blend, None] if blend is not None else [None]):
                        scorer.blend = served
                        figures = bench_one(scorer, candidates=args.candidates, session_length=args.session_length,
                                            requests=args.requests, batch=args.batch, new_share=args.new_share)
                        name = scorer.model_name + (f"+{served.knn.name}" if served is not None else "")
                        rows.append({"model": name, "device": device, "items": len(scorer.vocab) - 1,
                                     "forward": "compiled" if scorer.compiled else "torch",
                                     "served": scorer is scorers[0], **figures})  # what the recommender runs
    print(load_line())
    head = f"{'model':<14} {'device':<6} {'forward':<9} {'score p50':>10} {'score p99':>10} {'req/s':>8} {'encode p99':>11} " \
           f"{f'batch{args.batch} p99':>12} {'batched req/s':>14}"
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['model']:<14} {r['device']:<6} {r['forward']:<9} {r['score_p50_ms']:>8.2f}ms {r['score_p99_ms']:>8.2f}ms "
              f"{r['score_per_s']:>8.0f} {r['encode_p99_ms']:>9.2f}ms {r[f'batch{args.batch}_p99_ms']:>10.2f}ms "
              f"{r['batched_requests_per_s']:>14.0f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "host": {"python": sys.version.split()[0], "torch": torch.__version__, "machine": platform.machine(),
                 "cpu_threads": args.threads, "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
        "params": {k: str(v) for k, v in vars(args).items()},
        "load_average": load_line(),
        "rows": rows,
    }, indent=2))
    worst = max(r["score_p99_ms"] for r in rows if r["device"] == "cpu" and r["served"])
    print(f"scored {args.candidates} candidates x {args.requests} requests per model; worst cpu p99 {worst:.2f} ms "
          f"(served forward; target 2 ms); wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
