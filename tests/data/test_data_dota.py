"""DOTA reader round-trips polygons; patch split and merge back; polygon geometry."""

from __future__ import annotations

import io
import uuid

import numpy as np
import pytest
import torch
from PIL import Image

import itpn.data as D
from itpn.data.dota.patches import window_starts
from itpn.data.fs import open_fs
from itpn.data.geometry import clip_polygon, min_area_rect, poly_nms, polygon_area, polygon_iou, rectangle

SMALL = dict(num_classes=4, train_images=2, val_images=1, image_size=320, objects_per_image=(6, 10), object_scale=0.6)


@pytest.fixture
def url():
    location = f"memory://data-dota-{uuid.uuid4().hex}"
    yield location
    fs, root = open_fs(location)
    if fs.exists(root):
        fs.rm(root, recursive=True)


def _image(url: str, rel: str) -> np.ndarray:
    fs, root = open_fs(url)
    with Image.open(io.BytesIO(fs.cat_file(f"{root}/{rel}"))) as image:
        return np.array(image.convert("RGB"))


def test_round_trip_polygons_classes_difficulty(url):
    generated = D.generate_dota(url, seed=1, **SMALL)
    assert len(D.DOTA_CLASSES) == 15
    for split in ("train", "val"):
        dataset = D.DOTADataset(url, split)
        truth = [s for s in generated.samples if s["split"] == split]
        assert [s[0] for s in dataset.samples] == [s["file"] for s in truth]
        for i, sample in enumerate(truth):
            image, target = dataset[i]
            assert tuple(image.shape) == (3, sample["height"], sample["width"])
            assert target["boxes"].format.value == "XYXYXYXY"
            expected = np.array([o["polygon"] for o in sample["objects"]], dtype=np.float32)
            np.testing.assert_array_equal(target["boxes"].numpy(), expected)
            assert [D.DOTA_CLASSES[l] for l in target["labels"].tolist()] == [o["name"] for o in sample["objects"]]
            assert target["difficulty"].tolist() == [o["difficulty"] for o in sample["objects"]]
    easy = D.DOTADataset(url, "train", include_difficult=False)
    assert all(d == 0 for i in range(len(easy)) for d in easy[i][1]["difficulty"].tolist())


def test_generated_images_are_large_enough_for_the_1024_split(url):
    generated = D.generate_dota(url, train_images=2, val_images=1, objects_per_image=(2, 3))
    sizes = [(s["width"], s["height"]) for s in generated.samples]
    assert all(960 <= w <= 1280 and 960 <= h <= 1280 for w, h in sizes)
    assert any(max(w, h) > 1024 for w, h in sizes)
    summary = D.split_dota(url, url + "-patches")
    assert summary["train"]["patches"] > summary["train"]["images"]
    fs, root = open_fs(url + "-patches")
    try:
        for path in fs.find(f"{root}/val/images"):
            with Image.open(io.BytesIO(fs.cat_file(path))) as image:
                assert image.size == (1024, 1024)
    finally:
        fs.rm(root, recursive=True)


def test_window_starts_cover_with_overlap():
    assert window_starts(1024, 1024, 200) == [0]
    assert window_starts(900, 1024, 200) == [0]
    assert window_starts(1500, 1024, 200) == [0, 476]
    assert window_starts(2000, 1024, 200) == [0, 824, 976]
    with pytest.raises(ValueError, match="gap"):
        window_starts(2000, 100, 100)


def test_split_patches_crop_the_image_and_keep_objects(url):
    generated = D.generate_dota(url, seed=3, **SMALL)
    patches = url + "/patches"
    summary = D.split_dota(url, patches, patch_size=128, gap=32)
    assert summary["train"]["images"] == 2 and summary["val"]["images"] == 1
    dataset = D.DOTADataset(patches, "train")
    assert len(dataset) == summary["train"]["patches"]
    truth = {s["file"].split("/")[-1][:-4]: s for s in generated.samples}
    for index, (image_rel, _) in enumerate(dataset.samples):
        name, x, y = D.parse_patch_name(image_rel)
        original = _image(url, truth[name]["file"])
        patch, target = dataset[index]
        crop = np.zeros((128, 128, 3), dtype=np.uint8)
        part = original[y : y + 128, x : x + 128]
        crop[: part.shape[0], : part.shape[1]] = part
        np.testing.assert_array_equal(patch.permute(1, 2, 0).numpy(), crop)
        polys = target["boxes"].numpy().astype(np.float64).reshape(-1, 4, 2)
        assert polys.size == 0 or (polys.min() >= 0 and polys.max() <= 128)
        got = {(D.DOTA_CLASSES[l], tuple(np.round(p.ravel(), 1))) for p, l in zip(polys, target["labels"].tolist())}
        window = rectangle(x, y, x + 128, y + 128)
        for obj in truth[name]["objects"]:
            corners = np.array(obj["polygon"]).reshape(4, 2)
            iof = polygon_area(clip_polygon(corners, window)) / polygon_area(corners)
            if iof > 1 - 1e-9:
                assert (obj["name"], tuple(np.round((corners - (x, y)).ravel(), 1))) in got
        cut = target["difficulty"] == 2
        for p in polys[cut.numpy()]:
            assert polygon_area(p) > 0
    assert D.validate("dota", patches, strict=True).counts["train/objects"] == summary["train"]["objects"]


