#!/usr/bin/env bash
# The serving benchmarks' data set: 100k items, 50k users, 14 days ending now, a TailNet
# checkpoint at the default HOTFEED_MODEL_CHECKPOINT, behaviour clusters on the model's
# item vectors (12), and a full index build. Takes about 10 minutes on 2 cores.
#   bash bench/prepare_100k.sh        (services must be up: .venv/bin/hotfeed services up)
set -euo pipefail
cd "$(dirname "$0")/.."
HF=.venv/bin/hotfeed
PY=.venv/bin/python
CKPT=${HOTFEED_MODEL_CHECKPOINT:-artifacts/model/model.pt}
[ -f data/synth/events.parquet ] || $HF data synth --items 100000 --users 50000 --days 14 --seed 7 --end now
$HF train --events data/synth/events.parquet --model tailnet --epochs 1 --train-days 3 --batch-size 512 --out "$CKPT"
$PY - "$CKPT" <<'PY'
import sys
from pathlib import Path
import numpy as np
from recommender.model.serving import SessionScorer
ckpt = Path(sys.argv[1])
ids, vectors = SessionScorer.load(ckpt, device="cpu").item_embeddings()
np.savez(ckpt.with_suffix(".vectors.npz"), item_ids=np.asarray(ids), vectors=vectors)
print(f"item vectors of {len(ids):,} items -> {ckpt.with_suffix('.vectors.npz')}")
PY
$HF cluster run --embeddings "${CKPT%.pt}.vectors.npz" --k 12 --no-progress
HOTFEED_MODEL_CHECKPOINT="$CKPT" $HF index full --quiet
