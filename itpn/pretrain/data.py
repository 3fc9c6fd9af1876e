"""Images for pre-training: a skip-and-count wrapper over any image dataset and a resumable order.

The order of samples is a function of ``(seed, epoch)`` and augmentation randomness a function of
``(seed, epoch, position)``, so a run resumed at any update sees exactly the images, crops and
flips an uninterrupted run would have seen, on any number of processes.
"""
from __future__ import annotations

import logging
import random
from typing import Any, Callable, Iterator, Optional

import torch
from PIL import Image
from torch.utils.data import Dataset, Sampler
from torchvision import transforms

from itpn.data.errors import DataError

log = logging.getLogger(__name__)

# What a decoder raises on a truncated or foreign file (PIL raises OSError subclasses and
# SyntaxError; the project's datasets raise DataError in strict mode).
UNREADABLE = (OSError, ValueError, SyntaxError, DataError)


def pretrain_transform(img_size: int, min_crop_scale: float = 0.2) -> Callable[[Image.Image], torch.Tensor]:
    """The paper's pre-training augmentation: random resized crop (scale 0.2-1, bicubic) and a
    horizontal flip; output in [0, 1] (each consumer normalises with its own statistics)."""
    return transforms.Compose([
        transforms.RandomResizedCrop(img_size, scale=(min_crop_scale, 1.0),
                                     interpolation=transforms.InterpolationMode.BICUBIC),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
    ])


class SkipUnreadable(Dataset):
    """Wraps a dataset of images (or ``(image, label)`` pairs, labels ignored).

    Indexed by ``(index, seed)`` from ``EpochSampler``: seeds Python's and torch's RNG for the
    augmentation, then loads ``index``; an unreadable sample is replaced by the next readable
    one and counted, so ``__getitem__`` returns ``(image, unreadable_count)``.
    """

    def __init__(self, source: Dataset, transform: Optional[Callable[[Any], torch.Tensor]] = None):
        self.source = source
        self.transform = transform

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, item: tuple[int, int]) -> tuple[torch.Tensor, int]:
        index, seed = item
        random.seed(seed)
        torch.manual_seed(seed)
        size = len(self.source)
        for attempt in range(size):
            position = (index + attempt) % size
            try:
                sample = self.source[position]
            except UNREADABLE as error:
                log.warning("skipping unreadable image %d: %s", position, error)
                continue
            image = sample[0] if isinstance(sample, (tuple, list)) else sample
            if self.transform is not None and not isinstance(image, torch.Tensor):
                image = self.transform(image)
            return image, attempt
        raise RuntimeError(f"none of the {size} images of the data set can be read")


def collate_images(batch: list[tuple[torch.Tensor, int]]) -> tuple[torch.Tensor, int]:
    images = [image for image, _ in batch]
    shapes = {tuple(image.shape) for image in images}
    if len(shapes) != 1:
        raise ValueError(f"images of one batch differ in shape: {sorted(shapes)}; give the data set a transform "
                         f"that crops every image to the same size")
    return torch.stack(images), sum(skipped for _, skipped in batch)


def sample_seed(seed: int, epoch: int, position: int) -> int:
    return (seed * 1_000_003 + epoch * 7_919 + position * 104_729) % (2 ** 31)


class EpochSampler(Sampler):
    """This process's share of each global batch, from update ``start_update`` of ``epoch`` on.

    The global batch of update ``u`` is ``perm[u * G:(u + 1) * G]`` of the epoch's permutation
    (``G = batch_size * accum_steps * world_size``); micro-step ``m`` takes the ``m``-th slice of
    ``batch_size * world_size`` and rank ``r`` the ``r``-th ``batch_size`` of that. So the images
    of an update do not depend on how the global batch is split over processes and micro-steps.
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
        return (self.updates_per_epoch - self.start_update) * self.accum_steps * self.batch_size

    def __iter__(self) -> Iterator[tuple[int, int]]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(self.num_samples, generator=generator).tolist()
        micro = self.batch_size * self.world_size
        for update in range(self.start_update, self.updates_per_epoch):
            for step in range(self.accum_steps):
                first = update * self.global_batch + step * micro + self.rank * self.batch_size
                for position in range(first, first + self.batch_size):
                    yield order[position], sample_seed(self.seed, self.epoch, position)
