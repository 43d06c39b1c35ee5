"""Theory of the volume bias: expected volume, loss optima and expected Dice under inherent uncertainty.

numpy in, numpy out.  Modules: :mod:`.optima` (expected volume, CE and soft Dice optima),
:mod:`.poisson_binomial` and :mod:`.expected_dice` (hard Dice with independent labels),
:mod:`.core_rim` (closed forms), :mod:`.boundary_shift` (correlated labels), :mod:`.phantoms`
(blurred disks/spheres), :mod:`.bias_curves` (bias against ``sigma / R``) and
:mod:`.logit_descent` (gradient descent on free logits), :mod:`.blob_shift` (expected Dice when several blobs
shift independently) and :mod:`.later_optima` (optima of losses published after the paper: focal, Tversky, DSC++).
"""

from volbias.theory.bias_curves import VOLUME_COLUMNS, bias_curve
from volbias.theory.boundary_shift import (
    sample_shift_labels,
    shift_dice_optimal_mask,
    shift_disk,
    shift_expected_dice_topk,
    shift_marginals,
)
from volbias.theory.core_rim import (
    core_rim_correlated_expected_dice,
    core_rim_marginals,
    core_rim_relative_bias,
    keeps_rim,
    q_crit,
)
from volbias.theory.expected_dice import dice_optimal_mask, expected_dice, expected_dice_topk
from volbias.theory.later_optima import (
    dsc_plus_plus_optimum,
    dsc_plus_plus_ratio,
    focal_expected_loss,
    focal_optimum,
    tversky_index,
    tversky_optimal_mask,
)
from volbias.theory.logit_descent import FreeLogitResult, optimise_free_logits
from volbias.theory.optima import (
    cross_entropy_optimum,
    expected_volume,
    plugin_soft_dice,
    soft_dice_optimum,
    soft_dice_threshold,
)
from volbias.theory.phantoms import blurred_ball, blurred_disk, blurred_sphere, centre_distances
from volbias.theory.poisson_binomial import poisson_binomial_pmf

__all__ = [
    "VOLUME_COLUMNS",
    "FreeLogitResult",
    "bias_curve",
    "blurred_ball",
    "blurred_disk",
    "blurred_sphere",
    "centre_distances",
    "core_rim_correlated_expected_dice",
    "core_rim_marginals",
    "core_rim_relative_bias",
    "cross_entropy_optimum",
    "dice_optimal_mask",
    "dsc_plus_plus_optimum",
    "dsc_plus_plus_ratio",
    "expected_dice",
    "expected_dice_topk",
    "expected_volume",
    "focal_expected_loss",
    "focal_optimum",
    "keeps_rim",
    "optimise_free_logits",
    "plugin_soft_dice",
    "poisson_binomial_pmf",
    "q_crit",
    "sample_shift_labels",
    "shift_dice_optimal_mask",
    "shift_disk",
    "shift_expected_dice_topk",
    "shift_marginals",
    "soft_dice_optimum",
    "soft_dice_threshold",
    "tversky_index",
    "tversky_optimal_mask",
]
