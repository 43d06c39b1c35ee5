"""The paper's multi-pathway U-Net (2D and 3D), built from MONAI blocks.

The network has four resolution pathways at subsampling factors 1, 3, 9 and 27 (pooling by 3). Each
pathway but the coarsest has two convolutions on the way down, kernels (3,3,1) then (3,3,3), and two on the
way up, kernels (3,3,3) then (3,3,1); the coarsest pathway has two (3,3,3) convolutions. Feature counts per
pathway (down / up) are [20,40]/[40,20], [40,80]/[80,40], [80,160]/[160,80] and [160,160]. Convolutions use
'same' padding; the coarser pathway is brought back by linear upsampling and concatenated with the skip
features. The IS18 variant halves the features, pools by averaging and drops instance normalisation. The
2D variant uses (3,3) kernels throughout. The network returns logits; probabilities are
``sigmoid(logits) * mask`` (see :func:`masked_probabilities`).

As in the authors' code (paper-facts, "repo"): instance normalisation without learned parameters and a
LeakyReLU of slope 0.01 around every convolution (here in MONAI's order conv -> norm -> activation; the
authors' code has norm -> activation -> conv, see the recipe), and weights
are He-normal initialised (``kaiming_normal_``, fan-in, untruncated; Keras' ``he_normal`` truncates at two
standard deviations, a difference we do not reproduce) with zero biases.

Inputs of any size are accepted without padding them: pooling rounds up (``ceil_mode``; a window at the end of
an axis pools the voxels it has) and each upsampled map is cropped to its skip connection, so an input
whose sizes are multiples of 27 (the paper's 162 x 162 x 108 patches) is processed exactly as by a network
without those rules, and larger inputs of other sizes cost no padded voxels. (Axes shorter than 27 voxels
are zero-padded to 27, and an input of at most 27 voxels along every axis to 28 along its first axis, so
that every pooling window holds a voxel and instance normalisation sees two coarsest voxels.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from monai.networks.blocks import Convolution, UpSample
from torch import nn

#: Feature counts (down path) of the paper's four pathways, finest first.
PAPER_FEATURES: tuple[tuple[int, int], ...] = ((20, 40), (40, 80), (80, 160), (160, 160))
POOL_FACTOR = 3
LEAKY_SLOPE = 0.01  # the authors' LeakyReLU slope


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild a network: dimensionality, inputs, variant and width multiplier."""

    spatial_dims: int
    in_channels: int
    variant: str = "default"  # "default" | "is18"
    width: float = 1.0

    def build(self) -> "MultiPathwayUNet":
        """Instantiate the network described by this spec."""
        return build_model(self.spatial_dims, self.in_channels, self.variant, self.width)


def scaled_features(width: float, base: Sequence[Sequence[int]] = PAPER_FEATURES) -> tuple[tuple[int, int], ...]:
    """Feature counts multiplied by ``width`` (rounded, at least 1)."""
    if width <= 0:
        raise ValueError(f"width multiplier must be positive, got {width}")
    return tuple(tuple(max(1, round(f * width)) for f in level) for level in base)  # type: ignore[return-value]


def _kernel(spatial_dims: int, in_plane_only: bool) -> tuple[int, ...]:
    """(3,3,1) for in-plane convolutions in 3D, (3,3,3) otherwise; (3,3) in 2D."""
    if spatial_dims == 2:
        return (3, 3)
    return (3, 3, 1) if in_plane_only else (3, 3, 3)


