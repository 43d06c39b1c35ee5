"""The paper's network: output shapes, parameter count, receptive field (analytic and measured)."""

from __future__ import annotations

import pytest
import torch

from volbias.models import (
    MultiPathwayUNet,
    ModelSpec,
    build_model,
    count_parameters,
    masked_probabilities,
    receptive_field,
    scaled_features,
)


@pytest.mark.parametrize("variant", ["default", "is18"])
@pytest.mark.parametrize("shape", [(30, 31, 20), (27, 27, 27), (10, 12, 5)])
def test_output_shape_3d_any_size(variant: str, shape: tuple[int, ...]) -> None:
    model = build_model(3, 4, variant, width=0.1)
    logits = model(torch.randn(2, 4, *shape))
    assert logits.shape == (2, 1, *shape)


@pytest.mark.parametrize("shape", [(64, 64), (33, 100), (5, 7)])
def test_output_shape_2d(shape: tuple[int, ...]) -> None:
    logits = build_model(2, 1, width=0.1)(torch.randn(3, 1, *shape))
    assert logits.shape == (3, 1, *shape)


def _conv_params(cin: int, cout: int, kernel_volume: int) -> int:
    return cin * cout * kernel_volume + cout


def test_parameter_count_matches_the_paper_architecture() -> None:
    # Hand count of the 3D network with 4 input channels (instance norm without affine parameters):
    # down: (3,3,1) then (3,3,3) per pathway, coarsest two (3,3,3); up: (3,3,3) then (3,3,1) on
    # [upsampled coarser output, skip]; a 1x1x1 head.
    down = [((4, 20), 9), ((20, 40), 27), ((40, 40), 9), ((40, 80), 27), ((80, 80), 9), ((80, 160), 27),
            ((160, 160), 27), ((160, 160), 27)]
    up = [((320, 160), 27), ((160, 80), 9), ((160, 80), 27), ((80, 40), 9), ((80, 40), 27), ((40, 20), 9)]
    expected = sum(_conv_params(a, b, k) for (a, b), k in down + up) + _conv_params(20, 1, 1)
    assert count_parameters(build_model(3, 4)) == expected


def test_is18_variant_halves_features_and_drops_norm() -> None:
    model = build_model(3, 5, "is18")
    assert model.features == ((10, 20), (20, 40), (40, 80), (80, 80))
    assert not any(isinstance(m, torch.nn.InstanceNorm3d) for m in model.modules())
    assert any(isinstance(m, torch.nn.AvgPool3d) for m in model.modules())
    assert any(isinstance(m, torch.nn.InstanceNorm3d) for m in build_model(3, 5).modules())


def test_width_multiplier_scales_features() -> None:
    assert scaled_features(0.5)[0] == (10, 20)
    assert scaled_features(0.001) == ((1, 1),) * 4
    with pytest.raises(ValueError):
        scaled_features(0.0)
    assert ModelSpec(2, 1, width=0.25).build().features[3] == (40, 40)


def test_masked_probabilities_are_zero_outside_mask() -> None:
    logits = torch.randn(1, 1, 8, 8)
    mask = torch.zeros(1, 1, 8, 8, dtype=torch.bool)
    mask[..., 2:5, 3:6] = True
    probs = masked_probabilities(logits, mask)
    assert torch.all(probs[~mask] == 0)
    assert torch.allclose(probs[mask], torch.sigmoid(logits[mask]))


def test_receptive_field_analytic() -> None:
    # One pathway: two 3-voxel convolutions -> 5.
    assert receptive_field(2, n_levels=1) == (5, 5)
    # Two pathways, by hand: the two up convolutions make output voxel i depend on fine voxels i-2..i+2;
    # linear upsampling (fine i at coarse coordinate (i-1)/3) reads coarse voxels floor((i-3)/3) ..
    # ceil((i+1)/3): always 3 of them; the coarse convolutions widen this to 7 coarse voxels = 21 fine
    # voxels after pooling by 3, and the two down convolutions add 2 on each side: 25.
    assert receptive_field(2, n_levels=2) == (25, 25)
    # Through-plane in 3D, the (3,3,1) convolutions of each pathway add nothing.
    assert receptive_field(3, n_levels=1) == (5, 5, 5)
    # Never more than the sum of all widenings along the deepest path (278 in-plane, 226 through-plane).
    rf = receptive_field(3)
    assert rf[0] == rf[1] <= 278 and rf[2] <= 226 and rf[2] < rf[0]


def _footprint_extent(model: torch.nn.Module, shape: tuple[int, ...], axis: int, position: int) -> int:
    """Extent along ``axis`` of the input voxels with a non-zero gradient of one output voxel."""
    x = torch.randn(1, 1, *shape, dtype=torch.float64, requires_grad=True)
    out = model(x)
    centre = [s // 2 for s in shape]
    centre[axis] = position
    out[(0, 0, *centre)].backward()
    nonzero = x.grad[0, 0].abs().sum(dim=tuple(d for d in range(len(shape)) if d != axis)).nonzero()
    return int(nonzero.max() - nonzero.min() + 1)


def _probe_model(spatial_dims: int, levels: int) -> MultiPathwayUNet:
    # Geometry of the paper's network with leaky activations and average pooling (no instance
    # normalisation, which would couple all voxels), so that every dependency has a non-zero gradient.
    torch.manual_seed(0)
    return MultiPathwayUNet(spatial_dims, 1, ((2, 2),) * levels, pooling="avg", norm=None, act="leakyrelu").double()


@pytest.mark.parametrize("spatial_dims,shape,axis,levels", [
    (2, (351, 27), 0, 4), (3, (9, 9, 90), 2, 3), (3, (33, 9, 9), 0, 2), (2, (81, 9), 0, 2)])
def test_receptive_field_measured(spatial_dims: int, shape: tuple[int, ...], axis: int, levels: int) -> None:
    model = _probe_model(spatial_dims, levels)
    expected = receptive_field(spatial_dims, levels)[axis]
    period = model.size_multiple
    assert shape[axis] > expected + period  # the footprint is never cut by the border
    start = shape[axis] // 2 - period // 2
    extents = [_footprint_extent(model, shape, axis, start + k) for k in range(period)]
    # the extent may depend on the position within a block of the coarsest voxel; its maximum is analytic
    assert max(extents) == expected
