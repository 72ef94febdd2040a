"""Classifiers of particle images: the report's 2-layer CNN and the pipeline's ResNet with a class head.

Both standardise each image first (zero mean, unit variance over the box: the noise level differs between
data sets, the class does not) and may Fourier-crop it (`input_size`: an ideal low-pass, cheaper network).
`forward` returns {"class": logits (B, K)}, the training engine's output kind for cross-entropy.
`cam_layer` is the layer whose activations Grad-CAM weighs (a late feature map of at least 8 px).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from cryopipe.classify import ARCHITECTURES  # "<architecture>_pose": the consensus image at the pose, a 2nd channel
from cryopipe.imaging.fourier import fourier_crop
from cryopipe.nn.resnet import ResNet


def given_pose(architecture: str) -> bool:
    return architecture.endswith("_pose")


def standardise(x: torch.Tensor) -> torch.Tensor:
    """Each image (B, C, H, W) to zero mean and unit variance per channel."""
    mean = x.mean(dim=(-2, -1), keepdim=True)
    return (x - mean) / x.std(dim=(-2, -1), keepdim=True).clamp_min(1e-8)


class _Classifier(nn.Module):
    def __init__(self, image_size: int, input_size: int | None):
        super().__init__()
        self.input_size = input_size if input_size and input_size < image_size else None
        self.cam_name = ""  # dotted name of the Grad-CAM layer (a name, not a second reference in the state dict)

    @property
    def cam_layer(self) -> nn.Module:
        return self.get_submodule(self.cam_name)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_size:
            x = fourier_crop(x.float(), self.input_size)
        return standardise(x.float())

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"class": self.logits(self.prepare(x)).float()}

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class SmallCNN(_Classifier):
    """Two blocks of (5×5 convolution, batch-norm, ReLU, 2×2 max-pool), then a linear layer (the report's CNN)."""

    def __init__(
        self, n_classes: int, image_size: int, *, width: int = 16, input_size: int | None = None, in_channels: int = 1
    ):
        super().__init__(image_size, input_size)
        side = self.input_size or image_size
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 5, padding=2),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 5, padding=2),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(inplace=False),
            nn.MaxPool2d(2),
        )
        self.cam_name = f"features.{len(self.features) - 2}"  # the second ReLU: the last map before pooling
        self.head = nn.Linear(2 * width * (side // 4) ** 2, n_classes)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.features(x), 1))


class ResNetClassifier(_Classifier):
    """The pipeline's ResNet (flattened final feature map, `cryopipe.nn.resnet`) with a linear class head."""

    def __init__(
        self,
        n_classes: int,
        image_size: int,
        *,
        depth: int = 18,
        width: int = 16,
        input_size: int | None = None,
        in_channels: int = 1,
        dropout: float = 0.0,
    ):
        super().__init__(image_size, input_size)
        self.backbone = ResNet(depth, in_channels=in_channels, image_size=self.input_size or image_size, width=width)
        # Grad-CAM needs a map it can localise on: the deepest stage whose output is ≥ 8 px (the last stage is
        # 1-2 px at 32-64 px inputs: one value, no place)
        side, deepest = math.ceil(math.ceil((self.input_size or image_size) / 2) / 2), 0  # after the stem
        for i in range(1, len(self.backbone.stages)):
            side = math.ceil(side / 2)
            if side >= 8:
                deepest = i
        self.cam_name = f"backbone.stages.{deepest}"
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.backbone.out_features, n_classes))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


def build_classifier(
    architecture: str, n_classes: int, image_size: int, *, width: int, input_size: int | None
) -> _Classifier:
    """cnn2 | resnet18 | resnet50 | resnet18_pose (the names of `ARCHITECTURES`)."""
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown classifier architecture {architecture!r}; one of {ARCHITECTURES}")
    base, channels = architecture.removesuffix("_pose"), 2 if given_pose(architecture) else 1
    if base == "cnn2":
        return SmallCNN(n_classes, image_size, width=width, input_size=input_size, in_channels=channels)
    return ResNetClassifier(
        n_classes, image_size, depth=int(base[6:]), width=width, input_size=input_size, in_channels=channels
    )
