"""A resumable order of training samples, shared by pre-training and fine-tuning.

The order of an epoch is a function of ``(seed, epoch)``, each sample's augmentation randomness a
function of ``(seed, epoch, position)`` and each micro-step's model randomness (drop path, mixup) a
function of ``(seed, step, micro-step, rank)``. A checkpoint therefore needs only the seed and the
step: a run resumed at any update sees exactly the images, crops, flips and drop-path masks an
uninterrupted run would have seen, on any number of processes.
"""
from __future__ import annotations

import random
from typing import Any, Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler


def sample_seed(seed: int, epoch: int, position: int) -> int:
    return (seed * 1_000_003 + epoch * 7_919 + position * 104_729) % (2 ** 31)


def step_seed(seed: int, step: int, micro: int, rank: int) -> int:
    return (seed * 1_000_003 + step * 9_973 + micro * 101 + rank * 7) % (2 ** 31)


def updates_per_epoch(num_samples: int, batch_size: int, accum_steps: int, world_size: int, source: str) -> int:
    """Whole updates in one pass over ``num_samples`` (the last, partial global batch is dropped); an
    error naming ``source`` when there is not even one."""
    global_batch = batch_size * accum_steps * world_size
    if num_samples < global_batch:
        raise ValueError(f"{source} has {num_samples} images, fewer than one global batch of {global_batch} "
                         f"(batch_size {batch_size} x accum_steps {accum_steps} x {world_size} processes); lower "
                         f"batch_size or accum_steps")
    return num_samples // global_batch


def seed_all(seed: int) -> None:
    """Seed every generator augmentations and models draw from: Python's (timm, torchvision transforms),
    NumPy's (timm RandAugment's choice of operations, Mixup) and torch's (drop path, random erasing)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class EpochSampler(Sampler):
    """This process's share of each global batch, from update ``start_update`` of ``epoch`` on.

    The global batch of update ``u`` is ``perm[u * G:(u + 1) * G]`` of the epoch's permutation
    (``G = batch_size * accum_steps * world_size``); micro-step ``m`` takes the ``m``-th slice of
    ``batch_size * world_size`` and rank ``r`` the ``r``-th ``batch_size`` of that. So the images
    of an update do not depend on how the global batch is split over processes and micro-steps.
    Yields ``(index, seed)`` pairs for ``SeededSamples`` (or any dataset indexed that way).
    """

    def __init__(self, num_samples: int, batch_size: int, accum_steps: int, rank: int, world_size: int,
                 seed: int, epoch: int, start_update: int = 0):
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.accum_steps = accum_steps
        self.rank = rank
        self.world_size = world_size
        self.seed = seed
        self.epoch = epoch
        self.start_update = start_update
        self.global_batch = batch_size * accum_steps * world_size
        self.updates_per_epoch = num_samples // self.global_batch

    def __len__(self) -> int:
        return max(self.updates_per_epoch - self.start_update, 0) * self.accum_steps * self.batch_size

    def __iter__(self) -> Iterator[tuple[int, int]]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(self.num_samples, generator=generator).tolist()
        micro = self.batch_size * self.world_size
        for update in range(self.start_update, self.updates_per_epoch):
            for step in range(self.accum_steps):
                first = update * self.global_batch + step * micro + self.rank * self.batch_size
                for position in range(first, first + self.batch_size):
                    yield order[position], sample_seed(self.seed, self.epoch, position)


class SeededSamples(Dataset):
    """Indexed by ``(index, seed)`` from ``EpochSampler``: seeds every generator with ``seed``, then
    returns ``source[index]`` (whose transform draws its randomness from them)."""

    def __init__(self, source: Dataset):
        self.source = source

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, item: tuple[int, int]) -> Any:
        index, seed = item
        seed_all(seed)
        return self.source[index]
