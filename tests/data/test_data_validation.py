"""The bad-input corpus: every case gives its named error in strict mode and, by default, drops only the
smallest bad unit (an image, a COCO annotation, a DOTA label line, mask pixels) and counts it at its level."""

from __future__ import annotations

import io
import json
import uuid
from typing import Callable

import numpy as np
import pytest
import torch
from PIL import Image

import itpn.data as D
from itpn.data.fs import open_fs

SMALL = {
    "imagenet": dict(num_classes=3, train_per_class=3, val_per_class=2, image_size=32),
    "coco": dict(num_classes=3, train_images=4, val_images=2, image_size=64, crowd_fraction=0.0, objects_per_image=(1, 2)),
    "ade20k": dict(num_classes=3, train_images=3, val_images=2, image_size=32),
    "dota": dict(num_classes=3, train_images=2, val_images=1, image_size=256, objects_per_image=(3, 5), object_scale=0.5),
}
GENERATE = {"imagenet": D.generate_imagenet, "coco": D.generate_coco, "ade20k": D.generate_ade20k, "dota": D.generate_dota}


@pytest.fixture
def url():
    location = f"memory://data-validation-{uuid.uuid4().hex}"
    yield location
    fs, root = open_fs(location)
    if fs.exists(root):
        fs.rm(root, recursive=True)


def _read(url: str, rel: str) -> bytes:
    fs, root = open_fs(url)
    return fs.cat_file(f"{root}/{rel}")


def _write(url: str, rel: str, data: bytes) -> None:
    fs, root = open_fs(url)
    fs.pipe_file(f"{root}/{rel}", data)


def _edit_json(url: str, rel: str, edit: Callable[[dict], None]) -> None:
    document = json.loads(_read(url, rel))
    edit(document)
    _write(url, rel, json.dumps(document).encode())


# Each case: kind, corruption (returns the sample key that must be skipped, and the file named in the error),
# the error class, and a fragment the message must contain.
def truncated_jpeg(url: str) -> tuple[str, str]:
    rel = "train/n01440764/n01440764_2.JPEG"
    _write(url, rel, _read(url, rel)[:300])
    return rel, rel


def zero_byte_image(url: str) -> tuple[str, str]:
    rel = "val/n01440764/ILSVRC2012_val_00000001.JPEG"
    _write(url, rel, b"")
    return rel, rel


def coco_missing_key(url: str) -> tuple[str, str]:
    _edit_json(url, "annotations/instances_train2017.json", lambda d: d["annotations"][0].pop("bbox"))
    return "train2017/000000000001.jpg", "annotations/instances_train2017.json"


def coco_box_outside(url: str) -> tuple[str, str]:
    def edit(d: dict) -> None:
        ann = d["annotations"][0]
        width = next(img["width"] for img in d["images"] if img["id"] == ann["image_id"])
        ann["bbox"][0] = width + 10.0
    _edit_json(url, "annotations/instances_train2017.json", edit)
    return "train2017/000000000001.jpg", "annotations/instances_train2017.json"


def coco_odd_polygon(url: str) -> tuple[str, str]:
    _edit_json(url, "annotations/instances_train2017.json", lambda d: d["annotations"][0]["segmentation"][0].pop())
    return "train2017/000000000001.jpg", "annotations/instances_train2017.json"


def coco_unknown_category(url: str) -> tuple[str, str]:
    def edit(d: dict) -> None:
        d["annotations"][0]["category_id"] = 9999
    _edit_json(url, "annotations/instances_train2017.json", edit)
    return "train2017/000000000001.jpg", "annotations/instances_train2017.json"


def ade_mask_200(url: str) -> tuple[str, str]:
    rel = "ADEChallengeData2016/annotations/training/ADE_train_00000002.png"
    mask = np.array(Image.open(io.BytesIO(_read(url, rel))))
    mask[5, 5] = 200
    buffer = io.BytesIO()
    Image.fromarray(mask).save(buffer, format="PNG")
    _write(url, rel, buffer.getvalue())
    return "ADEChallengeData2016/images/training/ADE_train_00000002.jpg", rel


def _edit_dota_line(url: str, edit: Callable[[list[str]], list[str]]) -> tuple[str, str]:
    rel = "train/labelTxt/P0001.txt"
    lines = _read(url, rel).decode().splitlines()
    lines[2] = " ".join(edit(lines[2].split()))
    _write(url, rel, ("\n".join(lines) + "\n").encode())
    return "train/images/P0001.png", rel


