"""``validate_imagenet`` and ``validate_imagenet_tar``: each layout's folders, classes and images."""
from __future__ import annotations

import io
import tarfile
from concurrent.futures import ThreadPoolExecutor

from PIL import Image

from .._check import Checker, decode_image
from ..classes import imagenet_wnids
from ..errors import ValidationReport
from ..fs import join, list_dirs
from .layout import CLASSES_FILE, SPLITS, STANDARD_COUNTS, is_image


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
            elif not is_image(rel):
                chk.add("LayoutError", rel, "not an image file and is ignored", "delete it", severity="warning")
            elif rel.split("/")[1] not in train_classes:
                chk.add("UnknownClassError", rel, f"class folder {rel.split('/')[1]!r} does not exist in train/",
                        "add the class to train/ or remove this folder", sample=rel, split=split)
            else:
                images.append(rel)
        per_class = {wnid: 0 for wnid in train_classes}
        with_images = {rel.split("/")[1] for rel in chk.under(split) if rel.count("/") == 2 and is_image(rel)}
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
                if name.count("/") != 1 or not is_image(name):
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
