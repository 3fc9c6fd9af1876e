"""Transforms of the paper's recipes: timm's for classification, torchvision v2 for detection/segmentation.

Detection/segmentation follow the OpenMMLab configs the paper uses (Mask R-CNN 1×: resize to 1333×800
keeping the ratio + horizontal flip; UPerNet ADE20K: random rescale 0.5–2.0 of 2048×512, 512 crop,
flip, photometric distortion; DOTA: flips on 1024 patches), built from torchvision v2 so boxes,
oriented boxes and masks move with the image.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
from PIL import Image
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, create_transform
from torchvision import tv_tensors
from torchvision.transforms import v2

PER_OBJECT_KEYS = ("labels", "category_ids", "iscrowd", "area", "difficulty")


def build_classification_transform(
    is_train: bool,
    input_size: int = 224,
    *,
    auto_augment: str | None = "rand-m9-mstd0.5-inc1",
    re_prob: float = 0.25,
    re_mode: str = "pixel",
    re_count: int = 1,
    color_jitter: float | None = 0.4,
    scale: tuple[float, float] = (0.08, 1.0),
    hflip: float = 0.5,
    interpolation: str = "bicubic",
    crop_pct: float | None = None,
    mean: Sequence[float] = IMAGENET_DEFAULT_MEAN,
    std: Sequence[float] = IMAGENET_DEFAULT_STD,
) -> Callable[[Any], torch.Tensor]:
    """timm's ImageNet fine-tuning transform (RandomResizedCrop, flip, RandAugment, random erasing).

    Evaluation resizes to ``input_size / crop_pct`` and centre-crops (timm's default ``crop_pct`` when None).
    """
    if is_train:
        return create_transform(
            input_size, is_training=True, auto_augment=auto_augment, re_prob=re_prob, re_mode=re_mode,
            re_count=re_count, color_jitter=color_jitter, scale=scale, hflip=hflip,
            interpolation=interpolation, mean=tuple(mean), std=tuple(std),
        )
    return create_transform(
        input_size, is_training=False, interpolation=interpolation, crop_pct=crop_pct, mean=tuple(mean), std=tuple(std)
    )


# Attributes that set what an augmentation step does (torchvision, timm and the released iTPN transforms).
_TRANSFORM_FIELDS = ("size", "second_size", "scale", "ratio", "interpolation", "second_interpolation", "p", "prob",
                     "brightness", "contrast", "saturation", "hue", "mean", "std", "max_size", "mode", "min_count",
                     "max_count", "num_layers", "magnitude", "magnitude_std", "name", "padding")


_INTERPOLATIONS = ("interpolation", "second_interpolation")
_SAME_STEP = {"MaybeToTensor": "ToTensor"}  # timm's ToTensor that passes tensors through


def _plain(value: Any) -> Any:
    """A JSON-comparable form: interpolation modes by name, tensors and sequences as lists, floats rounded
    through float32 (a Normalize holds its statistics as float32 tensors)."""
    if hasattr(value, "value") and isinstance(getattr(value, "value"), str):  # torchvision InterpolationMode
        return value.value
    if isinstance(value, torch.Tensor):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, float):
        return float(torch.tensor(value, dtype=torch.float32))
    return value


def transform_params(transform: Any) -> list[dict[str, Any]]:
    """The steps of a transform pipeline (``Compose``s flattened) with the parameters that set what
    each does: ``[{"type": class name, "size": ..., "scale": ..., "interpolation": "bicubic", ...}]``;
    RandAugment lists its operations. For comparing a recipe's augmentation with the released one."""
    steps = getattr(transform, "transforms", None)
    if isinstance(steps, (list, tuple)):
        return [step for inner in steps for step in transform_params(inner)]
    name = type(transform).__name__
    params: dict[str, Any] = {"type": _SAME_STEP.get(name, name)}
    for field in _TRANSFORM_FIELDS:
        if hasattr(transform, field):
            value = getattr(transform, field)
            if field in _INTERPOLATIONS and isinstance(value, int):  # a PIL resampling filter
                value = Image.Resampling(value).name.lower()
            params[field] = _plain(value)
    if hasattr(transform, "ops") and isinstance(transform.ops, (list, tuple)):
        params["ops"] = [transform_params(op)[0] for op in transform.ops]
    return [params]


def _per_object(sample: Any) -> tuple[torch.Tensor, ...]:
    target = sample[1]
    return tuple(target[k] for k in PER_OBJECT_KEYS if k in target)


def _to_float(normalize: bool, mean: Sequence[float], std: Sequence[float]) -> list[Any]:
    ops: list[Any] = [v2.ToDtype({tv_tensors.Image: torch.float32, "others": None}, scale=True)]
    if normalize:
        ops.append(v2.Normalize(mean=list(mean), std=list(std)))
    return ops


def build_detection_transform(
    is_train: bool,
    *,
    min_size: int = 800,
    max_size: int = 1333,
    flip_prob: float = 0.5,
    normalize: bool = True,
    mean: Sequence[float] = IMAGENET_DEFAULT_MEAN,
    std: Sequence[float] = IMAGENET_DEFAULT_STD,
) -> v2.Compose:
    """COCO ``(image, target)`` transform: short side to ``min_size`` with the long side at most ``max_size``,
    horizontal flip when training, boxes that became empty removed with their labels and masks."""
    ops: list[Any] = [v2.Resize(size=min_size, max_size=max_size, antialias=True)]
    if is_train:
        ops += [v2.RandomHorizontalFlip(flip_prob), v2.SanitizeBoundingBoxes(labels_getter=_per_object)]
    return v2.Compose(ops + _to_float(normalize, mean, std))


def build_rotated_detection_transform(
    is_train: bool,
    *,
    size: int = 1024,
    flip_prob: float = 0.5,
    normalize: bool = True,
    mean: Sequence[float] = IMAGENET_DEFAULT_MEAN,
    std: Sequence[float] = IMAGENET_DEFAULT_STD,
) -> v2.Compose:
    """DOTA patch ``(image, target)`` transform: resize to ``size``×``size``, horizontal and vertical flips
    when training; oriented boxes (``XYXYXYXY``) follow the image."""
    ops: list[Any] = [v2.Resize(size=(size, size), antialias=True)]
    if is_train:
        ops += [v2.RandomHorizontalFlip(flip_prob), v2.RandomVerticalFlip(flip_prob),
                v2.SanitizeBoundingBoxes(labels_getter=_per_object)]
    return v2.Compose(ops + _to_float(normalize, mean, std))


class _ImageOnly:
    """Applies a transform to the image of an ``(image, mask)`` pair, leaving the mask at full resolution."""

    def __init__(self, transform: Callable[[Any], Any]) -> None:
        self.transform = transform

    def __call__(self, image: Any, mask: Any) -> tuple[Any, Any]:
        return self.transform(image), mask

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.transform!r})"


