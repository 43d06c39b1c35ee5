"""The training recipe shared by every profile, each choice labelled with where it comes from.

Sources: ``"paper"`` (stated in the volume-bias papers), ``"authors' code"`` (the models, constants and folds
the group released for its 2019 Dice/Jaccard work, JeroenBertels/optimizingdice; assumed to carry over),
``"inferred"`` (inferred from the authors' later public code, deepvoxnet2 and its BraTS 2018 demo), and
``"ours"`` (a choice of this book, with the reason). Profiles change sizes only (epochs, batch size, width,
learning rate, data grid); :func:`recipe_table` lists the choices for the Training chapter.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

SOURCES = ("paper", "authors' code", "inferred", "ours")


@dataclass(frozen=True)
class RecipeItem:
    """One setting of the recipe: what we use, where it comes from, and why when it is ours."""

    setting: str
    value: str
    source: str
    note: str = ""


RECIPE: tuple[RecipeItem, ...] = (
    RecipeItem("network", "U-Net with pathways at subsampling 1, 3, 9, 27; features 20 to 160 times the width",
               "authors' code", "the profile's width multiplies every feature count (1 at the paper's scale)"),
    RecipeItem("activation, normalisation", "instance normalisation without learned parameters and LeakyReLU 0.01",
               "authors' code", "IS18 variant: no normalisation, average pooling, half the features"),
    RecipeItem("layer order", "convolution, then normalisation, then activation", "ours",
               "the authors' code orders normalisation, activation, convolution (pre-activation); we keep the "
               "common post-activation order of MONAI's blocks"),
    RecipeItem("initialisation", "He-normal weights, zero biases", "authors' code",
               "an untruncated normal (Keras' he_normal truncates at two standard deviations)"),
    RecipeItem("output-bias initialisation", "logit of the foreground fraction of the training targets", "ours",
               "otherwise every logit starts at 0 (p = 0.5) and Adam, which moves each weight by about the "
               "learning rate per step, needs thousands of steps to bring the background to its low prior: "
               "the short CPU runs ended with CE's soft volume at several times the labels"),
    RecipeItem("loss inputs", "sigmoid of the logits times the task mask; losses over the mask only",
               "authors' code", "CE averaged over the masked voxels; SD per image"),
    RecipeItem("soft Dice", "per image, epsilon 1e-5 in numerator and denominator", "ours",
               "the authors' later code uses about 1e-7 (inferred); with it an empty target gives almost no "
               "gradient"),
    RecipeItem("optimiser", "Adam", "inferred", "from the authors' later code"),
    RecipeItem("L2 penalty", "1e-5 x the sum of squared kernel weights (none on biases; none for IS18)",
               "authors' code", "the released models' Keras kernel regulariser l2(1e-5)"),
    RecipeItem("learning rate", "1e-3 at the paper's scale, 3e-3 on the CPU profile", "inferred",
               "1e-3 from the later code; on the short CPU runs it left CE's training soft volume above the "
               "labels (not converged by the book's rule), so the CPU profile starts at 3e-3 (ours)"),
    RecipeItem("learning-rate decay", "x0.1 after 4/7 and again after 6/7 of each training stage", "inferred",
               "the later code's 1e-3 / 1e-4 / 1e-5 over 300 / 150 / 75 epochs, as fractions of the run"),
    RecipeItem("samples", "whole (cropped) images, batches of 2, no label balancing", "inferred",
               "label balancing would shift CE's prior and bias its soft volume, which the book tests"),
    RecipeItem("training length", "the same number of steps for every loss", "ours",
               "the profile sets it per task; the Training chapter lists the steps"),
    RecipeItem("padding", "images padded to the batch's common shape with their background value", "ours",
               "after the fixed intensity normalisation a zero is tissue-like: zero padding showed the network "
               "slabs it never sees at inference, and both losses then over-segmented held-out tumours"),
    RecipeItem("augmentation", "none", "ours",
               "the papers document none for the 2019 experiments; the authors' 2022 code augments"),
    RecipeItem("two-stage schedules", "CE for half of the epochs, then CE or SD with a fresh optimiser",
               "inferred", "from the names of the released models (CE-CE, CE-SD)"),
    RecipeItem("model used for evaluation", "the last epoch", "ours",
               "the authors selected checkpoints on the validation metric of each loss; the last epoch keeps "
               "selection from favouring a loss and leaves the held-out cases unseen"),
)
"""The recipe, in the order the Training chapter lists it."""


def recipe_table() -> pd.DataFrame:
    """The recipe as a table: setting, value, source, note."""
    bad = [item.setting for item in RECIPE if item.source not in SOURCES]
    if bad:
        raise ValueError(f"recipe items with an unknown source: {', '.join(bad)}")
    return pd.DataFrame([vars(item) for item in RECIPE])
