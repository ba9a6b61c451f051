"""sparsecap engine: models, pruning, data, decoding, metrics, training, checkpoints."""

__version__ = "0.1.0"