class MultiPathwayUNet(nn.Module):
    """U-Net with pathways at subsampling 1, 3, 9, 27 (the paper's network); returns logits (B,1,*spatial)."""

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        features: Sequence[Sequence[int]] = PAPER_FEATURES,
        pooling: str = "max",
        norm: str | None = "instance",
        act: str | tuple = ("leakyrelu", {"negative_slope": LEAKY_SLOPE}),
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        if pooling not in ("max", "avg"):
            raise ValueError(f"pooling must be 'max' or 'avg', got {pooling!r}")
        if len(features) < 2:
            raise ValueError("the network needs at least two pathways")
        self.spatial_dims = spatial_dims
        self.features = tuple(tuple(level) for level in features)
        self.n_levels = len(self.features)

        def conv(cin: int, cout: int, in_plane: bool) -> Convolution:
            return Convolution(spatial_dims, cin, cout, kernel_size=_kernel(spatial_dims, in_plane),
                               act=act, norm=norm, adn_ordering="NDA")

        pool_cls = {("max", 2): nn.MaxPool2d, ("max", 3): nn.MaxPool3d,
                    ("avg", 2): nn.AvgPool2d, ("avg", 3): nn.AvgPool3d}[(pooling, spatial_dims)]
        self.down = nn.ModuleList()
        self.up = nn.ModuleList()
        self.pool = pool_cls(POOL_FACTOR, POOL_FACTOR, ceil_mode=True)
        self.upsample = UpSample(spatial_dims, scale_factor=POOL_FACTOR, mode="nontrainable",
                                 interp_mode="linear", align_corners=False, pre_conv=None)
        cin = in_channels
        for level, (f1, f2) in enumerate(self.features):
            coarsest = level == self.n_levels - 1
            self.down.append(nn.Sequential(conv(cin, f1, in_plane=not coarsest), conv(f1, f2, in_plane=False)))
            cin = f2
        for level in range(self.n_levels - 2, -1, -1):
            f1, f2 = self.features[level]
            coarser_out = self.features[level + 1][1] if level + 1 == self.n_levels - 1 else self.features[level + 1][0]
            # up features of a pathway mirror its down features: [f2, f1]
            self.up.append(nn.Sequential(conv(coarser_out + f2, f2, in_plane=False), conv(f2, f1, in_plane=True)))
        self.head = Convolution(spatial_dims, self.features[0][0], 1, kernel_size=1, conv_only=True)
        self.apply(he_normal_init)

    def set_output_prior(self, prior: float) -> None:
        """Initialise the output bias to ``logit(prior)``, so that the untrained network predicts the
        foreground fraction ``prior`` everywhere instead of 0.5 (the prior initialisation of Lin et al.,
        2017; the weights keep their He-normal initialisation)."""
        if not 0.0 < prior < 1.0:
            raise ValueError(f"prior must be in (0, 1), got {prior}")
        with torch.no_grad():
            self.head.conv.bias.fill_(math.log(prior / (1.0 - prior)))

    @property
    def size_multiple(self) -> int:
        """Subsampling factor of the coarsest pathway (27 for four pathways)."""
        return POOL_FACTOR ** (self.n_levels - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of shape (B, 1, *spatial) for an input of shape (B, C, *spatial)."""
        spatial = x.shape[2:]
        m = self.size_multiple
        # every pooling window needs a voxel, and instance normalisation more than one coarsest voxel
        target = [max(size, m) for size in spatial]
        if all(size <= m for size in spatial):
            target[0] = m + 1
        pad: list[int] = []
        for size, goal in zip(reversed(spatial), reversed(target)):
            pad += [0, goal - size]
        if any(pad):
            x = F.pad(x, pad)
        skips = []
        for level, block in enumerate(self.down):
            x = block(x)
            if level < self.n_levels - 1:
                skips.append(x)
                x = self.pool(x)
        for block, skip in zip(self.up, reversed(skips)):
            upsampled = self.upsample(x)[(...,) + tuple(slice(0, s) for s in skip.shape[2:])]
            x = block(torch.cat([upsampled, skip], dim=1))
        x = self.head(x)
        return x[(...,) + tuple(slice(0, s) for s in spatial)]


def he_normal_init(module: nn.Module) -> None:
    """He-normal weights (std sqrt(2 / fan_in)) and zero biases for every convolution."""
    if isinstance(module, (nn.Conv2d, nn.Conv3d)):
        nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def build_model(spatial_dims: int, in_channels: int, variant: str = "default", width: float = 1.0,
                act: str | tuple = ("leakyrelu", {"negative_slope": LEAKY_SLOPE})) -> MultiPathwayUNet:
    """The paper's network: ``variant="default"`` (BR18, IS17, MO17) or ``"is18"`` (half features,
    average pooling, no instance normalisation); ``width`` multiplies all feature counts."""
    if variant == "default":
        return MultiPathwayUNet(spatial_dims, in_channels, scaled_features(width), "max", "instance", act)
    if variant == "is18":
        return MultiPathwayUNet(spatial_dims, in_channels, scaled_features(width / 2), "avg", None, act)
    raise ValueError(f"unknown model variant {variant!r}; expected 'default' or 'is18'")


def masked_probabilities(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The network's output map: ``sigmoid(logits) * mask`` (zero outside the task mask)."""
    return torch.sigmoid(logits) * mask.to(logits.dtype)


def _axis_receptive_field(in_plane_axis: bool, n_levels: int) -> int:
    """Largest input extent along one axis of one output voxel, by tracing index intervals backwards."""
    def k(in_plane_only: bool) -> int:
        return 3 if (in_plane_axis or not in_plane_only) else 1

    def conv(lo: int, hi: int, kernel: int) -> tuple[int, int]:
        return lo - (kernel - 1) // 2, hi + (kernel - 1) // 2

    extents = []
    for i in range(POOL_FACTOR ** (n_levels - 1)):  # the dependency pattern repeats with this period
        lo = hi = i
        for level in range(n_levels - 1):  # up path, finest first (walking from the output inwards)
            lo, hi = conv(lo, hi, k(True))
            lo, hi = conv(lo, hi, k(False))
            # linear upsampling by 3 (align_corners=False): fine voxel i sits at coarse coordinate (i - 1) / 3
            lo, hi = (lo - 1) // POOL_FACTOR, -(-(hi - 1) // POOL_FACTOR)
        lo, hi = conv(*conv(lo, hi, k(False)), k(False))  # the coarsest pathway
        for level in range(n_levels - 2, -1, -1):  # down path, coarsest first
            lo, hi = POOL_FACTOR * lo, POOL_FACTOR * hi + POOL_FACTOR - 1  # pooling windows of 3
            lo, hi = conv(lo, hi, k(False))
            lo, hi = conv(lo, hi, k(True))
        extents.append(hi - lo + 1)
    return max(extents)


def receptive_field(spatial_dims: int = 3, n_levels: int = 4) -> tuple[int, ...]:
    """Largest extent (voxels per axis) of the input region that one output voxel depends on.

    Exact for the layer geometry (away from the image border): the interval of input indices that an output
    voxel depends on is traced back through the deepest path (the skip paths depend on a subset of it). A
    convolution with kernel k widens the interval by (k-1)/2 on each side, a pooling window covers 3 finer
    voxels, and linear upsampling reads the two coarse voxels around coarse coordinate (i - 1) / 3. Along
    the through-plane axis of 3D networks the (3,3,1) convolutions add nothing.
    """
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
    return tuple(_axis_receptive_field(spatial_dims == 2 or axis < 2, n_levels) for axis in range(spatial_dims))


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