def dota_seven_coordinates(url: str) -> tuple[str, str]:
    return _edit_dota_line(url, lambda tokens: tokens[:6] + tokens[7:])


def dota_unknown_class(url: str) -> tuple[str, str]:
    return _edit_dota_line(url, lambda tokens: tokens[:8] + ["spaceship"] + tokens[9:])


def coco_zero_height_box(url: str) -> tuple[str, str]:
    """The issue's case: real train2017 holds boxes like [40, 30, 12, 0]."""
    def edit(d: dict) -> None:
        d["annotations"][0]["bbox"] = [40.0, 30.0, 12.0, 0.0]
    _edit_json(url, "annotations/instances_train2017.json", edit)
    return "train2017/000000000001.jpg", "annotations/instances_train2017.json"


# kind, corruption, error class, message fragment, level of what is dropped by default
CORPUS = [
    ("imagenet", truncated_jpeg, D.CorruptImageError, "image cannot be decoded", "images"),
    ("imagenet", zero_byte_image, D.EmptyFileError, "0 bytes", "images"),
    ("coco", coco_missing_key, D.AnnotationSchemaError, "misses key(s) ['bbox']", "annotations"),
    ("coco", coco_box_outside, D.BoxOutOfRangeError, "lies outside", "annotations"),
    ("coco", coco_zero_height_box, D.BoxOutOfRangeError, "has no area", "annotations"),
    ("coco", coco_odd_polygon, D.PolygonError, "odd number of coordinates", "annotations"),
    ("coco", coco_unknown_category, D.UnknownClassError, "category_id 9999", "annotations"),
    ("ade20k", ade_mask_200, D.MaskValueError, "value(s) [200]", "pixels"),
    ("dota", dota_seven_coordinates, D.DotaLineError, "found 7 coordinate(s)", "lines"),
    ("dota", dota_unknown_class, D.UnknownClassError, "'spaceship'", "lines"),
]
IDS = [case[1].__name__ for case in CORPUS]


@pytest.mark.parametrize(("kind", "corrupt", "error", "text", "level"), CORPUS, ids=IDS)
def test_strict_raises_the_named_error_naming_the_file(url, kind, corrupt, error, text, level):
    GENERATE[kind](url, **SMALL[kind])
    _, bad_file = corrupt(url)
    with pytest.raises(error) as info:
        D.validate(kind, url, strict=True)
    message = str(info.value)
    assert f"{url}/{bad_file}" in message
    assert text in message
    assert "Fix:" in message
    assert info.value.file == f"{url}/{bad_file}"


@pytest.mark.parametrize(("kind", "corrupt", "error", "text", "level"), CORPUS, ids=IDS)
def test_default_mode_drops_the_smallest_bad_unit_and_counts_its_level(url, kind, corrupt, error, text, level):
    GENERATE[kind](url, **SMALL[kind])
    clean = D.validate(kind, url)
    assert clean.ok and clean.num_skipped == 0 and not clean.problems and clean.dropped == {}
    sample, bad_file = corrupt(url)
    report = D.validate(kind, url)
    split = "val" if sample.startswith("val") else "train"
    assert report.dropped == {split: {level: 1}}
    problems = [p for p in report.problems if p.code == error.__name__]
    assert problems and all(p.file == f"{url}/{bad_file}" for p in problems)
    assert any(text in p.message for p in problems)
    assert {p.dropped for p in problems} == {level}
    if level == "images":
        assert report.skipped_samples == [sample]
        assert report.counts[f"{split}/images"] == clean.counts[f"{split}/images"] - 1
    else:  # the image stays with its good annotations
        assert report.num_skipped == 0
        assert report.counts[f"{split}/images"] == clean.counts[f"{split}/images"]
        for unit in ("annotations", "objects"):
            if level in ("annotations", "lines") and f"{split}/{unit}" in clean.counts:
                assert report.counts[f"{split}/{unit}"] == clean.counts[f"{split}/{unit}"] - 1


def _edit_coco_image(url: str, image_id: int, boxes: list[list[float]]) -> None:
    """Give image ``image_id`` exactly ``boxes`` (polygon-free annotations of the first used category)."""
    def edit(d: dict) -> None:
        category = d["annotations"][0]["category_id"]
        d["annotations"] = [a for a in d["annotations"] if a["image_id"] != image_id]
        for box in boxes:
            d["annotations"].append({"id": 1000 + len(d["annotations"]), "image_id": image_id, "category_id": category,
                                     "bbox": box, "area": box[2] * box[3], "iscrowd": 0})
    _edit_json(url, "annotations/instances_train2017.json", edit)


