"""Compute profiles: how large a training run is (smoke for tests, cpu for the book's build, gpu for the paper).

A profile fixes the training length, batch size, network width, optimiser settings and, per task, data
options that make the task fit the hardware (e.g. BR18-sample resampled to 4 mm on CPU). A run's config may
override the training settings (``training:`` section) and the task options (``task_options:``).

Every profile uses one training recipe (:data:`RECIPE` lists each choice and where it comes from): Adam
with the authors' step decay of the learning rate (x0.1 after 4/7 and 6/7 of each stage), L2 weight decay
1e-5 (0 for IS18), whole images (or random patches where a profile says so) in batches without label
balancing, the same number of steps for every loss, the output bias initialised to the training
foreground prior. Profiles differ in size only: epochs, batch size, width, learning rate, data grid.
Two-stage schedules (CE-CE, CE-SD) spend ``pretrain_fraction`` (default 0.5) of the epochs on CE, then
restart the optimiser and the learning-rate schedule for the second stage.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from types import MappingProxyType
from typing import Any, Mapping


@dataclass(frozen=True)
class Profile:
    """Size of a training run and the hardware it targets."""

    name: str
    description: str
    hardware: str
    epochs: int
    batch_size: int
    width: float
    lr: float = 1e-3
    weight_decay: float = 1e-5
    lr_schedule: str = "step"  # "step" (the authors' decay) | "cosine" | "constant"
    pretrain_fraction: float = 0.5
    checkpoint_every: int = 1  # epochs between checkpoints
    patch_size: int | tuple[int, ...] | None = None  # random training crops (edge or per-axis sizes); None = whole images
    amp: bool = True  # automatic mixed precision (only takes effect on CUDA)
    max_train_seconds: float | None = None  # stop training early after this much time (benchmarks only)
    targets: str = "rater"  # "rater": one sampled annotation per case and epoch; "soft": the marginals p
    prior_init: bool = True  # output bias initialised to the logit of the training foreground fraction
    task_overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    task_training: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def task_options(self, task: str, dims: int | None = None) -> dict[str, Any]:
        """The data options this profile sets for ``task`` (key ``"<task>:3d"`` when ``dims`` is 3)."""
        return dict(self.task_overrides.get(_task_key(self.task_overrides, task, dims), {}))

    def for_task(self, task: str, dims: int | None = None) -> "Profile":
        """This profile with its per-task training settings (e.g. patches for 3D tasks on CPU) applied."""
        return replace(self, **dict(self.task_training.get(_task_key(self.task_training, task, dims), {})))


def _task_key(table: Mapping[str, Any], task: str, dims: int | None) -> str:
    specific = f"{task}:{dims}d"
    return specific if dims is not None and specific in table else task


#: Training settings a run config may override in its ``training:`` section.
TRAINING_KEYS: tuple[str, ...] = tuple(
    f.name for f in fields(Profile)
    if f.name not in ("name", "description", "hardware", "task_overrides", "task_training")
)

_PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        name="smoke",
        description="a few seconds per run; for tests and for checking that a chapter executes",
        hardware="any CPU, 1 core",
        epochs=3,
        batch_size=4,
        width=0.1,
        lr=1e-2,
        task_overrides=MappingProxyType({
            "synthetic": {"n_cases": 10, "size": 27},
            "BR18-sample": {"spacing": 12.0, "crop": "foreground"},
            "LIDC": {"max_cases": 20},
            "BR18": {"spacing": 12.0, "max_cases": 10},
            "IS17": {"spacing": 12.0, "max_cases": 10},
            "IS18": {"spacing": 12.0, "max_cases": 10},
        }),
    ),
    "cpu": Profile(
        name="cpu",
        description="the book's embedded default: converged networks in a few minutes per run on a laptop CPU",
        hardware="laptop CPU, 2 cores",
        epochs=120,
        batch_size=2,
        width=0.2,
        lr=3e-3,
        checkpoint_every=10,
        task_overrides=MappingProxyType({
            # 2D phantoms: 160 (128 for training) -- with 40, CE's soft volumes barely followed the cases
            # (held-out R^2 of the expected volume 0.1-0.5 at sigma/R 0.9, see the Controlled-uncertainty chapter)
            "synthetic": {"n_cases": 160, "size": 54},
            "synthetic:3d": {"n_cases": 20, "size": 27},
            "BR18-sample": {"spacing": 4.0, "crop": "foreground"},
            "LIDC": {"max_cases": 800, "crop_size": 64},
            "BR18": {"spacing": 4.0, "crop": "foreground"},
            "IS17": {"spacing": 4.0, "crop": "foreground"},
            "IS18": {"spacing": 4.0, "crop": "foreground"},
        }),
        task_training=MappingProxyType({
            # 3D at 4 mm: whole foreground crops (about 36 x 45 x 36 voxels), 600 steps of batch 2
            **{task: {"epochs": 150, "width": 0.3} for task in ("BR18-sample", "BR18", "IS17", "IS18")},
            "synthetic": {"epochs": 60, "width": 0.5},  # 3840 steps of batch 2
            "synthetic:3d": {"epochs": 30},
            "LIDC": {"epochs": 20, "batch_size": 8, "width": 0.5},
        }),
    ),
    "gpu": Profile(
        name="gpu",
        description="the paper's scale: full width, 2 mm grid, whole images, many epochs, AMP",
        hardware="one CUDA GPU with >= 15 GB (Colab T4 or better)",
        epochs=200,
        batch_size=2,
        width=1.0,
        lr=1e-3,
        checkpoint_every=5,
        task_overrides=MappingProxyType({
            "synthetic": {"n_cases": 100, "size": 54},
            "synthetic:3d": {"n_cases": 100, "size": 81, "radius": 12.0},
            "BR18-sample": {"spacing": 2.0},
            "BR18": {"spacing": 2.0},
            "IS17": {"spacing": 2.0},
            "IS18": {"spacing": 2.0},
        }),
    ),
}

PROFILE_NAMES: tuple[str, ...] = tuple(_PROFILES)


def get_profile(name: str, **overrides: Any) -> Profile:
    """The named profile ("smoke", "cpu" or "gpu"), optionally with training settings overridden."""
    if name not in _PROFILES:
        raise ValueError(f"profile={name!r}: unknown profile; expected one of {', '.join(PROFILE_NAMES)}")
    unknown = sorted(set(overrides) - set(TRAINING_KEYS))
    if unknown:
        raise ValueError(f"training: unknown setting(s) {', '.join(unknown)}; allowed: {', '.join(TRAINING_KEYS)}")
    return replace(_PROFILES[name], **overrides)
