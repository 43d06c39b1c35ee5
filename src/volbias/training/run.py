"""run(config, out_dir): train one fold with one loss schedule, resumably, and write its results.

Run directory (written atomically, DONE last)::

    config.yaml          the run's config
    resolved.yaml        the data options and training settings the config means under its profile
    checkpoints/last.pt  model, optimiser, scheduler, scaler, random states, epoch, log (weights_only)
    train_log.csv        one row per epoch: epoch, stage, loss, train_loss, train_dice, soft_volume_ratio,
                         null_loss, null_dice (all measured on the epoch's own training batches; "null": a
                         constant map at the training prior), lr (at the epoch's start), seconds
    probabilities.npz    validation probability maps (float16, masked, key = case id)
    cases.csv            one row per validation (and test) case, columns run_files.CASE_COLUMNS
    summary.json         timing and throughput of the run, and the convergence rule's verdict at training
                         time (readers recompute it from train_log.csv: run_files.read_run)
    DONE                 marker: the run is complete

A run killed at any moment restarts from ``checkpoints/last.pt`` and, on CPU with the same seed, ends with
the same metrics as an uninterrupted run: all randomness after initialisation comes from one generator
whose state is checkpointed at epoch boundaries.
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import pandas as pd
import torch
import yaml
from tqdm import tqdm

from ..models import ModelSpec
from ..profiles import TRAINING_KEYS, Profile
from .batches import TrainingSet, build_training_set, iterate_batches, plan_epoch
from .checkpoint import load_checkpoint, restore_rng_states, rng_states, save_checkpoint, write_text_atomic
from .config import ConfigError, RunConfig
from .convergence import assess as assess_convergence
from .evaluation import evaluate, write_probabilities, write_table
from .loop import amp_dtype_for, clamp_prior, make_scaler, train_epoch
from .run_files import DONE
from .schedules import Stage, build_loss, build_optimizer, plan_stages, stage_index

CHECKPOINT = Path("checkpoints") / "last.pt"
KILL_AT_ENV = "VOLBIAS_TEST_KILL_AT"
"""Test hook (tests/test_training_resume.py), unset in normal use: ``epoch:<n>`` kills the run with SIGKILL
right after epoch n (and its checkpoint, when one is due), ``before-done`` right before DONE is written."""


def _kill_if_asked(point: str) -> None:
    """SIGKILL this process when ``$VOLBIAS_TEST_KILL_AT`` names ``point`` (see :data:`KILL_AT_ENV`)."""
    if os.environ.get(KILL_AT_ENV) == point:
        os.kill(os.getpid(), signal.SIGKILL)


@dataclass(frozen=True)
class RunResult:
    """Where a run's outputs are and whether this call trained (False: it was already complete)."""

    out_dir: Path
    config: RunConfig
    trained: bool

    @property
    def cases_csv(self) -> Path:
        return self.out_dir / "cases.csv"

    @property
    def train_log(self) -> Path:
        return self.out_dir / "train_log.csv"

    @property
    def probabilities(self) -> Path:
        return self.out_dir / "probabilities.npz"

    @property
    def summary(self) -> dict[str, Any]:
        """Timing and throughput recorded by the run (summary.json)."""
        return json.loads((self.out_dir / "summary.json").read_text())

    def cases(self) -> pd.DataFrame:
        """The cases table."""
        return pd.read_csv(self.cases_csv)


def resolve_device(name: str) -> torch.device:
    """``"auto"`` means CUDA when available, else CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device={name!r}: CUDA is not available on this machine")
        if device.index is None:  # compare equal to the devices tensors report
            device = torch.device("cuda", torch.cuda.current_device())
    return device


def is_complete(out_dir: str | os.PathLike[str]) -> bool:
    """True when ``out_dir`` holds a finished run."""
    return (Path(out_dir) / DONE).is_file()


@contextmanager
def deterministic(enabled: bool) -> Iterator[None]:
    """Use deterministic algorithms inside the block (restoring the previous setting afterwards)."""
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(enabled or previous)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous)


def seed_everything(seed: int) -> torch.Generator:
    """Seed torch, numpy and random; return the generator that drives batch sampling."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)
    return torch.Generator().manual_seed(seed + 1)


def resolved_settings(config: RunConfig) -> dict[str, Any]:
    """What the config means once its profile is applied: the data options and the training settings."""
    profile = config.resolved_profile()
    training = {key: getattr(profile, key) for key in TRAINING_KEYS}
    training = {key: list(value) if isinstance(value, tuple) else value for key, value in training.items()}
    return {"task_options": config.resolved_task_options(), "training": training}


