"""Images for pre-training: the augmentation and a skip-and-count wrapper over any image dataset,
read in the resumable order of ``itpn.data.order``."""
from __future__ import annotations

import logging
from typing import Any, Callable, Optional

import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import transforms

from itpn.data.errors import DataError
from itpn.data.order import seed_all

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

    Indexed by ``(index, seed)`` from ``EpochSampler``: seeds every generator for the augmentation,
    then loads ``index``; an unreadable sample is replaced by the next readable
    one and counted, so ``__getitem__`` returns ``(image, unreadable_count)``.
    """

    def __init__(self, source: Dataset, transform: Optional[Callable[[Any], torch.Tensor]] = None):
        self.source = source
        self.transform = transform

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, item: tuple[int, int]) -> tuple[torch.Tensor, int]:
        index, seed = item
        seed_all(seed)
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