def build_segmentation_transform(
    is_train: bool,
    crop_size: int = 512,
    *,
    scale: tuple[int, int] = (2048, 512),
    ratio_range: tuple[float, float] = (0.5, 2.0),
    flip_prob: float = 0.5,
    ignore_index: int = 255,
    normalize: bool = True,
    mean: Sequence[float] = IMAGENET_DEFAULT_MEAN,
    std: Sequence[float] = IMAGENET_DEFAULT_STD,
) -> Callable[[Any, Any], tuple[Any, Any]]:
    """ADE20K ``(image, mask)`` transform.

    Training: short side rescaled to ``scale[1]`` × a ratio drawn from ``ratio_range`` (long side capped at
    ``scale[0]`` × the largest ratio), a ``crop_size`` crop (padded with 0 / ``ignore_index``), flip and
    photometric distortion. Evaluation: the image alone is resized to short side ``scale[1]`` (long side at
    most ``scale[0]``); the mask stays at full resolution, so resize predictions to it before scoring.
    """
    long_side, short_side = scale
    if is_train:
        lo, hi = ratio_range
        sizes = sorted({max(1, round(short_side * (lo + (hi - lo) * i / 15))) for i in range(16)})
        ops: list[Any] = [
            v2.RandomShortestSize(min_size=sizes, max_size=round(long_side * hi), antialias=True),
            v2.RandomCrop(crop_size, pad_if_needed=True, fill={tv_tensors.Mask: ignore_index, "others": 0}),
            v2.RandomHorizontalFlip(flip_prob),
            v2.ColorJitter(brightness=32 / 255, contrast=(0.5, 1.5), saturation=(0.5, 1.5), hue=18 / 360),
        ]
        return v2.Compose(ops + _to_float(normalize, mean, std))
    return _ImageOnly(v2.Compose([v2.Resize(size=short_side, max_size=long_side, antialias=True)]
                                 + _to_float(normalize, mean, std)))


def detection_collate(batch: Sequence[tuple[Any, Any]]) -> tuple[list[Any], list[Any]]:
    """Collate ``(image, target)`` samples of different sizes into two lists."""
    images, targets = zip(*batch) if batch else ((), ())
    return list(images), list(targets)
