"""Volume estimators from a trained network's probability maps, and their calibration fits.

- :mod:`volbias.estimators.volume`: hard, soft, temperature-scaled, tau* and Dice-optimal volumes;
- :mod:`volbias.estimators.temperature`: one-parameter temperature scaling fitted by NLL;
- :mod:`volbias.estimators.recalibration`: linear volume re-calibration ``max(0, a + b V_pred)``;
- :mod:`volbias.estimators.maps`: held-out maps of finished runs;
- :mod:`volbias.estimators.crossfit`: one map per case, held-out groups, leak-free fit sets;
- :mod:`volbias.estimators.compare`: all estimators on held-out maps, cross-fitted;
- :mod:`volbias.estimators.ceiling`: the phantoms' no-network volume (the sum of the image);
- :mod:`volbias.estimators.volume_calibration`: slope, intercept, held-out R^2 and spread of the volumes;
- :mod:`volbias.estimators.ranking`: two-stage bootstrap (networks, then cases) and how often an entry is best;
- :mod:`volbias.estimators.intervals`: per-case volume distributions, intervals, coverage and CRPS;
- :mod:`volbias.estimators.later_theory`: the volumes of each loss's optimal map;
- :mod:`volbias.estimators.runs`: the runs of the chapter "Which volume to trust";
- :mod:`volbias.estimators.plots`: its figures.
"""

from volbias.estimators.recalibration import LinearRecalibration, fit_linear_recalibration
from volbias.estimators.temperature import apply_temperature, fit_temperature, prob_to_logit
from volbias.estimators.volume import (
    dice_optimal_volume,
    hard_volume,
    soft_volume,
    tau_star_mask,
    tau_star_volume,
    temperature_scaled_volume,
)

__all__ = [
    "LinearRecalibration",
    "apply_temperature",
    "dice_optimal_volume",
    "fit_linear_recalibration",
    "fit_temperature",
    "hard_volume",
    "prob_to_logit",
    "soft_volume",
    "tau_star_mask",
    "tau_star_volume",
    "temperature_scaled_volume",
]