def test_merge_returns_each_object_once_in_image_pixels(url):
    generated = D.generate_dota(url, seed=5, **SMALL)
    patches = url + "/patches"
    D.split_dota(url, patches, patch_size=160, gap=64)
    detections = {}
    for split in ("train", "val"):
        dataset = D.DOTADataset(patches, split)
        for index, (image_rel, _) in enumerate(dataset.samples):
            _, target = dataset[index]
            n = len(target["labels"])
            scores = np.where(target["difficulty"].numpy() == 2, 0.5, 0.9)  # whole copies win over cut ones
            detections[image_rel.split("/")[-1]] = {"polys": target["boxes"], "scores": torch.tensor(scores[:n]),
                                                    "labels": target["labels"]}
    merged = D.merge_dota_detections(detections, iou_thr=0.1)
    assert sorted(merged) == sorted(s["file"].split("/")[-1][:-4] for s in generated.samples)
    for sample in generated.samples:
        result = merged[sample["file"].split("/")[-1][:-4]]
        assert np.all(np.diff(result["scores"]) <= 0)
        polys = result["polys"].reshape(-1, 4, 2)
        for a in range(len(polys)):  # no duplicates left
            for b in range(a + 1, len(polys)):
                if result["labels"][a] == result["labels"][b]:
                    assert polygon_iou(polys[a], polys[b]) <= 0.1
        for obj in sample["objects"]:
            corners = np.array(obj["polygon"]).reshape(4, 2)
            label = D.DOTA_CLASSES.index(obj["name"])
            best = max((polygon_iou(corners, p) for p, l in zip(polys, result["labels"]) if l == label), default=0.0)
            assert best > 0.5
        assert len(polys) <= len(sample["objects"])


def test_write_task1_files(url):
    merged = {"P0000": {"polys": np.array([[0, 0, 10, 0, 10, 5, 0, 5]], dtype=float), "scores": np.array([0.75]),
                        "labels": np.array([D.DOTA_CLASSES.index("ship")])}}
    written = D.write_dota_task1(merged, url)
    assert len(written) == 15
    fs, root = open_fs(url)
    assert fs.cat_file(f"{root}/Task1_ship.txt").decode() == "P0000 0.7500 0.0 0.0 10.0 0.0 10.0 5.0 0.0 5.0\n"
    assert fs.cat_file(f"{root}/Task1_plane.txt") == b""


def test_patch_names_parse_and_bad_names_fail():
    assert D.parse_patch_name("train/images/P0003__1024__824___0.png") == ("P0003", 824, 0)
    with pytest.raises(ValueError, match="split_dota"):
        D.parse_patch_name("P0003.png")


def test_parse_label_text_header_and_optional_difficulty():
    header, objects, problems = D.parse_label_text(
        "imagesource:GoogleEarth\ngsd:0.146\n\n1 2 3 4 5 6 7 8 plane 1\n1 2 3 4 5 6 7 8 ship\n1 2 3 4 5 6 7 8 ship 5\n")
    assert header == ["imagesource:GoogleEarth", "gsd:0.146"]
    assert [(o.name, o.difficulty, o.line) for o in objects] == [("plane", 1, 4), ("ship", 0, 5)]
    assert [(p.line, p.code) for p in problems] == [(6, "DotaLineError")]


def test_geometry():
    square = rectangle(0, 0, 2, 2)
    assert polygon_area(square) == 4.0
    assert polygon_area(clip_polygon(square, rectangle(1, 1, 3, 3))) == pytest.approx(1.0)
    assert clip_polygon(square, rectangle(5, 5, 6, 6)).shape == (0, 2)
    assert polygon_iou(square, rectangle(1, 0, 3, 2)) == pytest.approx(1 / 3)
    assert polygon_iou(square, square[::-1]) == pytest.approx(1.0)
    angle = 0.4
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    rotated = rectangle(0, 0, 4, 1) @ rot.T
    rect = min_area_rect(np.vstack([rotated, rotated.mean(0, keepdims=True)]))
    assert polygon_area(rect) == pytest.approx(4.0)
    assert polygon_iou(rect, rotated) == pytest.approx(1.0)
    polys = np.stack([square.ravel(), (square + 0.1).ravel(), (square + 5).ravel()])
    assert poly_nms(polys, np.array([0.5, 0.9, 0.1]), 0.5).tolist() == [1, 2]
