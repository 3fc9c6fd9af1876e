"""``validate_ade20k``: the layout, the pairing of images with masks and the mask values of an ADE20K folder."""
from __future__ import annotations

import posixpath

import numpy as np

from .._check import Checker
from ..classes import ADE20K_CLASSES
from ..errors import ValidationReport
from .layout import BASE, NUM_CLASSES, SPLITS, clear_bad_values, rel_path


def validate_ade20k(url: str, *, strict: bool = False, workers: int | None = None) -> ValidationReport:
    chk = Checker("ade20k", url, workers)
    base = BASE if any(rel.startswith(BASE + "/") for rel in chk.files) else ""
    chk.report.classes = list(ADE20K_CLASSES)
    all_images: list[str] = []
    for split, folder in SPLITS.items():
        image_dir, mask_dir = rel_path(base, "images", folder), rel_path(base, "annotations", folder)
        for needed in (image_dir, mask_dir):
            if not chk.has_dir(needed):
                chk.add("LayoutError", needed, "folder is missing or empty",
                        f"put the {folder} {needed.split('/')[-2]} under {needed}/", severity="fatal")
        if not (chk.has_dir(image_dir) and chk.has_dir(mask_dir)):
            continue
        images = {posixpath.splitext(r[len(image_dir) + 1 :])[0]: r for r in chk.under(image_dir)}
        masks = {posixpath.splitext(r[len(mask_dir) + 1 :])[0]: r for r in chk.under(mask_dir)}
        for stem, rel in sorted(masks.items()):
            if stem not in images:
                chk.add("LayoutError", rel, "mask has no image and is ignored", "add the image or delete the mask",
                        severity="warning")
        pairs: dict[str, str] = {}
        for stem, rel in sorted(images.items()):
            if stem not in masks:
                chk.add("LayoutError", rel, "image has no annotation mask",
                        f"add {mask_dir}/{stem}.png or delete the image", sample=rel, split=split)
            else:
                pairs[rel] = masks[stem]
        image_of = {mask: image for image, mask in pairs.items()}
        sizes: dict[str, tuple[int, int]] = {}
        for rel, decoded in chk.decode_images(pairs, split):
            if decoded is not None:
                sizes[rel] = (decoded.width, decoded.height)
        per_class = np.zeros(NUM_CLASSES + 1, dtype=np.int64)
        good = 0
        checked = [pairs[r] for r in sizes]
        fix = "fix or remove the mask"
        for mask_rel, decoded in chk.decode_images(checked, split, keep_pixels=True, sample_of=image_of.__getitem__):
            if decoded is None:
                continue
            image_rel = image_of[mask_rel]
            if decoded.mode not in ("L", "P"):
                chk.add("MaskValueError", mask_rel, f"mask mode is {decoded.mode}, a single-channel 8-bit PNG is needed",
                        "save the mask as mode L", sample=image_rel, split=split)
                continue
            if (decoded.width, decoded.height) != sizes[image_rel]:
                chk.add("MaskValueError", mask_rel, f"mask is {decoded.width}x{decoded.height} but the image is "
                        f"{sizes[image_rel][0]}x{sizes[image_rel][1]}", "use the mask that belongs to this image",
                        sample=image_rel, split=split)
                continue
            present = np.unique(decoded.pixels)
            bad = present[present > NUM_CLASSES]
            if bad.size:
                _, count = clear_bad_values(decoded.pixels)
                chk.add("MaskValueError", mask_rel, f"mask holds value(s) {bad.tolist()} outside 0..{NUM_CLASSES} "
                        f"in {count} pixel(s); they are set to 0 (other, ignored)", fix, split=split,
                        unit=("pixels", mask_rel), units=count)
                present = present[present <= NUM_CLASSES]
            per_class[present] += 1
            good += 1
        chk.report.counts[f"{split}/images"] = good
        chk.report.class_counts[split] = {ADE20K_CLASSES[v - 1]: int(per_class[v]) for v in range(1, NUM_CLASSES + 1) if per_class[v]}
        all_images.extend(pairs)
        if good == 0:
            chk.add("LayoutError", image_dir, f"split {split!r} has no usable image/mask pair",
                    "put images and masks in place", severity="fatal")
    chk.report_duplicate_contents(all_images)
    return chk.finish(strict)
