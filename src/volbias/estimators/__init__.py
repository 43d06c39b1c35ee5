"""Volume estimators from a trained network's probability maps, and their calibration fits.

- :mod:`volbias.estimators.volume`: hard, soft, temperature-scaled, tau* and Dice-optimal volumes;
- :mod:`volbias.estimators.temperature`: one-parameter temperature scaling fitted by NLL;
- :mod:`volbias.estimators.recalibration`: linear volume re-calibration ``V_true ~ a + b V_pred``;
- :mod:`volbias.estimators.compare`: all estimators on held-out runs, fits on the training folds;
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
