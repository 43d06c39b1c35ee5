"""volbias: volume bias of soft-Dice-trained segmentation networks under inherent uncertainty."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("volbias")  # the one version, declared in pyproject.toml
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"
