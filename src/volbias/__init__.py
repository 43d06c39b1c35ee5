"""volbias: volume bias of soft-Dice-trained segmentation networks under inherent uncertainty."""

__version__ = "0.1.0"