def test_coco_zero_height_box_drops_only_that_annotation_in_validate_prepare_and_the_reader(url):
    D.generate_coco(url, **SMALL["coco"])
    good = [[4.0, 5.0, 20.0, 10.0], [30.0, 8.0, 12.0, 16.0]]
    _edit_coco_image(url, 1, [good[0], [40.0, 30.0, 12.0, 0.0], good[1]])
    prepared = D.prepare("coco", url)
    assert prepared.manifest["skipped"] == []
    assert prepared.manifest["dropped"] == {"train": {"annotations": 1}}
    assert prepared.manifest["counts"]["train/images"] == SMALL["coco"]["train_images"]
    (problem,) = prepared.report.errors
    assert problem.code == "BoxOutOfRangeError" and "[40.0, 30.0, 12.0, 0.0]" in problem.message
    assert problem.record.startswith("annotations[") and problem.dropped == "annotations"
    dataset = D.CocoDetection(url, "train")
    assert 1 in dataset.ids
    image, target = dataset[dataset.ids.index(1)]
    expected = torch.tensor([[x, y, x + w, y + h] for x, y, w, h in good])
    torch.testing.assert_close(target["boxes"].as_subclass(torch.Tensor), expected)
    assert target["masks"].shape[0] == 2 and len(target["labels"]) == 2
    assert len(dataset.dropped_annotations) == 1
    assert D.CocoDetection(url, "train", filter_empty=True).ids == dataset.ids


def test_coco_repeated_annotation_id_keeps_the_first_record(url):
    D.generate_coco(url, **SMALL["coco"])
    _edit_coco_image(url, 1, [[4.0, 5.0, 20.0, 10.0], [30.0, 8.0, 12.0, 16.0]])
    _edit_json(url, "annotations/instances_train2017.json",
               lambda d: d["annotations"][-1].__setitem__("id", d["annotations"][-2]["id"]))
    report = D.validate("coco", url)
    assert report.dropped == {"train": {"annotations": 1}} and report.errors[0].code == "DuplicateError"
    dataset = D.CocoDetection(url, "train")
    _, target = dataset[dataset.ids.index(1)]
    assert target["boxes"].as_subclass(torch.Tensor).tolist() == [[4.0, 5.0, 24.0, 15.0]]


def test_dota_bad_line_drops_only_that_line_in_the_reader_and_the_split(url, tmp_path):
    D.generate_dota(url, **SMALL["dota"])
    before = D.DOTADataset(url, "train", skip=[])[1][1]
    sample, _ = dota_seven_coordinates(url)
    prepared = D.prepare("dota", url)
    assert prepared.manifest["skipped"] == [] and prepared.manifest["dropped"] == {"train": {"lines": 1}}
    dataset = D.DOTADataset(url, "train")
    assert [s[0] for s in dataset.samples] == ["train/images/P0000.png", sample]
    _, target = dataset[1]
    kept = [i for i in range(len(before["labels"])) if i != 0]  # line 3 is the first object (2 header lines)
    torch.testing.assert_close(target["boxes"].as_subclass(torch.Tensor), before["boxes"].as_subclass(torch.Tensor)[kept])
    assert dataset.dropped_lines == {("train/labelTxt/P0001.txt", 3)} and dataset.skipped == []
    summary = D.split_dota(url, str(tmp_path / "split"), patch_size=128, gap=32)
    assert summary["train"]["images"] == SMALL["dota"]["train_images"] and summary["train"]["dropped_lines"] == 1


def test_ade_bad_mask_value_drops_only_those_pixels(url):
    D.generate_ade20k(url, **SMALL["ade20k"])
    before = D.ADE20KSegmentation(url, "train", skip=[])[1][1].as_subclass(torch.Tensor).clone()
    ade_mask_200(url)
    report = D.validate("ade20k", url)
    assert report.num_skipped == 0 and report.dropped == {"train": {"pixels": 1}}
    dataset = D.ADE20KSegmentation(url, "train")
    assert len(dataset) == SMALL["ade20k"]["train_images"]
    mask = dataset[1][1].as_subclass(torch.Tensor)
    assert mask[5, 5] == D.ADE20K_IGNORE_INDEX
    mask[5, 5] = before[5, 5]
    assert torch.equal(mask, before)
    assert dataset.dropped_pixels == {"ADEChallengeData2016/annotations/training/ADE_train_00000002.png": 1}


