"""Expected hard Dice ``E[Dice(mask, Y)]`` for independent labels ``Y_i ~ Bernoulli(p_i)``, at clinical scale.

With ``k = |mask|``, ``X = |mask & Y|`` and ``Z = |Y outside mask|``, ``Dice = 2X / (k + X + Z)``.
Convention: when the mask and the labels are both empty the Dice is 1, so the empty mask scores
``P(Y empty) = prod(1 - p)``.  The maximiser of the expected Dice over hard masks is a top-k mask by
``p`` (the probability ranking principle for the F1 score under independent labels).

Every function reduces the map to a few sums and a short list of voxels
(:mod:`volbias.theory._dice_integral`, which proves the error bounds) and integrates the probability
generating function on about 200 nodes.  They accept a numpy array or a torch tensor (CPU or CUDA;
the voxel-wise passes run on the tensor's device, in float64) and give the same numbers for both.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from volbias.theory._arrays import NumpyOps, checked_mask, checked_probabilities, ops_for
from volbias.theory._checks import first_maximiser
from volbias.theory._dice_integral import Nodes, expected_dice_of_mask, summarise, top_k_curve
from volbias.theory._dice_search import SearchResult, optimal_size_window


def expected_dice(mask: Any, p: Any, method: Literal["exact", "normal"] = "exact") -> float:
    """Expected Dice ``E[Dice(mask, Y)]`` of a hard ``mask`` against ``Y_i ~ Bernoulli(p_i)`` independent.

    ``method="exact"`` integrates the generating function (absolute error below ``1e-13`` up to
    ``N = 10^7`` voxels; bounds in :mod:`volbias.theory._dice_integral`) in one ``O(N)`` pass over the
    map (times in ``benchmarks/bench_expected_dice.py``).  ``method="normal"`` is the second-order
    expansion of ``2X/(k+X+Z)`` around the means; its error is ``O(1/N^2)`` relative for objects of
    ``O(N)`` voxels.  Both return ``prod(1 - p)`` for an empty mask.  ``mask`` and ``p`` may be numpy
    arrays or torch tensors of the same shape.
    """
    if method not in ("exact", "normal"):
        raise ValueError(f"method: expected 'exact' or 'normal', got {method!r}")
    ops = ops_for(p)
    array = ops.as_array(p)
    flat = checked_probabilities(ops, array)
    inside_mask = checked_mask(ops, mask, tuple(array.shape))
    k = ops.count(inside_mask)
    if k == 0:
        return ops.prod(1.0 - flat)
    if method == "normal":
        return _normal(flat[inside_mask], flat[~inside_mask], k)
    return expected_dice_of_mask(ops, flat, inside_mask, k, ops.count(flat == 1.0), float(flat.sum()))


def _normal(inside: Any, outside: Any, k: int) -> float:
    """Second-order (delta-method) expansion of E[2X / (k + X + Z)] around the means (``k >= 1``)."""
    mean_x, mean_z = float(inside.sum()), float(outside.sum())
    var_x, var_z = float((inside * (1 - inside)).sum()), float((outside * (1 - outside)).sum())
    d = k + mean_x + mean_z
    return float(2 * mean_x / d + (2 * mean_x * var_z - 2 * (k + mean_z) * var_x) / d**3)


def expected_dice_topk(p: Any) -> tuple[Any, Any]:
    """Expected Dice of every top-k mask: returns ``(order, E)`` with ``E[k]`` for ``k = 0..N``.

    ``order`` lists flat voxel indices by decreasing ``p`` (stable, so ties keep raster order); the
    top-k mask is ``order[:k]``.  Absolute error below ``1e-13`` (bounds in
    :mod:`volbias.theory._dice_integral`); cost ``O(N log N)`` for the order plus ``O(N)`` for each of
    the few dozen quadrature nodes that matter for large ``k`` (the others enter through a Taylor
    expansion).  For a torch tensor both results are tensors on its device.
    """
    ops = ops_for(p)
    flat = checked_probabilities(ops, ops.as_array(p))
    n = int(flat.shape[0])
    order = ops.descending(flat)
    values = np.zeros(n + 1)
    values[0] = ops.prod(1.0 - flat)
    total = float(flat.sum())
    if total > 0.0:
        ones = ops.count(flat == 1.0)
        nodes = Nodes.for_masks(1, ones, total - ones, total)
        g, nothing = summarise(ops, flat, nodes.y_max)
        values[1:] = top_k_curve(ops, g, nothing, flat[order], 0, nodes, ones, total - ones)
    return ops.output(order), ops.output(values)


def dice_optimal_mask(p: Any) -> Any:
    """The hard mask maximising the expected Dice ``E[Dice(mask, Y)]`` for independent ``Y_i ~ Bernoulli(p_i)``.

    A top-k mask by ``p``; ties in ``p`` keep raster order and among equally good ``k`` (within
    ``TIE_TOLERANCE``, :func:`volbias.theory._checks.first_maximiser`) the smallest wins.  Only the
    sizes ``k`` that proven bounds cannot exclude are scored exactly
    (:mod:`volbias.theory._dice_search`), so no full sort is needed: a few ``O(N)`` passes (times in
    ``benchmarks/bench_expected_dice.py``).  Returns an array (or a tensor on ``p``'s device) of
    ``p``'s shape.
    """
    ops = ops_for(p)
    array = ops.as_array(p)
    flat = checked_probabilities(ops, array)
    search = optimal_size_window(ops, flat)
    k = _best_size(ops, flat, search)
    mask = ops.zeros_bool(int(flat.shape[0]), flat)
    if k > 0:
        mask = flat > search.ceiling
        mask[search.candidates[: k - search.above]] = True
    return ops.output(mask.reshape(tuple(array.shape)))


def _best_size(ops: NumpyOps, flat: Any, search: SearchResult) -> int:
    """The tie rule's choice among ``k = 0`` and the window ``k_lo .. k_hi`` of ``search``, scored exactly."""
    if search.k_hi < search.k_lo:
        return 0
    k0 = search.k_lo - 1
    nodes = Nodes.for_masks(search.k_lo, search.ones, search.total - search.ones, search.top_mass(search.k_hi))
    g, above = summarise(ops, flat, nodes.y_max, flat > search.ceiling)
    base = above.merged(summarise(ops, search.candidate_values[: k0 - search.above], nodes.y_max)[0])
    window = search.candidate_values[k0 - search.above : search.k_hi - search.above]
    curve = top_k_curve(ops, g, base, window, k0, nodes, search.ones, search.total - search.ones)
    scores = np.concatenate([[search.empty_score], curve])
    choice = first_maximiser(scores)
    return 0 if choice == 0 else k0 + choice
