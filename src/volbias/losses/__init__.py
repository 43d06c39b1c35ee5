"""Training losses for binary segmentation, behind one registry.

Every loss follows one contract: ``loss(logits, target, mask=None) -> scalar tensor`` with
pre-sigmoid ``logits`` and a ``target`` in [0, 1] (soft targets allowed), both shaped
``(B, 1, *spatial)``; voxels where ``mask == 0`` are excluded.  :func:`get_loss` builds a loss by
name; :mod:`volbias.losses.standard` registers the paper's two losses (``"ce"``, ``"sd"``) and
:mod:`volbias.losses.later` the losses published after it.
"""

from volbias.losses import later, standard  # registration happens on import
from volbias.losses.registry import LOSSES, LossFn, get_loss, register_loss

__all__ = ["LOSSES", "LossFn", "get_loss", "register_loss", "later", "standard"]
