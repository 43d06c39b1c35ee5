"""What nnU-Net v2 writes into a prediction folder besides the maps: its marker files and ``dataset.json``.

``nnUNetv2_predict`` writes ``dataset.json``, ``plans.json`` and ``predict_from_raw_data_args.json`` into the
output folder.  ``dataset.json`` says which channel of ``probabilities`` is which (nnU-Net's
``LabelManager``):

- label-based models (softmax): one channel per label value, in increasing order, background included
  (channel ``c`` is label ``all_labels[c]``); an ``ignore`` label has no channel;
- region-based models (sigmoid, an entry of ``labels`` is a list of several values): one channel per
  region other than background, in the order of ``labels``; a region stands for the union of its labels.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from volbias.audit.errors import AuditError

MARKERS: tuple[str, ...] = ("dataset.json", "plans.json", "predict_from_raw_data_args.json")
"""Files nnUNetv2_predict writes into every prediction folder."""


@dataclass(frozen=True)
class ModelOutputs:
    """The channels of a model's ``probabilities``: a name and the label values of each, from ``dataset.json``."""

    path: Path
    names: tuple[str, ...]
    labels: tuple[tuple[int, ...], ...]
    region_based: bool
    file_ending: str

    @property
    def n_channels(self) -> int:
        """Channels of the model's ``probabilities``."""
        return len(self.names)

    def describe(self, channel: int) -> str:
        """``"1 (liver: label 1)"`` or ``"0 (whole tumour: labels 1, 2, 3)"``."""
        values = self.labels[channel]
        which = "label" if len(values) == 1 else "labels"
        return f"{channel} ({self.names[channel]}: {which} {', '.join(map(str, values))})"

    def listing(self) -> str:
        """All channels, for messages: ``"0 (background: label 0), 1 (liver: label 1)"``."""
        return ", ".join(self.describe(c) for c in range(self.n_channels))


def markers(folder: Path) -> list[str]:
    """The nnU-Net marker files present in ``folder``."""
    return [name for name in MARKERS if (folder / name).is_file()]


def _values(path: Path, name: str, value: object) -> tuple[int, ...]:
    items = value if isinstance(value, (list, tuple)) else [value]
    if not items or not all(isinstance(v, int) and not isinstance(v, bool) for v in items):
        raise AuditError(f"{path}: label {name!r} is {value!r}; expected an integer or a list of integers")
    return tuple(sorted(set(items)))


def read_dataset_json(folder: Path) -> ModelOutputs | None:
    """The channels named by ``folder/dataset.json`` (None without one); AuditError for a malformed file."""
    path = folder / "dataset.json"
    if not path.is_file():
        return None
    try:
        content = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AuditError(f"{path}: not a readable JSON file ({type(exc).__name__})") from None
    labels = content.get("labels") if isinstance(content, dict) else None
    if not isinstance(labels, dict) or labels.get("background") != 0:
        raise AuditError(f"{path}: no 'labels' with 'background': 0, as nnU-Net v2 writes them")
    entries = {name: _values(path, name, value) for name, value in labels.items() if name != "ignore"}
    region_based = any(len(values) > 1 for values in entries.values())
    if region_based:
        channels = [(name, values) for name, values in entries.items() if values != (0,)]
    else:
        by_value = {values[0]: name for name, values in entries.items()}
        channels = [(by_value[value], (value,)) for value in sorted(by_value)]
    return ModelOutputs(path, tuple(n for n, _ in channels), tuple(v for _, v in channels), region_based,
                        str(content.get("file_ending", ".nii.gz")))
