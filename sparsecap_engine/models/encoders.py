"""Visual encoders that sit in front of a caption model and output regions: features, mask and relative boxes."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from sparsecap_engine.data.images import normalize

ENCODERS: dict[str, type[nn.Module]] = {}


def register_encoder(name: str):
    def wrap(cls: type[nn.Module]) -> type[nn.Module]:
        ENCODERS[name] = cls
        cls.registry_name = name
        return cls

    return wrap


def grid_boxes(rows: int, cols: int, device: torch.device | None = None) -> Tensor:
    """Relative ``[x1, y1, x2, y2]`` boxes of a rows×cols grid of cells, row-major, shape (rows*cols, 4)."""
    ys = torch.arange(rows, device=device, dtype=torch.float32)
    xs = torch.arange(cols, device=device, dtype=torch.float32)
    y, x = torch.meshgrid(ys, xs, indexing="ij")
    boxes = torch.stack([x / cols, y / rows, (x + 1) / cols, (y + 1) / rows], dim=-1)
    return boxes.reshape(-1, 4)


@register_encoder("regions")
class RegionEncoder(nn.Module):
    """Precomputed regions: ``att_feats`` (B, N, D), ``att_masks`` (B, N), optional ``boxes`` (B, N, 4)."""

    takes_pixels = False

    def __init__(self, feat_dim: int = 2048, **_: object):
        super().__init__()
        self.out_dim = feat_dim

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        feats = batch["att_feats"]
        b, n, _ = feats.shape
        mask = batch.get("att_masks")
        if mask is None:
            mask = feats.new_ones(b, n)
        out = {"feats": feats, "mask": mask.to(feats.dtype)}
        if "boxes" in batch:
            out["boxes"] = batch["boxes"].to(feats.dtype)
        return out


@register_encoder("grid-cnn")
class GridCNN(nn.Module):
    """A small CNN over raw pixels trained end to end; each cell of its output grid is a region with a box.

    ``channels`` per stage, each stage = 3×3 conv (stride 2) → BatchNorm → ReLU → 3×3 conv → BatchNorm → ReLU.
    A 64-px image with 4 stages gives a 4×4 grid, i.e. 16 regions of ``channels[-1]`` features.
    """

    takes_pixels = True

    def __init__(self, channels: tuple[int, ...] | list[int] = (32, 64, 128), **_: object):
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for c in channels:
            layers += [
                nn.Conv2d(c_in, c, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(c),
                nn.ReLU(inplace=True),
                nn.Conv2d(c, c, 3, padding=1, bias=False),
                nn.BatchNorm2d(c),
                nn.ReLU(inplace=True),
            ]
            c_in = c
        self.body = nn.Sequential(*layers)
        self.out_dim = c_in

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        x = normalize(batch["images"])
        grid = self.body(x)  # (B, C, H', W')
        b, c, h, w = grid.shape
        feats = grid.flatten(2).transpose(1, 2)  # (B, H'W', C)
        boxes = grid_boxes(h, w, feats.device).to(feats.dtype).expand(b, -1, -1)
        return {"feats": feats, "mask": feats.new_ones(b, h * w), "boxes": boxes}


def build_encoder(name: str, **kwargs: object) -> nn.Module:
    if name not in ENCODERS:
        from sparsecap_engine.errors import UsageError

        raise UsageError(f"unknown encoder {name!r}; choose from {', '.join(sorted(ENCODERS))}")
    return ENCODERS[name](**kwargs)
