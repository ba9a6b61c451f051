"""Region features on disk (reference §4.2): a folder of ``<id>.npy`` or one HDF5 file, with optional boxes.

HDF5 layout written by ``sparsecap data pack-features`` / ``extract-features`` (and read back here)::

    /feats/<image id>   (N, D) float16 or float32 region features
    /boxes/<image id>   (N, 4) float32 [x1, y1, x2, y2], optional
    attrs: format = "sparsecap-features-1", feat_dim = D, box_format = "relative" | "absolute"

A file without the ``feats`` group may hold one dataset per image id at the top level. A folder holds ``<id>.npy``
(or ``<id>.npz`` with a ``feat`` array, as ruotianluo's ``cocobu_att``). Boxes come from the features' HDF5 file, or
from a separate folder/HDF5 (``--boxes``). Absolute (pixel) boxes become relative with the image's width and height
(from the JSON, else read from the image file's header). The ``fc`` feature is the mean of the regions (the models
compute it from the mask). Every problem is a one-line :class:`DataError` naming the file and the image id.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from sparsecap_engine.atomic import atomic_write
from sparsecap_engine.data.karpathy import ImageRecord
from sparsecap_engine.errors import DataError, UsageError
from sparsecap_engine.progress import Progress, no_progress

FORMAT = "sparsecap-features-1"
BOX_FORMATS = ("auto", "relative", "absolute")
H5_SUFFIXES = (".h5", ".hdf5", ".hdf")
BOX_TOLERANCE = 0.02  # relative boxes may stick out this much (rounding) before they are called out of range


def _is_h5(path: Path) -> bool:
    return path.suffix.lower() in H5_SUFFIXES


#: HDF5 handles a forked worker inherited and replaced (``ArraySource.reopen``): never used, never closed there
_INHERITED: list[Any] = []


class ArraySource:
    """``name`` → array from a folder of ``<name>.npy``/``.npz`` or from one HDF5 file (group ``group`` or top)."""

    def __init__(self, path: Path, group: str, what: str):
        self.path, self.what = Path(path), what
        self._group = group
        self._h5: h5py.File | None = None
        self._node: Any = None
        if _is_h5(self.path):
            if not self.path.is_file():
                raise DataError(f"{what} file not found: {self.path}")
            try:
                self._h5 = h5py.File(self.path, "r")
            except OSError as exc:
                raise DataError(f"not a readable HDF5 file: {self.path} ({str(exc).splitlines()[0]})") from None
            self._node = self._h5[group] if group in self._h5 else self._h5
            self.attrs = dict(self._h5.attrs)
        elif self.path.is_dir():
            self.attrs = {}
        else:
            raise DataError(f"{what} not found (need a folder of <id>.npy or an .h5 file): {self.path}")

    def reopen(self) -> None:
        """Open the HDF5 file afresh in this process: a DataLoader worker must not read through a handle opened
        before the fork (h5py is not fork-safe); the inherited one is kept, untouched, until the worker exits."""
        if self._h5 is not None:
            _INHERITED.append(self._h5)
            self._h5 = h5py.File(self.path, "r")
            self._node = self._h5[self._group] if self._group in self._h5 else self._h5

    @property
    def is_h5(self) -> bool:
        return self._h5 is not None

    def has_group(self, group: str) -> bool:
        """True for an HDF5 file with a top-level group ``group`` (e.g. ``boxes`` beside ``feats``)."""
        return self._h5 is not None and isinstance(self._h5.get(group), h5py.Group)

    def _file(self, name: str) -> Path | None:
        for suffix in (".npy", ".npz"):
            p = self.path / f"{name}{suffix}"
            if p.is_file():
                return p
        return None

    def where(self, name: str) -> str:
        """The place an id lives, for messages: ``file.h5:/feats/123`` or ``folder/123.npy``."""
        if self._h5 is not None:
            return f"{self.path}:{self._node.name.rstrip('/')}/{name}"
        return str(self._file(name) or self.path / f"{name}.npy")

    def has(self, name: str) -> bool:
        if self._node is not None:
            return name in self._node and isinstance(self._node[name], h5py.Dataset)
        return self._file(name) is not None

    def shape(self, name: str) -> tuple[int, ...]:
        """Shape without reading the data (HDF5 metadata or the ``.npy`` header)."""
        if self._node is not None:
            return tuple(self._node[name].shape)
        path = self._file(name)
        if path is None:
            raise DataError(f"{self.what} missing for image {name}: {self.where(name)}")
        if path.suffix == ".npz":
            return tuple(self.read(name).shape)
        try:
            return tuple(np.load(path, mmap_mode="r").shape)
        except (OSError, ValueError) as exc:
            raise DataError(f"unreadable {self.what} file for image {name}: {path} ({type(exc).__name__})") from None

    def read(self, name: str) -> np.ndarray:
        if self._node is not None:
            if not self.has(name):
                raise DataError(f"{self.what} missing for image {name}: {self.path} has no dataset {self.where(name)}")
            return np.asarray(self._node[name][()])
        path = self._file(name)
        if path is None:
            raise DataError(f"{self.what} missing for image {name}: {self.where(name)}")
        try:
            data = np.load(path, allow_pickle=False)
            if isinstance(data, np.lib.npyio.NpzFile):
                with data:
                    key = "feat" if "feat" in data.files else data.files[0]
                    return data[key]
            return data
        except (OSError, ValueError, IndexError) as exc:
            raise DataError(f"unreadable {self.what} file for image {name}: {path} ({type(exc).__name__})") from None

    def close(self) -> None:
        if self._h5 is not None:
            self._h5.close()
            self._h5 = self._node = None


def _image_size(record: ImageRecord, where: str) -> tuple[int, int]:
    if record.width and record.height:
        return record.width, record.height
    try:
        with Image.open(record.path) as img:
            return img.size
    except (FileNotFoundError, UnidentifiedImageError, OSError):
        raise DataError(
            f"{where}: absolute boxes of image {record.image_id} need its size: no width/height in the JSON "
            f"and no readable image at {record.path}"
        ) from None


def relative_boxes(boxes: np.ndarray, record: ImageRecord, box_format: str, where: str) -> np.ndarray:
    """Validate (N, 4) boxes and return them relative, clipped to [0, 1]; absolute ones divided by W, H."""
    boxes = np.asarray(boxes, dtype=np.float32)
    iid = record.image_id
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise DataError(f"{where}: boxes of image {iid} have shape {boxes.shape}, expected (N, 4)")
    if not np.isfinite(boxes).all():
        raise DataError(f"{where}: boxes of image {iid} contain NaN or infinity")
    fmt = box_format
    if fmt == "auto":
        fmt = "absolute" if boxes.size and float(boxes.max()) > 1.0 + BOX_TOLERANCE else "relative"
    if fmt == "absolute":
        w, h = _image_size(record, where)
        boxes = boxes / np.array([w, h, w, h], dtype=np.float32)
    tol = BOX_TOLERANCE
    bad = (boxes < -tol).any(1) | (boxes > 1 + tol).any(1) | (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        kind = "pixel" if fmt == "absolute" else "relative"
        raise DataError(
            f"{where}: box {i} of image {iid} is out of range ({kind} {boxes[i].round(4).tolist()}"
            + (f" for a {w}x{h} image)" if fmt == "absolute" else ", expected x1<=x2, y1<=y2 in [0, 1])")
        )
    return np.clip(boxes, 0.0, 1.0)


@dataclass
class RegionFeatures:
    """Features (+ boxes) of a set of images, read per batch, zero-padded: ``att_feats``, ``att_masks``, ``boxes``."""

    feats: ArraySource
    boxes: ArraySource | None = None
    box_format: str = "auto"
    dim: int = 0
    _checked: set[int] = field(default_factory=set, repr=False)

    @classmethod
    def open(cls, features: Path, boxes: Path | None = None, box_format: str = "auto") -> RegionFeatures:
        if box_format not in BOX_FORMATS:
            raise UsageError(f"unknown box format {box_format!r}; choose from {', '.join(BOX_FORMATS)}")
        feats = ArraySource(Path(features), "feats", "region features")
        box_src: ArraySource | None = None
        if boxes is not None:
            box_src = ArraySource(Path(boxes), "boxes", "boxes")
        elif feats.has_group("boxes"):
            box_src = ArraySource(Path(features), "boxes", "boxes")
        if box_format == "auto" and box_src is not None and box_src.attrs.get("box_format") in BOX_FORMATS:
            box_format = str(box_src.attrs["box_format"])
        return cls(feats, box_src, box_format)

    @property
    def has_boxes(self) -> bool:
        return self.boxes is not None

    @property
    def regions(self) -> str | None:
        """What computed the features when a file says so (``regions`` attribute), e.g. the synthetic scenes'."""
        value = self.feats.attrs.get("regions")
        return value if isinstance(value, str) else None

    def check(self, records: Sequence[ImageRecord], progress: Progress = no_progress) -> int:
        """Every image has features (and boxes) of one width D; returns D. Reads shapes only."""
        step = max(1, len(records) // 100)
        for n, r in enumerate(records):
            name = str(r.image_id)
            if not self.feats.has(name):
                raise DataError(f"region features missing for image {name}: {self.feats.where(name)}")
            shape = self.feats.shape(name)
            if len(shape) != 2 or shape[0] < 1:
                raise DataError(f"{self.feats.where(name)}: features of image {name} have shape {shape}, "
                                "expected (N, D) with N >= 1")
            if self.dim and shape[1] != self.dim:
                raise DataError(f"{self.feats.where(name)}: features of image {name} are {shape[1]}-d, "
                                f"the others are {self.dim}-d")
            self.dim = self.dim or int(shape[1])
            if self.boxes is not None:
                if not self.boxes.has(name):
                    raise DataError(f"boxes missing for image {name}: {self.boxes.where(name)}")
                bshape = self.boxes.shape(name)
                if bshape != (shape[0], 4):
                    raise DataError(f"{self.boxes.where(name)}: boxes of image {name} have shape {bshape}, "
                                    f"expected ({shape[0]}, 4) to match its features")
            if (n + 1) % step == 0 or n + 1 == len(records):
                progress("features", n + 1, len(records))
        return self.dim

    def read(self, record: ImageRecord) -> tuple[np.ndarray, np.ndarray | None]:
        """(N, D) float32 features and (N, 4) relative boxes (or None) of one image, validated."""
        name = str(record.image_id)
        feats = np.asarray(self.feats.read(name), dtype=np.float32)
        if feats.ndim != 2 or (self.dim and feats.shape[1] != self.dim):
            raise DataError(f"{self.feats.where(name)}: features of image {name} have shape {feats.shape}, "
                            f"expected (N, {self.dim})")
        if self.boxes is None:
            return feats, None
        raw = self.boxes.read(name)
        boxes = relative_boxes(raw, record, self.box_format, self.boxes.where(name))
        if boxes.shape[0] != feats.shape[0]:
            raise DataError(f"{self.boxes.where(name)}: {boxes.shape[0]} boxes for {feats.shape[0]} regions "
                            f"of image {name}")
        return feats, boxes

    def batch(self, records: Sequence[ImageRecord]) -> dict[str, Tensor]:
        """Zero-padded ``att_feats`` (B, Nmax, D), ``att_masks`` (B, Nmax) and ``boxes`` (B, Nmax, 4)."""
        return pad_regions([self.read(r) for r in records], self.dim, with_boxes=self.boxes is not None)

    def close(self) -> None:
        self.feats.close()
        if self.boxes is not None:
            self.boxes.close()

    def reopen(self) -> None:
        """See :meth:`ArraySource.reopen` (called in each DataLoader worker, ``data/loader.py``)."""
        self.feats.reopen()
        if self.boxes is not None:
            self.boxes.reopen()


# ------------------------------------------------------------------------------------------------------- writing


def pad_regions(
    items: Sequence[tuple[np.ndarray, np.ndarray | None]], dim: int = 0, with_boxes: bool = True
) -> dict[str, Tensor]:
    """Per-image (features (N, D), boxes (N, 4) or None) → zero-padded ``att_feats``, ``att_masks`` [, ``boxes``]."""
    n_max = max(f.shape[0] for f, _ in items)
    b = len(items)
    feats = torch.zeros(b, n_max, dim or items[0][0].shape[1])
    masks = torch.zeros(b, n_max)
    out: dict[str, Tensor] = {"att_feats": feats, "att_masks": masks}
    if with_boxes:
        out["boxes"] = torch.zeros(b, n_max, 4)
    for i, (f, bx) in enumerate(items):
        n = f.shape[0]
        feats[i, :n] = torch.from_numpy(f)
        masks[i, :n] = 1.0
        if bx is not None and with_boxes:
            out["boxes"][i, :n] = torch.from_numpy(bx)
    return out


def write_h5_atomic(out: Path, fill: Callable[[h5py.File], None]) -> Path:
    """Create ``out`` by writing a temp file beside it and renaming it into place (nothing half-written)."""

    def write(tmp: Path) -> None:
        with h5py.File(tmp, "w", libver="latest") as f:
            f.attrs["format"] = FORMAT
            fill(f)

    atomic_write(Path(out), write)
    return Path(out)


def pack_features(
    feats_dir: Path,
    out: Path,
    boxes_dir: Path | None = None,
    ids: Iterable[int | str] | None = None,
    dtype: str = "float32",
    box_format: str = "auto",
    progress: Progress = no_progress,
) -> tuple[Path, int]:
    """Pack a folder of ``<id>.npy`` features (and optional ``<id>.npy`` boxes) into one HDF5 file.

    ``ids`` defaults to every ``<id>.npy``/``.npz`` in the folder. Returns (path, number of images).
    """
    if dtype not in ("float16", "float32"):
        raise UsageError(f"dtype must be float16 or float32 (got {dtype!r})")
    if box_format not in BOX_FORMATS:
        raise UsageError(f"unknown box format {box_format!r}; choose from {', '.join(BOX_FORMATS)}")
    feats_dir = Path(feats_dir)
    if not feats_dir.is_dir():
        raise DataError(f"features folder not found: {feats_dir}")
    src = ArraySource(feats_dir, "feats", "region features")
    box_src = ArraySource(Path(boxes_dir), "boxes", "boxes") if boxes_dir is not None else None
    if ids is None:
        names = sorted({p.stem for p in feats_dir.iterdir() if p.suffix in (".npy", ".npz")}, key=_id_key)
    else:
        names = [str(i) for i in ids]
    if not names:
        raise DataError(f"no <id>.npy files in {feats_dir}")
    state = {"dim": 0}

    def fill(f: h5py.File) -> None:
        g = f.create_group("feats")
        gb = f.create_group("boxes") if box_src is not None else None
        step = max(1, len(names) // 100)
        for n, name in enumerate(names):
            arr = src.read(name)
            if arr.ndim != 2:
                raise DataError(f"{src.where(name)}: features of image {name} have shape {arr.shape}, expected (N, D)")
            if state["dim"] and arr.shape[1] != state["dim"]:
                raise DataError(f"{src.where(name)}: features of image {name} are {arr.shape[1]}-d, "
                                f"the others are {state['dim']}-d")
            state["dim"] = state["dim"] or int(arr.shape[1])
            if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
                raise DataError(f"{src.where(name)}: features of image {name} hold NaN or infinite values")
            g.create_dataset(name, data=arr.astype(dtype))
            if gb is not None and box_src is not None:
                bx = np.asarray(box_src.read(name), dtype=np.float32)
                if bx.shape != (arr.shape[0], 4):
                    raise DataError(f"{box_src.where(name)}: boxes of image {name} have shape {bx.shape}, "
                                    f"expected ({arr.shape[0]}, 4)")
                if not np.isfinite(bx).all():
                    raise DataError(f"{box_src.where(name)}: boxes of image {name} hold NaN or infinite values")
                gb.create_dataset(name, data=bx)
            if (n + 1) % step == 0 or n + 1 == len(names):
                progress("pack", n + 1, len(names))
        f.attrs["feat_dim"] = state["dim"]
        if gb is not None:
            f.attrs["box_format"] = box_format

    try:
        return write_h5_atomic(out, fill), len(names)
    finally:
        src.close()


def _id_key(name: str) -> tuple[int, int | str]:
    return (0, int(name)) if name.isdigit() else (1, name)