def test_records_name_the_line_or_annotation(url):
    GENERATE["dota"](url, **SMALL["dota"])
    dota_seven_coordinates(url)
    report = D.validate("dota", url)
    problem = report.errors[0]
    assert problem.record == "line 3"
    logged = json.loads(json.dumps(report.to_dict()))
    assert logged["problems"][0]["record"] == "line 3"
    assert logged["skipped"] == {} and logged["dropped"] == {"train": {"lines": 1}}
    assert "dropped: 1 lines" in report.summary()
    assert "[error]" in report.summary() and "P0001.txt (line 3)" in report.summary()
    other = f"{url}-coco"
    try:
        GENERATE["coco"](other, **SMALL["coco"])
        coco_missing_key(other)
        problem = D.validate("coco", other).errors[0]
        assert problem.record == "annotations[0] (id 1)"
    finally:
        fs, root = open_fs(other)
        fs.rm(root, recursive=True)


def test_prepare_writes_skips_to_manifest_and_readers_leave_them_out(url):
    D.generate_coco(url, **SMALL["coco"])
    _write(url, "train2017/000000000001.jpg", b"")
    prepared = D.prepare("coco", url)
    assert prepared.manifest["skipped"] == ["train2017/000000000001.jpg"]
    assert prepared.manifest["num_skipped"] == 1 and prepared.manifest["dropped"] == {"train": {"images": 1}}
    assert prepared.manifest["problems"]["by_code"] == {"EmptyFileError": 1}
    dataset = D.CocoDetection(url, "train")
    assert 1 not in dataset.ids and len(dataset) == SMALL["coco"]["train_images"] - 1
    with pytest.raises(D.EmptyFileError):
        D.prepare("coco", url, strict=True)


def test_reader_given_the_report_leaves_bad_samples_out(url):
    D.generate_dota(url, **SMALL["dota"])
    _write(url, "train/labelTxt/P0001.txt", b"\xff\xfe not utf-8")
    report = D.validate("dota", url)
    dataset = D.DOTADataset(url, "train", skip=report.skipped_samples)
    assert [s[0] for s in dataset.samples] == ["train/images/P0000.png"]


def test_corrupt_sample_found_mid_training_is_skipped_not_raised(url):
    D.generate_imagenet(url, **SMALL["imagenet"])
    transform = D.build_classification_transform(False, 32)
    dataset = D.ImageNetFolder(url, "train", transform)
    bad = dataset.samples[4][0]
    _write(url, bad, _read(url, bad)[:200])  # corrupted after validation
    loader = torch.utils.data.DataLoader(dataset, batch_size=4, shuffle=False)
    seen = sum(images.shape[0] for images, _ in loader)
    assert seen == len(dataset)  # the bad index yields the next sample instead
    assert dataset.skipped == [bad]
    strict = D.ImageNetFolder(url, "train", transform, strict=True)
    with pytest.raises(D.CorruptImageError, match=bad):
        strict[4]


def test_runtime_annotation_error_in_dota_drops_the_line_not_the_image(url):
    D.generate_dota(url, **SMALL["dota"])
    dataset = D.DOTADataset(url, "train", skip=[])
    objects = len(dataset[1][1]["labels"])
    dota_seven_coordinates(url)  # broken after the reader listed its samples
    image, target = dataset[1]
    assert dataset.skipped == [] and target["image_name"] == "P0001"
    assert len(target["labels"]) == objects - 1


def test_missing_layout_is_fatal_even_in_default_mode(url):
    for kind in D.KINDS:
        with pytest.raises(D.LayoutError) as info:
            D.validate(kind, url)
        assert url in str(info.value)


def test_coco_json_syntax_error_names_line(url):
    D.generate_coco(url, **SMALL["coco"])
    _write(url, "annotations/instances_val2017.json", b'{"images": [\n  {"id": 1,,}\n]}')
    with pytest.raises(D.AnnotationSchemaError, match=r"instances_val2017.json \(line 2 column"):
        D.validate("coco", url)


def test_coco_missing_top_level_key_is_fatal(url):
    D.generate_coco(url, **SMALL["coco"])
    _edit_json(url, "annotations/instances_train2017.json", lambda d: d.pop("categories"))
    with pytest.raises(D.AnnotationSchemaError, match="missing key 'categories'"):
        D.validate("coco", url)


