"""``RandomStateHook``: a killed and resumed mmengine run draws the random numbers an uninterrupted one
would have; ``random_state`` / ``set_random_state`` read and set every generator a training step uses."""
from __future__ import annotations

import random
from typing import Any, Mapping, Optional

import numpy as np
import torch
from mmengine.dist import all_gather_object, get_dist_info
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.registry import HOOKS
from mmengine.runner import Runner


def random_state() -> dict[str, Any]:
    """The state of every generator a training step draws from: Python's ``random``, NumPy's global
    generator (mmcv's transforms), torch's CPU generator and, once CUDA is initialised, every GPU's."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_random_state(state: Mapping[str, Any]) -> None:
    """Put back a ``random_state()``; the GPUs' only when it holds as many as this machine has."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


class _RestoreBeforeNextBatch:
    """Wraps a train loop's data iterator: on the first batch after a resume it lets the iterator build
    its DataLoader iterator (which draws a torch seed for its workers), then puts ``state`` back, then
    reads the batch; every later batch goes straight through."""

    def __init__(self, iterator: Any, state: Mapping[str, Any]) -> None:
        self.iterator, self.state = iterator, state

    def __iter__(self) -> "_RestoreBeforeNextBatch":
        return self

    def __next__(self) -> Any:
        if self.state is not None:
            build = getattr(self.iterator, "_ensure_iterator", None)  # onedl-mmengine builds it lazily
            if build is not None:
                build()
            set_random_state(self.state)
            self.state = None
        return next(self.iterator)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.iterator, name)


@HOOKS.register_module()
class RandomStateHook(Hook):
    """Makes a killed and resumed run draw the same augmentation, dropout and drop-path randomness as an
    uninterrupted one, so it ends with the same weights and metrics.

    mmengine's resume restores the weights, optimizer, schedulers, iteration and seed but not the state
    of the random generators (``Runner.resume``), and validation draws from them too. This hook (ours;
    mmengine has none) keeps validation from touching the training's random state, writes every rank's
    state into each checkpoint (``random_state``, a list by rank) and, after a resume, puts it back at the
    point the uninterrupted run was at when it saved: in an ``IterBasedTrainLoop`` just before the first
    batch after the skipped ones is read, in an ``EpochBasedTrainLoop`` at the start of the next epoch. A
    checkpoint from another world size resumes without it (logged)."""

    priority = "VERY_LOW"

    def __init__(self) -> None:
        self.pending: Optional[Mapping[str, Any]] = None
        self.outside_validation: Optional[Mapping[str, Any]] = None

    def before_save_checkpoint(self, runner: Runner, checkpoint: dict) -> None:
        checkpoint["random_state"] = all_gather_object(random_state())

    def after_load_checkpoint(self, runner: Runner, checkpoint: dict) -> None:
        states = checkpoint.get("random_state")
        rank, world_size = get_dist_info()
        if states is None:
            print_log("the checkpoint holds no random state (written before RandomStateHook): the resumed run "
                      "draws other random numbers than an uninterrupted one", logger="current")
        elif len(states) != world_size:
            print_log(f"the checkpoint's random state is from {len(states)} processes, this run has {world_size}: "
                      f"resuming without it", logger="current")
        else:
            self.pending = states[rank]

    def before_train(self, runner: Runner) -> None:
        loop = runner.train_loop
        if self.pending is not None and hasattr(loop, "dataloader_iterator"):
            loop.dataloader_iterator = _RestoreBeforeNextBatch(loop.dataloader_iterator, self.pending)
            self.pending = None

    def before_train_epoch(self, runner: Runner) -> None:
        if self.pending is not None:  # an epoch-based loop: the checkpoint was saved at the previous epoch's end
            set_random_state(self.pending)
            self.pending = None

    def before_val(self, runner: Runner) -> None:
        self.outside_validation = random_state()

    def after_val(self, runner: Runner) -> None:
        if self.outside_validation is not None:
            set_random_state(self.outside_validation)
            self.outside_validation = None
