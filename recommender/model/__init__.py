"""The session model: data, networks, training, evaluation and serving.

Modules, one concern each (import them directly; this package re-exports nothing so that
``serving`` can be imported without pulling in the trainer):

    device      pick_device: cuda when present, else cpu
    data        sessions from events, item vocabulary, the session-based split, batches
    network     TailNet-style, SASRec and GRU4Rec over one shared item-embedding table
    config      per-model YAML hyper-parameters and their override order
    checkpoint  the checkpoint format: weights + config + vocabulary + version
    metrics     HitRate, MRR, NDCG, Coverage, TailCoverage, TailShare (picked by name)
    baselines   POP, S-POP, session item-KNN
    trainer     optimizer, epoch loop, early stopping, checkpoints
    evaluate    runs models and baselines through one evaluator; table, JSON, charts
    serving     load a checkpoint; encode sessions; score candidates; export embeddings
    commands    `hotfeed train` and `hotfeed eval`
"""

__all__: list[str] = []