def _check_out_dir(config: RunConfig, out_dir: Path) -> None:
    saved = out_dir / "config.yaml"
    if saved.is_file():
        previous = yaml.safe_load(saved.read_text())
        if previous != config.to_dict():
            raise ConfigError(f"{out_dir}: holds a run with a different config; use another --out directory")
    resolved = out_dir / "resolved.yaml"
    if resolved.is_file() and yaml.safe_load(resolved.read_text()) != resolved_settings(config):
        raise ConfigError(f"{out_dir}: holds a run made with other profile settings (the profile changed since); "
                          "delete it or use another --out directory")


def _load_data(config: RunConfig) -> Any:
    from ..data import load_task

    return load_task(config.task, **config.resolved_task_options())


def run(config: RunConfig | Mapping[str, Any] | str | os.PathLike[str], out_dir: str | os.PathLike[str],
        progress: bool = False) -> RunResult:
    """Train ``config`` into ``out_dir`` (resuming from a checkpoint there) and write its results."""
    if not isinstance(config, RunConfig):
        config = RunConfig.from_dict(config) if isinstance(config, Mapping) else RunConfig.from_yaml(config)
    out_dir = Path(out_dir)
    _check_out_dir(config, out_dir)
    if is_complete(out_dir):
        return RunResult(out_dir, config, trained=False)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out_dir / "config.yaml", config.to_yaml())
    write_text_atomic(out_dir / "resolved.yaml", yaml.safe_dump(resolved_settings(config), sort_keys=False))
    profile = config.resolved_profile()
    device = resolve_device(config.device)
    with deterministic(device.type == "cpu"):
        _train_and_evaluate(config, profile, device, out_dir, progress)
    _kill_if_asked("before-done")
    write_text_atomic(out_dir / DONE, "complete\n")
    return RunResult(out_dir, config, trained=True)


