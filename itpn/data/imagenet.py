"""ImageNet-1K: class-folder layout, sharded-tar layout, generator, validators and datasets.

Folder layout (``url``)::

    train/<wnid>/<name>.JPEG
    val/<wnid>/<name>.JPEG

Sharded-tar layout, for object storage (each member is ``<wnid>/<name>.JPEG``)::

    classes.txt               one wnid per line; line i is class index i
    train/train-000000.tar ...
    val/val-000000.tar ...
"""

from __future__ import annotations

import io
import posixpath
import tarfile
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, Callable, Iterable, Iterator, Literal

import numpy as np
from PIL import Image

from . import _render
from ._base import RobustDataset, resolve_skip
from ._check import IMAGE_EXTENSIONS, Checker, decode_image
from ._gen import GeneratedData, check_size, empty_target, sample_rng
from .classes import imagenet_wnids
from .errors import CorruptImageError, LayoutError, ValidationReport
from .fs import display, join, list_dirs, list_files, open_fs, read_bytes, write_bytes

SPLITS = ("train", "val")
CLASSES_FILE = "classes.txt"
STANDARD_COUNTS = {"train": 1_281_167, "val": 50_000}


def _is_image(rel: str) -> bool:
    return rel.lower().endswith(IMAGE_EXTENSIONS)


