"""``validate_dota``: the layout, every ``labelTxt`` line and the pairing of images with labels."""
from __future__ import annotations



from .._check import IMAGE_EXTENSIONS, Checker
from ..classes import DOTA_CLASSES
from ..errors import ValidationReport
from .layout import LABELLED_SPLITS, SPLITS, file_stem, usable_objects


def validate_dota(url: str, *, strict: bool = False, workers: int | None = None) -> ValidationReport:
    chk = Checker("dota", url, workers)
    chk.report.classes = list(DOTA_CLASSES)
    all_images: list[str] = []
    if not chk.has_dir("train/images"):
        chk.add("LayoutError", "train/images", "folder is missing or empty", "put the training PNGs under train/images/",
                severity="fatal")
    for split in SPLITS:
        image_dir, label_dir = f"{split}/images", f"{split}/labelTxt"
        if not chk.has_dir(image_dir):
            if split == "val" and chk.has_dir(label_dir):
                chk.add("LayoutError", image_dir, "folder is missing or empty", "put the images next to labelTxt/",
                        severity="fatal")
            continue
        labelled = split in LABELLED_SPLITS
        if labelled and not chk.has_dir(label_dir):
            chk.add("LayoutError", label_dir, "folder is missing or empty", f"put the label files under {label_dir}/",
                    severity="fatal")
            continue
        images = {file_stem(r): r for r in chk.under(image_dir) if r.lower().endswith(IMAGE_EXTENSIONS)}
        labels = {file_stem(r): r for r in chk.under(label_dir) if r.endswith(".txt")}
        for stem, rel in sorted(labels.items()):
            if stem not in images:
                chk.add("LayoutError", rel, "label file has no image and is ignored", "add the image or delete the file",
                        severity="warning")
        to_decode = []
        for stem, rel in sorted(images.items()):
            if labelled and stem not in labels:
                chk.add("LayoutError", rel, "image has no labelTxt file", f"add {label_dir}/{stem}.txt or delete the image",
                        sample=rel, split=split)
            else:
                to_decode.append(rel)
        per_class = {name: 0 for name in DOTA_CLASSES}
        good = objects_total = 0
        for rel, decoded in chk.decode_images(to_decode, split):
            if decoded is None:
                continue
            if not labelled:
                good += 1
                continue
            label_rel = labels[file_stem(rel)]
            data = chk.read(label_rel)
            if not data:
                chk.add("EmptyFileError", label_rel, "label file is empty (0 bytes); the image counts as having no objects",
                        "write the 'imagesource:'/'gsd:' header even for images without objects", severity="warning")
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError as exc:
                chk.add("DotaLineError", label_rel, f"not UTF-8 text: {exc}", "re-copy the file", sample=rel, split=split)
                continue
            _, objects, problems = usable_objects(text, decoded.width, decoded.height)
            for p in problems:
                chk.add(p.code, label_rel, p.message, p.fix, record=f"line {p.line}", split=split,
                        unit=("lines", f"{label_rel} line {p.line}"))
            seen: dict[tuple, int] = {}
            for obj in objects:
                key = (tuple(obj.polygon.tolist()), obj.name)
                if key in seen:
                    chk.add("DuplicateError", label_rel, f"same object as line {seen[key]}", "delete one of the lines",
                            record=f"line {obj.line}", severity="warning")
                seen.setdefault(key, obj.line)
            good += 1
            objects_total += len(objects)
            for obj in objects:
                per_class[obj.name] += 1
        chk.report.counts[f"{split}/images"] = good
        if labelled:
            chk.report.counts[f"{split}/objects"] = objects_total
            chk.report.class_counts[split] = per_class
        all_images.extend(images.values())
        if good == 0:
            chk.add("LayoutError", image_dir, f"split {split!r} has no usable image", "put images and labels in place",
                    severity="fatal")
    chk.report_duplicate_contents(all_images)
    return chk.finish(strict)
