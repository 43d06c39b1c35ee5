"""The ``volbias audit`` subcommand: its options and what it prints."""

from __future__ import annotations

import argparse
import sys
from typing import Any

FORMAT_CHOICES = ("auto", "nifti", "nnunet")


def add_audit_command(commands: Any) -> None:
    """Add ``audit`` to the ``volbias`` subcommands (``commands`` from ``add_subparsers``)."""
    p = commands.add_parser("audit", help="check a segmentation model's volumes against reference label maps",
                            description="Audit the volumes of a model's probability maps against reference label "
                                        "maps; writes report.md, cases.csv, estimators.csv and summary.json.")
    p.add_argument("--pred", required=True, metavar="DIR",
                   help="probability maps: <case>.nii(.gz), or nnU-Net's <case>.npz with <case>.pkl (and the "
                        "dataset.json nnUNetv2_predict writes there)")
    p.add_argument("--ref", required=True, metavar="DIR", help="reference label maps <case>.nii(.gz)")
    p.add_argument("--raters", nargs="+", default=[], metavar="DIR",
                   help="folders of further raters' label maps; the reference is the mean of all raters' masks, its "
                        "Dice mask the strict majority (mean > 0.5)")
    p.add_argument("--out", required=True, metavar="DIR", help="report folder (written in one step at the end)")
    p.add_argument("--format", default="auto", choices=FORMAT_CHOICES,
                   help="format of --pred (auto: nnunet when it holds *.npz, else nifti)")
    p.add_argument("--channel", type=int, nargs="+", default=None, dest="channels", metavar="C",
                   help="foreground channel(s) of multi-channel maps; several softmax channels are summed (a union "
                        "of classes); default: channel 1 of a 2-channel softmax (an nnU-Net folder's dataset.json "
                        "names the channels)")
    p.add_argument("--label", type=int, nargs="+", default=None, dest="labels", metavar="VALUE",
                   help="foreground label value(s) of multi-class references (default: the labels an nnU-Net folder's "
                        "dataset.json gives the chosen channels, else binary 0/1 maps)")
    p.add_argument("--threshold", type=float, default=0.5, help="segmentation = probability > THRESHOLD (0.5)")
    p.add_argument("--tolerance", type=float, default=0.05,
                   help="relative volume bias still called equivalent to the reference (0.05: ±5%%)")
    p.add_argument("--allow-binary", action="store_true",
                   help="audit 0/1 maps (segmentations) as they are: their soft volume is their thresholded volume")
    p.add_argument("--sigmoid", action="store_true",
                   help="the channels of a multi-channel map are independent (sigmoid) outputs, not a softmax")
    p.add_argument("--workers", type=int, default=1,
                   help="cases read and measured at a time, each in a process of its own (1)")
    p.add_argument("--n-bins", type=int, default=10, help="bins of the reliability diagram and the ECE (10)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the bootstrap CIs and of the temperature fit's voxel draw (0)")
    p.add_argument("--strict", action="store_true",
                   help="refuse predictions without a reference (and references without a prediction)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run_audit_command(args: argparse.Namespace) -> None:
    """Run the audit of parsed arguments; list skipped cases on stderr and print the verdict."""
    import torch

    from volbias.audit.discovery import name_list
    from volbias.audit.run import run_audit

    # The audit's torch work (reliability binning) is many short passes over small arrays: one thread is faster
    # than a thread pool, most of all on a machine shared with other jobs (measured: 30 % less wall time).
    torch.set_num_threads(1)

    result = run_audit(args.pred, args.ref, args.out, raters=args.raters, input_format=args.format,
                       channel=args.channels, labels=args.labels, threshold=args.threshold, strict=args.strict,
                       overwrite=args.overwrite, seed=args.seed, n_bins=args.n_bins, tolerance=args.tolerance,
                       allow_binary=args.allow_binary, sigmoid=args.sigmoid, workers=args.workers,
                       progress=not args.quiet)
    if result.without_reference:
        print(f"volbias audit: skipped {len(result.without_reference)} predictions without a reference: "
              f"{name_list(list(result.without_reference), limit=20)}", file=sys.stderr)
    if result.without_prediction:
        print(f"volbias audit: {len(result.without_prediction)} references without a prediction (not audited): "
              f"{name_list(list(result.without_prediction), limit=20)}", file=sys.stderr)
    if result.without_probabilities:
        print(f"volbias audit: {len(result.without_probabilities)} nnU-Net segmentations without a probability map "
              f"<case>.npz (predicted without --save_probabilities?; not audited): "
              f"{name_list(list(result.without_probabilities), limit=20)}", file=sys.stderr)
    for note in result.notes:
        print(f"volbias audit: {note}", file=sys.stderr)
    print(f"{result.out}: audit of {len(result.cases)} cases written (report.md)")
    for sentence in result.verdict:
        print(f"  {sentence}")
