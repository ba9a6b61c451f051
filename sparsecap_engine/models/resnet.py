"""ResNet-50/101 (He et al. 2016, v1.5: stride on the 3×3 conv) with torchvision's parameter names.

``conv1, bn1, layer1.0.conv1 … layer4.2.bn3, layerK.0.downsample.0/1, fc`` — so an ImageNet weights file downloaded
by the user (safetensors, or a torch file read with ``weights_only=True``) loads from a local path. The ``resnet``
encoder runs it up to ``layer4`` and gives each cell of the output grid as a region with its box (like ``grid-cnn``).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sparsecap_engine.data.images import normalize
from sparsecap_engine.errors import CheckpointError, UsageError
from sparsecap_engine.models.encoders import grid_boxes, register_encoder

DEPTHS: dict[int, tuple[int, int, int, int]] = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}


class Bottleneck(nn.Module):
    """1×1 → 3×3 (stride) → 1×1 ×4 convolutions with BatchNorm, plus the identity or ``downsample`` shortcut."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


class ResNet(nn.Module):
    """Stem (7×7/2 conv, BN, ReLU, 3×3/2 max-pool), four stages of bottlenecks, average pool, ``fc``.

    ``num_classes=0`` leaves out ``fc`` (feature extraction). ``width`` scales the channels (64 = the real nets;
    small values only for tests).
    """

    def __init__(self, layers: tuple[int, ...] | list[int], num_classes: int = 1000, width: int = 64):
        super().__init__()
        self.inplanes = width
        self.conv1 = nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = self._make_layer(width, layers[0])
        self.layer2 = self._make_layer(width * 2, layers[1], stride=2)
        self.layer3 = self._make_layer(width * 4, layers[2], stride=2)
        self.layer4 = self._make_layer(width * 8, layers[3], stride=2)
        self.out_dim = width * 8 * Bottleneck.expansion
        self.fc = nn.Linear(self.out_dim, num_classes) if num_classes else None
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * Bottleneck.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * Bottleneck.expansion, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * Bottleneck.expansion),
            )
        layers = [Bottleneck(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * Bottleneck.expansion
        layers += [Bottleneck(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def features(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) normalised pixels → (B, C, H/32, W/32) ``layer4`` grid."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, x: Tensor) -> Tensor:
        pooled = torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1)
        return self.fc(pooled) if self.fc is not None else pooled


def resnet(depth: int, num_classes: int = 1000, width: int = 64) -> ResNet:
    if depth not in DEPTHS:
        raise UsageError(f"ResNet depth must be one of {', '.join(map(str, DEPTHS))} (got {depth})")
    return ResNet(DEPTHS[depth], num_classes, width)


def read_weights(path: Path) -> dict[str, Tensor]:
    """State dict from ``.safetensors`` or a torch file (``weights_only=True``; ``state_dict``/``model`` unwrapped)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"ResNet weights not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # torch's message advises weights_only=False, i.e. running the file's code
        raise CheckpointError(f"refused ResNet weights {path}: it holds pickled objects beyond tensors, which are "
                              "never unpickled here; save a plain state dict (name → tensor) or .safetensors") from None
    except Exception as exc:  # noqa: BLE001 - any reader failure is a bad file for the user
        first = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        raise CheckpointError(f"unreadable ResNet weights {path} ({first})") from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: not a ResNet state dict (expected name → tensor)")
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_weights(net: ResNet, path: Path) -> None:
    """Load torchvision-layout weights into ``net``; ``fc.*`` may be absent or ignored (feature extraction)."""
    state = read_weights(path)
    if net.fc is None:
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    own = net.state_dict()
    missing = [k for k in own if k not in state and not k.startswith("fc.")]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong:
        what = (f"missing {missing[:2]}" if missing else f"unexpected {unexpected[:2]}" if unexpected
                else f"shape of {wrong[0]} is {tuple(state[wrong[0]].shape)}, expected {tuple(own[wrong[0]].shape)}")
        raise CheckpointError(f"{path}: not weights of this ResNet ({what}; {len(own)} tensors expected)")
    net.load_state_dict(state, strict=False)


@register_encoder("resnet")
class ResNetEncoder(nn.Module):
    """ResNet-50/101 grid features: each ``layer4`` cell is a 2048-d region with its relative box.

    ``weights``: a local torchvision-layout file (without it the net is randomly initialised). ``freeze`` (default)
    keeps the weights fixed and BatchNorm in eval mode; ``grid`` > 0 average-pools the grid to grid×grid cells.
    """

    takes_pixels = True

    def __init__(
        self, depth: int = 101, weights: str = "", freeze: bool = True, grid: int = 0, width: int = 64, **_: object
    ):
        super().__init__()
        self.net = resnet(int(depth), num_classes=0, width=int(width))
        if weights:
            load_weights(self.net, Path(weights))
        self.out_dim, self.freeze, self.grid = self.net.out_dim, bool(freeze), int(grid)
        if self.freeze:
            self.net.requires_grad_(False)
            self.net.eval()

    def train(self, mode: bool = True) -> ResNetEncoder:
        super().train(mode)
        if self.freeze:
            self.net.eval()
        return self

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        x = normalize(batch["images"])
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze):
            grid = self.net.features(x)
        if self.grid > 0:
            grid = F.adaptive_avg_pool2d(grid, self.grid)
        b, _, h, w = grid.shape
        feats = grid.flatten(2).transpose(1, 2)
        boxes = grid_boxes(h, w, feats.device).to(feats.dtype).expand(b, -1, -1)
        return {"feats": feats, "mask": feats.new_ones(b, h * w), "boxes": boxes}
