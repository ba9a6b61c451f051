"""Recipes: the jobs that run end to end, each a readable top-to-bottom function — ``train`` (XE), ``prune`` (every
pruning flow), ``scst`` (the SCST stage), ``evaluate`` and the ``sweep`` grid. Components (models, pruning methods
and masks, decoding, metrics, data, checkpoint formats, training objectives) never import a recipe."""
