"""RunConfig: the one description of a training run (read from / written to YAML)."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

import yaml

from ..profiles import PROFILE_NAMES, TRAINING_KEYS, Profile, get_profile
from .batches import TARGET_MODES
from .schedules import validate_loss_name


class ConfigError(ValueError):
    """A bad run configuration; the message is one line naming the file or key."""


REQUIRED_KEYS = ("task", "loss", "fold", "seed", "profile")
DEVICES = ("cpu", "cuda", "auto")


@dataclass(frozen=True)
class RunConfig:
    """One training run: task (+ data options), loss (+ options), fold, seed, profile, device.

    ``training`` overrides settings of the profile (epochs, batch_size, width, lr, weight_decay,
    lr_schedule, pretrain_fraction, checkpoint_every, patch_size, amp).
    """

    task: str
    loss: str
    fold: int
    seed: int
    profile: str = "cpu"
    device: str = "auto"
    task_options: Mapping[str, Any] = field(default_factory=dict)
    loss_options: Mapping[str, Any] = field(default_factory=dict)
    training: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], source: str = "config") -> "RunConfig":
        """Validate a mapping (e.g. parsed YAML) and build the config; unknown keys are an error."""
        if not isinstance(values, Mapping):
            raise ConfigError(f"{source}: expected a mapping of keys to values, got {type(values).__name__}")
        allowed = [f for f in cls.__dataclass_fields__]
        unknown = sorted(set(values) - set(allowed))
        if unknown:
            raise ConfigError(f"{source}: unknown key(s) {', '.join(map(str, unknown))}; allowed: {', '.join(allowed)}")
        missing = [k for k in REQUIRED_KEYS if k not in values]
        if missing:
            raise ConfigError(f"{source}: missing key(s) {', '.join(missing)}")
        for key in ("task_options", "loss_options", "training"):
            if values.get(key) is not None and not isinstance(values[key], Mapping):
                raise ConfigError(f"{source}: {key} must be a mapping")
        for key in ("fold", "seed"):
            if not isinstance(values[key], int) or isinstance(values[key], bool) or values[key] < 0:
                raise ConfigError(f"{source}: {key} must be a non-negative integer, got {values[key]!r}")
        config = cls(
            task=str(values["task"]), loss=str(values["loss"]), fold=values["fold"], seed=values["seed"],
            profile=str(values["profile"]), device=str(values.get("device", "auto")),
            task_options=dict(values.get("task_options") or {}),
            loss_options=dict(values.get("loss_options") or {}),
            training=dict(values.get("training") or {}),
        )
        config.validate(source)
        return config

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str]) -> "RunConfig":
        """Read and validate a YAML config file."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        try:
            values = yaml.safe_load(path.read_text())
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
        return cls.from_dict(values if values is not None else {}, source=str(path))

    def validate(self, source: str = "config") -> None:
        """Check names and settings that can be checked without loading data."""
        from ..data import list_tasks

        if self.task not in list_tasks():
            raise ConfigError(f"{source}: task={self.task!r} unknown; expected one of {', '.join(list_tasks())}")
        if self.profile not in PROFILE_NAMES:
            raise ConfigError(f"{source}: profile={self.profile!r} unknown; expected one of {', '.join(PROFILE_NAMES)}")
        if self.device not in DEVICES and not self.device.startswith("cuda:"):
            raise ConfigError(f"{source}: device={self.device!r} unknown; expected cpu, cuda, cuda:N or auto")
        unknown = sorted(set(self.training) - set(TRAINING_KEYS))
        if unknown:
            raise ConfigError(f"{source}: training: unknown setting(s) {', '.join(unknown)}; "
                              f"allowed: {', '.join(TRAINING_KEYS)}")
        targets = self.training.get("targets", "rater")
        if targets not in TARGET_MODES:
            raise ConfigError(f"{source}: training: targets={targets!r} unknown; expected one of "
                              f"{', '.join(TARGET_MODES)}")
        try:
            validate_loss_name(self.loss)
        except ValueError as err:
            raise ConfigError(f"{source}: {err}") from None

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python form (for YAML and checkpoints)."""
        values = asdict(self)
        for key in ("task_options", "loss_options", "training"):
            values[key] = dict(getattr(self, key))
        return values

    def to_yaml(self) -> str:
        """YAML text of this config."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def _dims(self) -> int | None:
        dims = self.task_options.get("dims")
        return int(dims) if isinstance(dims, int) else None

    def resolved_profile(self) -> Profile:
        """The profile with its per-task settings, then this config's training overrides, applied."""
        base = get_profile(self.profile).for_task(self.task, self._dims())
        return replace(base, **dict(self.training))

    def resolved_task_options(self) -> dict[str, Any]:
        """Data options: the profile's per-task defaults, overridden by ``task_options``."""
        options = get_profile(self.profile).task_options(self.task, self._dims())
        options.update(self.task_options)
        return options

    def run_name(self) -> str:
        """Directory name used by sweeps: ``<task>/<loss>/fold<k>-seed<s>``."""
        return f"{self.task}/{self.loss}/fold{self.fold}-seed{self.seed}"
