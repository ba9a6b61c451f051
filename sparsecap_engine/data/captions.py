"""A split held in memory: its images (or region features), its captions as token ids, and batch assembly."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from sparsecap_engine.data.features import RegionFeatures
from sparsecap_engine.data.images import load_images_uint8
from sparsecap_engine.data.karpathy import ImageRecord, load_karpathy
from sparsecap_engine.errors import DataError
from sparsecap_engine.progress import Progress, no_progress
from sparsecap_engine.text.vocab import Vocab


def pad_tokens(seqs: Sequence[Sequence[int]], pad_id: int = Vocab.pad_id) -> Tensor:
    """Right-pad id lists into one (N, L) int64 tensor."""
    width = max(len(s) for s in seqs)
    out = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = torch.as_tensor(s, dtype=torch.long)
    return out


@dataclass
class CaptionSet:
    """Records of one split, their pixels as uint8 (N, 3, S, S) and each caption encoded with the vocabulary.

    With ``features`` (region features on disk) no pixels are held: batches are read from the feature store.
    """

    records: list[ImageRecord]
    images: Tensor
    tokens: list[list[list[int]]]
    features: RegionFeatures | None = None

    def __len__(self) -> int:
        return len(self.records)

    @classmethod
    def build(
        cls,
        records: list[ImageRecord],
        vocab: Vocab,
        max_len: int,
        image_size: int,
        progress: Progress = no_progress,
        features: RegionFeatures | None = None,
    ) -> CaptionSet:
        if features is not None:
            features.check(records, progress)
            images = torch.empty((0, 3, image_size, image_size), dtype=torch.uint8)
        else:
            images = load_images_uint8([r.path for r in records], image_size, progress)
        tokens = [[vocab.encode(c, max_len) for c in r.captions] for r in records]
        return cls(records, images, tokens, features)

    def image_batch(self, index: Sequence[int]) -> dict[str, Tensor]:
        """The encoder's input for these images: ``images``, or ``att_feats``/``att_masks``[/``boxes``]."""
        if self.features is not None:
            return self.features.batch([self.records[i] for i in index])
        return {"images": self.images[torch.as_tensor(index, dtype=torch.long)]}

    def caption_batch(self, index: Sequence[int], per_image: int, generator: torch.Generator) -> Tensor:
        """``per_image`` captions per image (without replacement while the image has enough), (B*k, L) padded."""
        seqs: list[list[int]] = []
        for i in index:
            caps = self.tokens[i]
            if not caps:
                raise DataError(f"image {self.records[i].image_id} has no caption to train on")
            order = torch.randperm(len(caps), generator=generator).tolist()
            while len(order) < per_image:
                order += torch.randperm(len(caps), generator=generator).tolist()
            seqs += [caps[j] for j in order[:per_image]]
        return pad_tokens(seqs)

    def references(self, index: Sequence[int] | None = None) -> dict[int, list[str]]:
        """image id → reference captions as space-joined tokens."""
        idx = range(len(self.records)) if index is None else index
        return {self.records[i].image_id: [" ".join(c) for c in self.records[i].captions] for i in idx}


def load_records(dataset: Path, image_root: Path | None, use_raw: bool) -> list[ImageRecord]:
    records = load_karpathy(dataset, image_root, use_raw)
    for split in ("train", "val"):
        if not any(r.split == split for r in records):
            raise DataError(f"{dataset}: no images in the {split!r} split")
    return records