def _to_rgb(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as image:
        return image.convert("RGB")


# ------------------------------------------------------------------------------------------------------
# generator
# ------------------------------------------------------------------------------------------------------
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
    check_size("image_size", image_size, 16)
    if train_per_class < 1 or val_per_class < 1:
        raise ValueError("train_per_class and val_per_class must be at least 1")
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


# ------------------------------------------------------------------------------------------------------
# datasets
# ------------------------------------------------------------------------------------------------------
class ImageNetFolder(RobustDataset):
    """``<url>/<split>/<wnid>/*.JPEG`` as ``(image, label)``; labels index the sorted train class folders.

    ``transform`` gets a PIL RGB image (see :func:`build_classification_transform`). Samples listed in
    ``skip`` (default: the manifest's skipped list) are left out; unreadable ones are skipped at run time.
    ``per_class``: keep only the first ``per_class`` images of each class in sorted file order (a fixed
    labelled subset, the same for every run; a class with fewer keeps all it has). ``None``: all.
    """

    def __init__(
        self,
        url: str,
        split: str = "train",
        transform: Callable[[Image.Image], Any] | None = None,
        *,
        classes: list[str] | None = None,
        skip: Iterable[str] | None = None,
        strict: bool = False,
        per_class: int | None = None,
    ) -> None:
        if per_class is not None and per_class < 1:
            raise ValueError(f"per_class must be at least 1 (or None for every image), got {per_class}")
        super().__init__(url, strict=strict)
        self.split = split
        self.transform = transform
        self.classes = list(classes) if classes is not None else self.find_classes(url)
        self.class_to_idx = {wnid: i for i, wnid in enumerate(self.classes)}
        exclude = resolve_skip(url, skip)
        files = sorted(list_files(self.fs, join(self.root, split)))
        if not files:
            raise LayoutError(f"no files in split {split!r}", file=display(url, split),
                              fix="point the URL at the folder holding train/ and val/")
        self.samples: list[tuple[str, int]] = []
        for rel in files:
            parts = rel.split("/")
            key = f"{split}/{rel}"
            if len(parts) != 2 or not _is_image(rel) or key in exclude or parts[0] not in self.class_to_idx:
                continue
            self.samples.append((key, self.class_to_idx[parts[0]]))
        if per_class is not None:
            seen: dict[int, int] = {}
            subset = []
            for key, label in self.samples:
                seen[label] = seen.get(label, 0) + 1
                if seen[label] <= per_class:
                    subset.append((key, label))
            self.samples = subset
        self.targets = [label for _, label in self.samples]

    @staticmethod
    def find_classes(url: str) -> list[str]:
        """The sorted class folders of ``train/`` (the label space of every split)."""
        fs, root = open_fs(url)
        files = list_files(fs, join(root, "train"))
        if not files:
            raise LayoutError("no train/ folder with images", file=display(url, "train"),
                              fix="point the URL at the folder holding train/<wnid>/ and val/<wnid>/")
        return sorted({rel.split("/")[0] for rel in files if rel.count("/") == 1})

    def __len__(self) -> int:
        return len(self.samples)

    def _key(self, index: int) -> str:
        return self.samples[index][0]

    def _load(self, index: int) -> tuple[Image.Image, int]:
        rel, label = self.samples[index]
        return _to_rgb(read_bytes(self.fs, self.path(rel))), label

    def _finish(self, sample: tuple[Image.Image, int]) -> tuple[Any, int]:
        image, label = sample
        return (self.transform(image) if self.transform else image), label


class ImageNetTarShards(RobustDataset):
    """The sharded-tar layout as ``(image, label)``; members are read by byte range, so any fsspec URL works.

    Sample keys (for ``skip`` and ``skipped``) are ``<split>/<shard>.tar:<wnid>/<name>``; a shard key
    leaves out the whole shard.
    """

    def __init__(
        self,
        url: str,
        split: str = "train",
        transform: Callable[[Image.Image], Any] | None = None,
        *,
        skip: Iterable[str] | None = None,
        strict: bool = False,
    ) -> None:
        super().__init__(url, strict=strict)
        self.split = split
        self.transform = transform
        self.classes = read_classes_file(url)
        self.class_to_idx = {wnid: i for i, wnid in enumerate(self.classes)}
        exclude = resolve_skip(url, skip)
        shards = sorted(rel for rel in list_files(self.fs, join(self.root, split)) if rel.endswith(".tar"))
        if not shards:
            raise LayoutError(f"no .tar shards in split {split!r}", file=display(url, split),
                              fix="write shards with shard_imagenet() or generate_imagenet(layout='tar')")
        self.samples: list[tuple[str, str, int, int, int]] = []
        for shard in shards:
            shard_rel = f"{split}/{shard}"
            if shard_rel in exclude:
                continue
            try:
                with self.fs.open(self.path(shard_rel), "rb") as handle, tarfile.open(fileobj=handle, mode="r:") as tar:
                    members = [m for m in tar if m.isfile()]
            except (OSError, tarfile.TarError) as exc:
                if strict:
                    raise CorruptImageError(f"archive cannot be read: {exc}", file=display(url, shard_rel),
                                            fix="re-copy the shard or rebuild it with shard_imagenet()") from exc
                self.skipped.append(shard_rel)
                continue
            for member in members:
                wnid = member.name.split("/", 1)[0]
                key = f"{shard_rel}:{member.name}"
                if key in exclude or wnid not in self.class_to_idx or not _is_image(member.name):
                    continue
                self.samples.append((shard_rel, member.name, self.class_to_idx[wnid], member.offset_data, member.size))
        self.targets = [s[2] for s in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def _key(self, index: int) -> str:
        shard, name = self.samples[index][:2]
        return f"{shard}:{name}"

    def _load(self, index: int) -> tuple[Image.Image, int]:
        shard, _, label, offset, size = self.samples[index]
        data = self.fs.cat_file(self.path(shard), start=offset, end=offset + size)
        return _to_rgb(data), label

    def _finish(self, sample: tuple[Image.Image, int]) -> tuple[Any, int]:
        image, label = sample
        return (self.transform(image) if self.transform else image), label


def read_classes_file(url: str) -> list[str]:
    fs, root = open_fs(url)
    path = join(root, CLASSES_FILE)
    if not fs.exists(path):
        raise LayoutError(f"no {CLASSES_FILE}", file=display(url, CLASSES_FILE),
                          fix="write one wnid per line (line i = class index i), e.g. with shard_imagenet()")
    return [line.strip() for line in read_bytes(fs, path).decode().splitlines() if line.strip()]


# ------------------------------------------------------------------------------------------------------
# validators
# ------------------------------------------------------------------------------------------------------
def _check_class_names(chk: Checker, classes: list[str], where: str) -> None:
    known = set(imagenet_wnids())
    for wnid in classes:
        if wnid not in known:
            chk.add("UnknownClassError", where, f"class {wnid!r} is not an ImageNet-1K wnid",
                    "rename the folder to its wnid ('n' and 8 digits) unless this is a custom subset", severity="warning")


def _check_standard_counts(chk: Checker, classes: list[str]) -> None:
    if len(classes) != 1000:
        return
    for split, expected in STANDARD_COUNTS.items():
        found = chk.report.counts.get(f"{split}/images", 0)
        if found != expected:
            chk.add("LayoutError", split, f"{found} images, the full ImageNet-1K {split} split has {expected}",
                    "check that the copy is complete", severity="warning")


def validate_imagenet(url: str, *, strict: bool = False, workers: int | None = None) -> ValidationReport:
    chk = Checker("imagenet", url, workers)
    for split in SPLITS:
        if not chk.has_dir(split):
            chk.add("LayoutError", split, f"no {split}/ folder with images",
                    f"put the {split} images under {split}/<wnid>/", severity="fatal")
    if chk.report.fatal:
        return chk.finish(strict)
    train_classes = sorted({rel.split("/")[1] for rel in chk.under("train") if rel.count("/") == 2})
    chk.report.classes = train_classes
    _check_class_names(chk, train_classes, "train")
    all_images: list[str] = []
    for split in SPLITS:
        images: list[str] = []
        for rel in chk.under(split):
            if rel.count("/") != 2:
                chk.add("LayoutError", rel, "file is not inside a class folder and is ignored",
                        f"move it to {split}/<wnid>/ or delete it", severity="warning")
            elif not _is_image(rel):
                chk.add("LayoutError", rel, "not an image file and is ignored", "delete it", severity="warning")
            elif rel.split("/")[1] not in train_classes:
                chk.add("UnknownClassError", rel, f"class folder {rel.split('/')[1]!r} does not exist in train/",
                        "add the class to train/ or remove this folder", sample=rel, split=split)
            else:
                images.append(rel)
        per_class = {wnid: 0 for wnid in train_classes}
        with_images = {rel.split("/")[1] for rel in chk.under(split) if rel.count("/") == 2 and _is_image(rel)}
        for folder in list_dirs(chk.fs, join(chk.root, split)):
            if folder not in with_images:
                chk.add("LayoutError", f"{split}/{folder}", "class folder holds no image: readers that number the "
                        "class folders (torchvision's ImageFolder) and readers that number the classes of the images "
                        "(timm's, this project's) give different class ids, and so do splits",
                        f"add its images or delete the folder {split}/{folder} in every split")
        for rel, decoded in chk.decode_images(images, split):
            if decoded is not None:
                per_class[rel.split("/")[1]] += 1
        for wnid, count in per_class.items():
            if count == 0:
                chk.add("LayoutError", f"{split}/{wnid}", "class folder holds no readable image",
                        "add images or remove the class from every split", severity="warning")
        chk.report.counts[f"{split}/images"] = sum(per_class.values())
        chk.report.class_counts[split] = per_class
        all_images.extend(images)
        if not sum(per_class.values()):
            chk.add("LayoutError", split, f"split {split!r} has no readable image",
                    f"put images under {split}/<wnid>/", severity="fatal")
    _check_standard_counts(chk, train_classes)
    chk.report_duplicate_contents(all_images)
    return chk.finish(strict)


def validate_imagenet_tar(url: str, *, strict: bool = False, workers: int | None = None) -> ValidationReport:
    chk = Checker("imagenet_tar", url, workers)
    if CLASSES_FILE not in chk.files:
        chk.add("LayoutError", CLASSES_FILE, f"no {CLASSES_FILE}",
                "write one wnid per line (line i = class index i)", severity="fatal")
        return chk.finish(strict)
    lines = chk.read(CLASSES_FILE).decode(errors="replace").splitlines()
    classes: list[str] = []
    for number, line in enumerate(lines, 1):
        wnid = line.strip()
        if not wnid:
            continue
        if wnid in classes:
            chk.add("DuplicateError", CLASSES_FILE, f"class {wnid!r} listed twice",
                    "list every class once", record=f"line {number}", severity="fatal")
        classes.append(wnid)
    chk.report.classes = classes
    _check_class_names(chk, classes, CLASSES_FILE)
    known = set(classes)
    for split in SPLITS:
        shards = [rel for rel in chk.under(split) if rel.endswith(".tar")]
        if not shards:
            chk.add("LayoutError", split, f"no .tar shards under {split}/",
                    "write shards with shard_imagenet()", severity="fatal")
            continue
        per_class = {wnid: 0 for wnid in classes}
        for shard in shards:
            data = chk.read(shard)
            if not data:
                chk.add("EmptyFileError", shard, "shard is empty (0 bytes)", "re-copy or rebuild this shard",
                        sample=shard, split=split)
                continue
            try:
                with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
                    members = [(m.name, tar.extractfile(m).read()) for m in tar if m.isfile()]  # type: ignore[union-attr]
            except (OSError, tarfile.TarError) as exc:
                chk.add("CorruptImageError", shard, f"archive cannot be read: {exc}",
                        "re-copy or rebuild this shard", sample=shard, split=split)
                continue
            to_decode: list[tuple[str, bytes]] = []
            for name, payload in members:
                key = f"{shard}:{name}"
                wnid = name.split("/", 1)[0]
                if name.count("/") != 1 or not _is_image(name):
                    chk.add("LayoutError", shard, "member is not <wnid>/<image> and is ignored",
                            "rebuild the shard with shard_imagenet()", record=f"member {name}", severity="warning")
                elif wnid not in known:
                    chk.add("UnknownClassError", shard, f"class {wnid!r} is not in {CLASSES_FILE}",
                            f"add it to {CLASSES_FILE} or drop the member", record=f"member {name}", sample=key, split=split)
                elif not payload:
                    chk.add("EmptyFileError", shard, "image member is empty (0 bytes)", "rebuild the shard",
                            record=f"member {name}", sample=key, split=split)
                else:
                    to_decode.append((name, payload))
            with ThreadPoolExecutor(max_workers=chk.workers) as pool:
                results = list(pool.map(lambda item: _try_decode(item[1]), to_decode))
            for (name, _), error in zip(to_decode, results):
                if error is None:
                    per_class[name.split("/", 1)[0]] += 1
                else:
                    chk.add("CorruptImageError", shard, f"image cannot be decoded: {error}", "rebuild the shard",
                            record=f"member {name}", sample=f"{shard}:{name}", split=split)
        chk.report.counts[f"{split}/images"] = sum(per_class.values())
        chk.report.class_counts[split] = per_class
        if not sum(per_class.values()):
            chk.add("LayoutError", split, f"split {split!r} has no readable image",
                    "rebuild the shards", severity="fatal")
    _check_standard_counts(chk, classes)
    return chk.finish(strict)


def _try_decode(data: bytes) -> str | None:
    try:
        decode_image(data)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        return str(exc)
    return None
