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


def pretrain_transform(img_size: int, min_crop_scale: float = 0.2, color_jitter: float = 0.0
                       ) -> Callable[[Image.Image], torch.Tensor]:
    """The paper's pre-training augmentation (``itpn_pixel/main_pretrain.py``): random resized crop (scale
    0.2-1, bicubic) and a horizontal flip, after colour jitter when ``color_jitter`` (none released);
    output in [0, 1] (each consumer normalises with its own statistics)."""
    jitter = [transforms.ColorJitter(color_jitter, color_jitter, color_jitter)] if color_jitter else []
    return transforms.Compose(jitter + [
        transforms.RandomResizedCrop(img_size, scale=(min_crop_scale, 1.0),
                                     interpolation=transforms.InterpolationMode.BICUBIC),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
    ])


class TwoViewResizedCrop:
    """One random resized crop of an image, resized twice: the student's view at ``size`` with
    ``interpolation`` and the teacher's at ``second_size`` with ``second_interpolation``, as the released
    ``RandomResizedCropAndInterpolationWithTwoPic`` (``itpn_clip/transforms.py``; defaults: crop scale
    0.08-1, aspect 3/4-4/3). The crop is drawn by torchvision's ``RandomResizedCrop.get_params``."""

    def __init__(self, size: int, second_size: int, scale: tuple[float, float] = (0.08, 1.0),
                 ratio: tuple[float, float] = (3 / 4, 4 / 3), interpolation: str = "bicubic",
                 second_interpolation: str = "lanczos"):
        self.size, self.second_size = (size, size), (second_size, second_size)
        self.scale, self.ratio = tuple(scale), tuple(ratio)
        self.interpolation = transforms.InterpolationMode(interpolation)
        self.second_interpolation = transforms.InterpolationMode(second_interpolation)

    def __call__(self, image: Image.Image) -> tuple[Image.Image, Image.Image]:
        box = transforms.RandomResizedCrop.get_params(image, list(self.scale), list(self.ratio))
        return (transforms.functional.resized_crop(image, *box, list(self.size), self.interpolation),
                transforms.functional.resized_crop(image, *box, list(self.second_size), self.second_interpolation))


def _to_tensors(views: tuple[Image.Image, Image.Image]) -> tuple[torch.Tensor, torch.Tensor]:
    return transforms.functional.to_tensor(views[0]), transforms.functional.to_tensor(views[1])


def clip_pretrain_transform(img_size: int, teacher_size: int, min_crop_scale: float = 0.08,
                            color_jitter: float = 0.4, teacher_interpolation: str = "lanczos"
                            ) -> Callable[[Image.Image], tuple[torch.Tensor, torch.Tensor]]:
    """The released iTPN-CLIP augmentation (``itpn_clip/datasets.py``, ``DataAugmentationForiTPN``):
    colour jitter (brightness, contrast, saturation ``color_jitter``), a horizontal flip, then one crop
    (scale ``min_crop_scale``-1) giving the student's ``img_size`` view (bicubic) and the teacher's
    ``teacher_size`` view (``teacher_interpolation``). Both come back in [0, 1]: the student's model
    normalises with its own statistics (Inception 0.5 for iTPN, as the released ``patch_transform``),
    the CLIP teacher with CLIP's."""
    jitter = [transforms.ColorJitter(color_jitter, color_jitter, color_jitter)] if color_jitter else []
    return transforms.Compose(jitter + [
        transforms.RandomHorizontalFlip(),
        TwoViewResizedCrop(img_size, teacher_size, scale=(min_crop_scale, 1.0),
                           second_interpolation=teacher_interpolation),
        _to_tensors,
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


def _stack(images: list[torch.Tensor]) -> torch.Tensor:
    shapes = {tuple(image.shape) for image in images}
    if len(shapes) != 1:
        raise ValueError(f"images of one batch differ in shape: {sorted(shapes)}; give the data set a transform "
                         f"that crops every image to the same size")
    return torch.stack(images)


def collate_images(batch: list[tuple[Any, int]]) -> tuple[torch.Tensor | tuple[torch.Tensor, torch.Tensor], int]:
    """Stack a batch of images, or of (student view, teacher view) pairs into a pair of batches."""
    skipped = sum(skipped for _, skipped in batch)
    if isinstance(batch[0][0], tuple):
        return (_stack([views[0] for views, _ in batch]), _stack([views[1] for views, _ in batch])), skipped
    return _stack([image for image, _ in batch]), skipped
