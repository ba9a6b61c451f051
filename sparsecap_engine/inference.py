"""Caption user images with a trained model: from a run directory or a checkpoint file."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from sparsecap_engine.checkpoint.model_io import load_model
from sparsecap_engine.checkpoint.source import checkpoint_file
from sparsecap_engine.data.features import pad_regions
from sparsecap_engine.data.images import image_size_problem, load_image, read_rgb
from sparsecap_engine.data.synthetic_features import REGION_EXTRACTORS
from sparsecap_engine.decoding.api import DecodeOptions, caption_batch, caption_batch_nbest
from sparsecap_engine.errors import CheckpointError, RunError, UsageError
from sparsecap_engine.models.base import CaptionModel
from sparsecap_engine.runs import RunDir
from sparsecap_engine.text.vocab import Vocab


@dataclass
class Captioner:
    model: CaptionModel
    vocab: Vocab
    meta: dict[str, Any]
    image_size: int
    device: torch.device

    @classmethod
    def load_from(cls, source: Path, which: str = "best", device: str = "cpu", sparse: str = "off") -> Captioner:
        """From ``source``: a run directory (its ``which`` checkpoint, best falling back to last) or a checkpoint
        file (``which`` must then be best, the default)."""
        if Path(source).is_dir():
            return cls.load(source, None, device, sparse, which)
        if not Path(source).exists():
            raise RunError(f"run not found: {source} (no such run directory or checkpoint file)")
        if which != "best":
            raise UsageError(f"--checkpoint {which} picks a checkpoint of a run; {source} is a file")
        return cls.load(None, source, device, sparse)

    @classmethod
    def load(
        cls, run: Path | None = None, checkpoint: Path | None = None, device: str = "cpu", sparse: str = "off",
        which: str = "best",
    ) -> Captioner:
        """From ``run`` (its ``which`` checkpoint: best, falling back to last, or last) or from ``checkpoint``;
        exactly one is needed.

        ``sparse`` (auto|on|off): run pruned layers as CSR products on the CPU (auto: when ≥ 80 % sparse)."""
        if (run is None) == (checkpoint is None):
            raise UsageError("give exactly one of --from RUN or --from FILE")
        image_size = 64
        if run is not None:
            rd = RunDir.open(run)
            checkpoint = checkpoint_file(rd.path, which)
            image_size = rd.load_config().data.image_size
        from sparsecap_engine.training.setup import resolve_device

        dev = resolve_device(device)  # tpu, cuda:99, meta or "" are one-line usage errors, not torch's
        model, vocab, meta = load_model(Path(checkpoint), dev, inference=True)
        image_size = meta.get("image_size", image_size)
        problem = image_size_problem(image_size)
        if problem:
            raise CheckpointError(f"{checkpoint}: image_size {problem}")
        from sparsecap_engine.checkpoint.sparse_infer import sparsify, want_sparse

        if want_sparse(sparse, model, dev):
            sparsify(model)
        return cls(model, vocab, meta, image_size, dev)

    def _batches(self, images: Sequence[Path], batch_size: int):
        from_regions = not self.model.takes_pixels
        extract = REGION_EXTRACTORS.get(str(self.meta.get("regions")))
        if from_regions and extract is None:
            raise UsageError(
                f"this checkpoint's encoder ({self.meta.get('encoder')}) takes region features, not raw images"
            )
        for start in range(0, len(images), batch_size):
            chunk = images[start : start + batch_size]
            if from_regions:  # a model of the synthetic scenes: their region proposals stand in for a detector
                batch = pad_regions([extract(read_rgb(Path(p), self.image_size)) for p in chunk])
            else:
                batch = {"images": torch.stack([load_image(Path(p), self.image_size) for p in chunk])}
            yield {k: v.to(self.device) for k, v in batch.items()}

    def caption(self, images: Sequence[Path], opts: DecodeOptions, batch_size: int = 32) -> list[str]:
        """One caption per image path (any size of PNG/JPEG; resized to the model's input size)."""
        out: list[str] = []
        for batch in self._batches(images, batch_size):
            out += caption_batch(self.model, batch, self.vocab, opts)
        return out

    def caption_nbest(
        self, images: Sequence[Path], opts: DecodeOptions, batch_size: int = 32
    ) -> list[list[tuple[str, float]]]:
        """The ``opts.n_best`` best (caption, score) pairs per image, best first."""
        out: list[list[tuple[str, float]]] = []
        for batch in self._batches(images, batch_size):
            out += caption_batch_nbest(self.model, batch, self.vocab, opts)
        return out