def test_duplicates_and_stray_files_are_warnings(url):
    D.generate_imagenet(url, **SMALL["imagenet"])
    wnid = D.ImageNetFolder.find_classes(url)[1]
    _write(url, f"train/{wnid}/copy.JPEG", _read(url, "train/n01440764/n01440764_1.JPEG"))
    _write(url, "train/README.txt", b"notes")
    report = D.validate("imagenet", url, strict=True)  # warnings never fail a run
    codes = {(p.code, p.severity) for p in report.problems}
    assert codes == {("DuplicateError", "warning"), ("LayoutError", "warning")}
    duplicate = next(p for p in report.problems if p.code == "DuplicateError")
    assert "n01440764_1.JPEG" in duplicate.message and duplicate.file.endswith("copy.JPEG")
    assert report.num_skipped == 0


def test_imagenet_val_class_unknown_to_train(url):
    D.generate_imagenet(url, **SMALL["imagenet"])
    _write(url, "val/n99999999/x.JPEG", _read(url, "train/n01440764/n01440764_1.JPEG"))
    report = D.validate("imagenet", url)
    assert report.skipped_samples == ["val/n99999999/x.JPEG"]
    assert report.errors[0].code == "UnknownClassError"


def test_dota_image_without_labels_and_polygon_outside(url):
    D.generate_dota(url, **{**SMALL["dota"], "val_images": 2})
    fs, root = open_fs(url)
    fs.rm(f"{root}/val/labelTxt/P5000.txt")
    _edit_dota_line(url, lambda tokens: ["-50.0"] + tokens[1:])
    report = D.validate("dota", url)
    assert {p.code for p in report.errors} == {"LayoutError", "PolygonError"}
    assert report.skipped_samples == ["val/images/P5000.png"]
    assert report.dropped == {"train": {"lines": 1}, "val": {"images": 1}}
    assert "reaches outside" in next(p.message for p in report.errors if p.code == "PolygonError")


def test_ade_mask_size_mismatch_and_missing_mask(url):
    D.generate_ade20k(url, **SMALL["ade20k"])
    rel = "ADEChallengeData2016/annotations/validation/ADE_val_00000001.png"
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(buffer, format="PNG")
    _write(url, rel, buffer.getvalue())
    fs, root = open_fs(url)
    fs.rm(f"{root}/ADEChallengeData2016/annotations/training/ADE_train_00000003.png")
    report = D.validate("ade20k", url)
    assert report.skipped == {
        "train": ["ADEChallengeData2016/images/training/ADE_train_00000003.jpg"],
        "val": ["ADEChallengeData2016/images/validation/ADE_val_00000001.jpg"],
    }
    assert any("mask is 8x8 but the image is 32x32" in p.message for p in report.errors)


def test_imagenet_tar_corrupt_member_is_skipped(url):
    D.generate_imagenet(url, layout="tar", samples_per_shard=5, **SMALL["imagenet"])
    import tarfile

    shard = "val/val-000000.tar"
    with tarfile.open(fileobj=io.BytesIO(_read(url, shard))) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar]
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for i, (member, data) in enumerate(members):
            data = data[:100] if i == 1 else data
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data))
    _write(url, shard, buffer.getvalue())
    with pytest.raises(D.CorruptImageError, match=f"{shard} \\(member {members[1][0].name}\\)"):
        D.validate("imagenet_tar", url, strict=True)
    report = D.validate("imagenet_tar", url)
    assert report.skipped_samples == [f"{shard}:{members[1][0].name}"]
    dataset = D.ImageNetTarShards(url, "val", skip=report.skipped_samples)
    assert len(dataset) == 3 * 2 - 1


@pytest.mark.parametrize("split", ["train", "val"])
def test_imagenet_class_folder_without_images_is_reported_naming_it(url, tmp_path, split):
    for location in (url, str(tmp_path / "local")):
        D.generate_imagenet(location, **SMALL["imagenet"])
        fs, root = open_fs(location)
        fs.makedirs(f"{root}/{split}/n09999999", exist_ok=True)
        fs.pipe_file(f"{root}/{split}/n09999999/notes.txt", b"no image here")
        fs.makedirs(f"{root}/{split}/n00000000", exist_ok=True)  # empty on disk (memory: a pseudo folder)
        report = D.validate("imagenet", location)
        empty = [p for p in report.errors if p.code == "LayoutError"]
        assert sorted(p.file for p in empty) == [f"{location}/{split}/n00000000", f"{location}/{split}/n09999999"]
        assert all("holds no image" in p.message and "class ids" in p.message for p in empty)
        with pytest.raises(D.LayoutError, match=f"{split}/n00000000"):
            D.validate("imagenet", location, strict=True)
