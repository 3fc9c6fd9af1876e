"""``generate_imagenet`` (a small ImageNet in the folder or the tar layout) and ``shard_imagenet``
(a folder layout into tar shards, for object storage)."""
from __future__ import annotations

import io
import posixpath
import tarfile
import time
from functools import partial
from typing import Any, Callable, Iterable, Iterator, Literal

import numpy as np

from .. import _render
from .._base import resolve_skip
from ...config import COUNT, NON_NEGATIVE, Range
from .._gen import GeneratedData, ImageSize, Whole, check_arguments, empty_target, sample_rng
from ..classes import imagenet_wnids
from ..fs import join, open_fs, read_bytes, write_bytes
from .dataset import ImageNetFolder
from .layout import CLASSES_FILE, SPLITS

# What each argument of generate_imagenet may be (flows.params checks a parameters file against the same).
ARGUMENTS = {"seed": Whole(NON_NEGATIVE), "num_classes": Whole(Range(1, 1000)), "train_per_class": Whole(COUNT),
             "val_per_class": Whole(COUNT), "image_size": ImageSize(16), "samples_per_shard": Whole(COUNT)}


def generated_wnids(num_classes: int) -> list[str]:
    """``num_classes`` real wnids spread over the 1000, in sorted (= class index) order."""
    wnids = imagenet_wnids()
    if not 1 <= num_classes <= len(wnids):
        raise ValueError(f"num_classes must be in 1..{len(wnids)}, got {num_classes}")
    return [wnids[(k * len(wnids)) // num_classes] for k in range(num_classes)]


def _render_object_image(label: int, size: int, rng: np.random.Generator) -> bytes:
    canvas = _render.background(size, size, rng)
    radius = rng.uniform(0.24, 0.42) * size
    cx, cy = rng.uniform(radius, size - radius, 2)
    polygon = _render.shape_polygon(_render.class_style(label).shape, cx, cy, radius, rng.uniform(0, 2 * np.pi))
    y0, x0, mask = _render.rasterize_window(polygon, size, size)
    _render.paint(canvas, y0, x0, mask, _render.class_style(label), rng)
    return _render.encode_image(canvas, "JPEG")


def _generated_files(
    seed: int, wnids: list[str], train_per_class: int, val_per_class: int, image_size: int
) -> Iterator[tuple[str, str, int, bytes]]:
    """Yields ``(split, rel path, label, JPEG bytes)`` for the folder layout."""
    for label, wnid in enumerate(wnids):
        for i in range(train_per_class):
            data = _render_object_image(label, image_size, sample_rng(seed, 0, label, i))
            yield "train", f"train/{wnid}/{wnid}_{i + 1}.JPEG", label, data
    for label, wnid in enumerate(wnids):
        for j in range(val_per_class):
            data = _render_object_image(label, image_size, sample_rng(seed, 1, label, j))
            number = label * val_per_class + j + 1
            yield "val", f"val/{wnid}/ILSVRC2012_val_{number:08d}.JPEG", label, data


def generate_imagenet(
    url: str,
    *,
    seed: int = 0,
    num_classes: int = 10,
    train_per_class: int = 30,
    val_per_class: int = 10,
    image_size: int = 64,
    layout: Literal["folder", "tar"] = "folder",
    samples_per_shard: int = 128,
    overwrite: bool = False,
) -> GeneratedData:
    """Write an ImageNet stand-in: each class is one shape/colour/texture on a noisy background.

    Class folders use real ImageNet wnids (spread over the 1000). ``layout="tar"`` writes the
    sharded-tar layout instead of class folders.
    """
    check_arguments(ARGUMENTS, seed=seed, num_classes=num_classes, train_per_class=train_per_class,
                    val_per_class=val_per_class, image_size=image_size, samples_per_shard=samples_per_shard)
    if layout not in ("folder", "tar"):
        raise ValueError(f"layout must be 'folder' or 'tar', got {layout!r}")
    start = time.perf_counter()
    params = dict(seed=seed, num_classes=num_classes, train_per_class=train_per_class,
                  val_per_class=val_per_class, image_size=image_size, layout=layout)
    if layout == "tar":
        params["samples_per_shard"] = samples_per_shard
    wnids = generated_wnids(num_classes)
    fs, root = empty_target(url, overwrite)
    result = GeneratedData(kind="imagenet" if layout == "folder" else "imagenet_tar", url=url, params=params)
    files = _generated_files(seed, wnids, train_per_class, val_per_class, image_size)
    if layout == "folder":
        for split, rel, label, data in files:
            write_bytes(fs, join(root, rel), data)
            result.samples.append({"split": split, "file": rel, "label": label, "wnid": wnids[label]})
    else:
        by_split: dict[str, list[tuple[str, Callable[[], bytes]]]] = {s: [] for s in SPLITS}
        labels: dict[str, int] = {}
        for split, rel, label, data in files:
            member = rel.split("/", 1)[1]
            by_split[split].append((member, partial(bytes, data)))
            labels[f"{split}/{member}"] = label
        for split, keys in _write_shards(fs, root, wnids, by_split, samples_per_shard, seed).items():
            for key in keys:
                member = key.split(":", 1)[1]
                label = labels[f"{split}/{member}"]
                result.samples.append({"split": split, "file": key, "label": label, "wnid": wnids[label]})
    result.seconds = time.perf_counter() - start
    return result


def _write_tar(fs: Any, path: str, members: list[tuple[str, Callable[[], bytes]]]) -> None:
    """Stream a tar of ``(member name, byte loader)`` to ``path`` (deterministic headers, mtime 0)."""
    fs.makedirs(posixpath.dirname(path), exist_ok=True)
    with fs.open(path, "wb") as handle, tarfile.open(fileobj=handle, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, load in members:
            data = load()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 0
            info.mode = 0o644
            archive.addfile(info, io.BytesIO(data))


def _write_shards(
    fs: Any,
    root: str,
    wnids: list[str],
    by_split: dict[str, list[tuple[str, Callable[[], bytes]]]],
    samples_per_shard: int,
    seed: int,
) -> dict[str, list[str]]:
    """Write ``classes.txt`` and the shards, one at a time; the train split is shuffled (seeded) across shards."""
    if samples_per_shard < 1:
        raise ValueError(f"samples_per_shard must be at least 1, got {samples_per_shard}")
    write_bytes(fs, join(root, CLASSES_FILE), ("\n".join(wnids) + "\n").encode())
    keys: dict[str, list[str]] = {}
    for split, members in by_split.items():
        order = list(range(len(members)))
        if split == "train":
            order = [int(i) for i in np.random.default_rng(seed).permutation(len(members))]
        keys[split] = []
        for shard, first in enumerate(range(0, len(order), samples_per_shard)):
            chunk = [members[i] for i in order[first : first + samples_per_shard]]
            rel = f"{split}/{split}-{shard:06d}.tar"
            _write_tar(fs, join(root, rel), chunk)
            keys[split].extend(f"{rel}:{name}" for name, _ in chunk)
    return keys


def shard_imagenet(
    src_url: str,
    dst_url: str,
    *,
    samples_per_shard: int = 1000,
    seed: int = 0,
    skip: Iterable[str] | None = None,
    overwrite: bool = False,
) -> dict[str, int]:
    """Pack the class-folder layout at ``src_url`` into the sharded-tar layout at ``dst_url``.

    Image bytes are copied unchanged; samples in ``skip`` (default: the source manifest's skipped list)
    are left out. Returns the number of samples written per split.
    """
    classes = ImageNetFolder.find_classes(src_url)
    src_fs, src_root = open_fs(src_url)
    dst_fs, dst_root = empty_target(dst_url, overwrite)
    exclude = resolve_skip(src_url, skip)
    by_split: dict[str, list[tuple[str, Callable[[], bytes]]]] = {}
    for split in SPLITS:
        dataset = ImageNetFolder(src_url, split, classes=classes, skip=exclude)
        by_split[split] = [
            (rel.split("/", 1)[1], partial(read_bytes, src_fs, join(src_root, rel))) for rel, _ in dataset.samples
        ]
    keys = _write_shards(dst_fs, dst_root, classes, by_split, samples_per_shard, seed)
    return {split: len(v) for split, v in keys.items()}
