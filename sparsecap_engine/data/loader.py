"""Region features read ahead of the training steps by ``torch.utils.data.DataLoader`` workers.

The training order is known in advance (``recipes/train.py``: a seeded permutation per epoch), so the recipe hands
this module the image blocks the coming steps will ask for; worker processes read and pad them from the HDF5 file
(each worker opens the file itself: h5py handles must not cross a fork), into pinned memory on CUDA so the copy to
the GPU is asynchronous. :class:`PrefetchedSplit` stands in for the training split: ``image_batch`` returns the
prefetched block when it is the one expected next and reads directly otherwise (SNIP's saliency batches, say), so
the results are the same with or without workers.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, get_worker_info

#: most workers ``data.workers = -1`` (auto) starts per process
AUTO_WORKERS = 4


def auto_workers(requested: int, device: torch.device, has_features: bool, local_processes: int = 1) -> int:
    """``data.workers``: as given when ≥ 0; auto (−1): up to 4 per process (never more than the cores shared out)
    on CUDA with region features, else 0 (images are already in memory, and on the CPU the cores train)."""
    if requested >= 0:
        return requested
    if device.type != "cuda" or not has_features:
        return 0
    return max(0, min(AUTO_WORKERS, (os.cpu_count() or 1) // max(1, local_processes) - 1))


class _Blocks(Dataset):
    """Item k: the encoder input of the k-th coming block of training images."""

    def __init__(self, data: Any, blocks: Sequence[Sequence[int]]):
        self.data, self.blocks = data, blocks

    def __len__(self) -> int:
        return len(self.blocks)

    def __getitem__(self, k: int) -> dict[str, Tensor]:
        return self.data.image_batch(self.blocks[k])


def _reopen(_: int) -> None:
    info = get_worker_info()
    features = getattr(info.dataset.data, "features", None) if info is not None else None
    if features is not None:
        features.reopen()
    torch.set_num_threads(1)  # padding a batch needs no threads; the training process keeps the cores


class PrefetchedSplit:
    """The training split, with ``image_batch`` of the expected ``blocks`` (in order) served by ``workers``
    DataLoader processes; every other attribute is the split's own."""

    def __init__(self, data: Any, blocks: Sequence[Sequence[int]], workers: int, pin_memory: bool = False):
        self._data = data
        self._expected = deque(list(b) for b in blocks)
        loader = DataLoader(_Blocks(data, [list(b) for b in blocks]), batch_size=None, shuffle=False,
                            num_workers=workers, pin_memory=pin_memory, worker_init_fn=_reopen,
                            prefetch_factor=4 if workers else None, persistent_workers=False,
                            generator=torch.Generator().manual_seed(0))  # the workers' seeds: not from the global
        # RNG, whose stream (dropout, supermask samples) must be the same with or without workers
        self._batches = iter(loader)
        #: blocks served by the workers, and read directly (not the one expected next)
        self.served = self.direct = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._data, name)

    def __len__(self) -> int:
        return len(self._data)

    def image_batch(self, index: Sequence[int]) -> dict[str, Tensor]:
        if self._expected and list(index) == self._expected[0]:
            self._expected.popleft()
            self.served += 1
            return next(self._batches)
        self.direct += 1
        return self._data.image_batch(index)

    def close(self) -> None:
        """Stop the workers (the iterator's processes exit once it is dropped)."""
        self._expected.clear()
        self._batches = iter(())