@dataclass
class TrainingSetup:
    """What a run trains: its data, the initialised network, the stacked training set and the loss stages.

    :func:`prepare_training` makes it for :func:`run` and for the training benchmark alike, so that both see
    the same network and the same batches.
    """

    config: RunConfig
    profile: Profile
    device: torch.device
    generator: torch.Generator  # drives the batch plans (seeded)
    task: Any  # the loaded TaskData
    val_cases: list[Any]
    model: torch.nn.Module
    train: TrainingSet
    prior: float  # foreground fraction of the training targets
    stages: list[Stage]
    amp_dtype: torch.dtype | None

    @property
    def steps_per_epoch(self) -> int:
        """Batches per epoch."""
        return -(-len(self.train) // self.profile.batch_size)

    @property
    def weight_decay(self) -> float:
        """The L2 factor (none for the IS18 variant, as in the authors' models)."""
        return 0.0 if self.config.task == "IS18" else self.profile.weight_decay

    def stage_objects(self, stage: Stage) -> tuple[Any, ...]:
        """Loss, optimiser, learning-rate schedule and gradient scaler of one stage (fresh optimiser state)."""
        optimizer, scheduler = build_optimizer(self.model, self.profile.lr, self.weight_decay,
                                               self.profile.lr_schedule, stage.epochs, self.steps_per_epoch)
        return build_loss(stage), optimizer, scheduler, make_scaler(self.device, self.amp_dtype)


def prepare_training(config: RunConfig, profile: Profile, device: torch.device) -> TrainingSetup:
    """Seed everything, load the data, build and initialise the network and stack the training set."""
    generator = seed_everything(config.seed)
    task = _load_data(config)
    train_cases, val_cases = task.split(config.fold)
    variant = "is18" if config.task == "IS18" else "default"
    spec = ModelSpec(train_cases[0].label.ndim, train_cases[0].image.shape[0], variant, profile.width)
    model = spec.build().to(device)  # initialised from the seeded global generator
    amp_dtype = amp_dtype_for(device, profile.amp)
    train = build_training_set(train_cases, device, patch_size=profile.patch_size,
                               half=amp_dtype is not None, target_mode=profile.targets)
    prior = train.foreground_fraction()
    if profile.prior_init:
        model.set_output_prior(clamp_prior(prior))
    stages = plan_stages(config.loss, config.loss_options, profile.epochs, profile.pretrain_fraction)
    return TrainingSetup(config, profile, device, generator, task, val_cases, model, train, prior, stages, amp_dtype)


def _train_and_evaluate(config: RunConfig, profile: Profile, device: torch.device, out_dir: Path,
                        progress: bool) -> None:
    started = time.perf_counter()
    setup = prepare_training(config, profile, device)
    generator, task, val_cases, model, train = (setup.generator, setup.task, setup.val_cases, setup.model,
                                                setup.train)
    prior, stages, amp_dtype, stage_objects = setup.prior, setup.stages, setup.amp_dtype, setup.stage_objects

    checkpoint_path = out_dir / CHECKPOINT
    log: list[dict[str, Any]] = []
    epoch, current = 0, 0
    loss_fn, optimizer, scheduler, scaler = stage_objects(stages[0])
    if checkpoint_path.is_file():
        state = load_checkpoint(checkpoint_path)
        epoch, log = int(state["epoch"]), list(state["log"])
        model.load_state_dict(state["model"])
        current = int(state["stage"])
        if current != 0:
            loss_fn, optimizer, scheduler, scaler = stage_objects(stages[current])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        restore_rng_states(state["rng"], generator)

    train_seconds = 0.0
    steps_done = 0
    bar = tqdm(range(epoch, profile.epochs), desc=config.run_name(), initial=epoch, total=profile.epochs,
               disable=not progress, leave=False)
    for epoch in bar:
        index = stage_index(stages, epoch)
        if index != current:
            current = index
            loss_fn, optimizer, scheduler, scaler = stage_objects(stages[current])
        lr = float(optimizer.param_groups[0]["lr"])  # at the epoch's first step
        tick = time.perf_counter()
        plan = plan_epoch(train, generator)
        batches = iterate_batches(train, plan, profile.batch_size)
        stats = train_epoch(model, loss_fn, optimizer, scheduler, scaler, batches, device, amp_dtype, prior)
        loss_value, steps = float(stats.loss), stats.steps  # one synchronisation per epoch
        seconds = time.perf_counter() - tick
        train_seconds += seconds
        steps_done += steps
        log.append({"epoch": epoch + 1, "stage": current, "loss": stages[current].loss, "train_loss": loss_value,
                    "train_dice": float(stats.dice), "soft_volume_ratio": float(stats.soft_volume_ratio),
                    "null_loss": float(stats.null_loss), "null_dice": float(stats.null_dice),
                    "lr": lr, "seconds": seconds})
        bar.set_postfix(loss=f"{loss_value:.4f}")
        finished = epoch + 1 == profile.epochs
        if finished or (epoch + 1) % profile.checkpoint_every == 0:
            save_checkpoint(checkpoint_path, {
                "epoch": epoch + 1, "stage": current, "log": log, "config": config.to_dict(),
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
                "rng": rng_states(generator)})
            write_table(out_dir / "train_log.csv", pd.DataFrame(log))
        _kill_if_asked(f"epoch:{epoch + 1}")
        if profile.max_train_seconds is not None and train_seconds >= profile.max_train_seconds:
            break
    bar.close()

    convergence = assess_convergence(pd.DataFrame(log), stages[-1].loss)
    run_columns = {"task": config.task, "loss": config.loss, "fold": config.fold, "seed": config.seed,
                   "profile": config.profile}
    tick = time.perf_counter()
    probs, table = evaluate(model, val_cases, device, amp_dtype, run_columns, task.test)
    eval_seconds = time.perf_counter() - tick
    write_probabilities(out_dir / "probabilities.npz", probs)
    write_table(out_dir / "train_log.csv", pd.DataFrame(log))
    write_table(out_dir / "cases.csv", table)
    voxels_per_sample = int(np.prod(train.sample_shape))
    summary = {
        "device": str(device), "amp": str(amp_dtype).replace("torch.", "") if amp_dtype else "off",
        "epochs_completed": len(log), "n_train": len(train), "n_val": len(val_cases),
        "train_shape": list(train.sample_shape), "data_on_device": train.images.device == device,
        "steps_this_call": steps_done, "train_seconds_this_call": train_seconds,
        "steps_per_second": steps_done / train_seconds if train_seconds else None,
        "voxels_per_second": (steps_done * profile.batch_size * voxels_per_sample / train_seconds
                              if train_seconds else None),
        "eval_seconds": eval_seconds, "wall_seconds_this_call": time.perf_counter() - started,
        "converged": convergence.converged, "convergence": convergence.reason,
        "peak_gpu_memory_gb": (torch.cuda.max_memory_allocated(device) / 1e9 if device.type == "cuda" else None),
    }
    write_text_atomic(out_dir / "summary.json", json.dumps(summary, indent=2))
