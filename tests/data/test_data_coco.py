"""COCO reader round-trips the generator's boxes, polygons, RLE masks and crowd flags."""

from __future__ import annotations

import json
import uuid

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils

import itpn.data as D
from itpn.data._render import class_style
from itpn.data.coco.generate import generated_categories
from itpn.data.coco.layout import uncompressed_rle
from itpn.data.fs import open_fs


@pytest.fixture
def url():
    location = f"memory://data-coco-{uuid.uuid4().hex}"
    yield location
    fs, root = open_fs(location)
    if fs.exists(root):
        fs.rm(root, recursive=True)


def test_category_table_is_the_real_coco_one():
    cats = D.coco_categories()
    assert len(cats) == 80
    assert cats[0] == (1, "person") and cats[-1] == (90, "toothbrush")
    assert [c for c, _ in cats if c in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)] == []


def test_round_trip_boxes_masks_polygons_and_crowd(url):
    generated = D.generate_coco(url, seed=4, num_classes=5, train_images=12, val_images=4, image_size=96,
                                crowd_fraction=0.3)
    objects = [o for s in generated.samples for o in s["objects"]]
    assert any(o["iscrowd"] for o in objects) and not all(o["iscrowd"] for o in objects)
    used = generated_categories(5)
    for split in ("train", "val"):
        dataset = D.CocoDetection(url, split)
        truth = [s for s in generated.samples if s["split"] == split]
        assert len(dataset) == len(truth)
        assert len(dataset.classes) == 80 and dataset.classes[0] == "person"
        for i, sample in enumerate(truth):
            image, target = dataset[i]
            assert tuple(image.shape) == (3, sample["height"], sample["width"]) and image.dtype == torch.uint8
            assert target["image_id"] == sample["image_id"]
            objs = sample["objects"]
            xywh = np.array([o["bbox"] for o in objs], dtype=np.float32).reshape(-1, 4)
            expected = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], 1)
            np.testing.assert_allclose(target["boxes"].numpy(), expected, atol=1e-4)
            assert target["category_ids"].tolist() == [o["category_id"] for o in objs]
            assert [dataset.classes[l] for l in target["labels"].tolist()] == [used[o["label"]][1] for o in objs]
            assert target["iscrowd"].tolist() == [o["iscrowd"] for o in objs]
            np.testing.assert_allclose(target["area"].numpy(), [o["area"] for o in objs])
            for mask, obj, raw in zip(target["masks"].numpy(), objs, dataset.annotations(i)):
                expected_mask = mask_utils.decode({"size": obj["rle"]["size"], "counts": obj["rle"]["counts"].encode()})
                np.testing.assert_array_equal(mask, expected_mask)
                assert raw["segmentation"] == obj["segmentation"]
                if not obj["iscrowd"]:
                    poly = np.array(obj["segmentation"][0]).reshape(-1, 2)
                    np.testing.assert_allclose([poly[:, 0].min(), poly[:, 1].min()], obj["bbox"][:2], atol=1e-6)
    assert D.validate("coco", url).counts["train/annotations"] == sum(
        len(s["objects"]) for s in generated.samples if s["split"] == "train")


def test_painted_pixels_match_the_masks(url):
    generated = D.generate_coco(url, num_classes=4, train_images=6, val_images=1, image_size=128)
    dataset = D.CocoDetection(url, "train")
    for i, sample in enumerate(s for s in generated.samples if s["split"] == "train"):
        image, target = dataset[i]
        pixels = image.permute(1, 2, 0).numpy().astype(float)
        for mask, obj in zip(target["masks"].numpy().astype(bool), sample["objects"]):
            colour = np.array(class_style(obj["label"]).colour, dtype=float) * 0.925
            inside = pixels[mask].mean(0)
            assert np.abs(inside - colour).max() < 25


def test_compressed_rle_and_crowd_options(url):
    D.generate_coco(url, num_classes=2, train_images=3, val_images=1, image_size=64, crowd_fraction=0.0)
    fs, root = open_fs(url)
    path = f"{root}/annotations/instances_train2017.json"
    document = json.loads(fs.cat_file(path))
    ann = document["annotations"][0]
    image = next(img for img in document["images"] if img["id"] == ann["image_id"])
    mask = np.zeros((image["height"], image["width"]), dtype=np.uint8)
    mask[10:20, 5:30] = 1
    rle = mask_utils.encode(np.asfortranarray(mask))
    ann.update(segmentation={"size": rle["size"], "counts": rle["counts"].decode()}, bbox=[5, 10, 25, 10], iscrowd=1)
    fs.pipe_file(path, json.dumps(document).encode())
    assert D.validate("coco", url, strict=True).ok
    dataset = D.CocoDetection(url, "train")
    index = dataset.ids.index(ann["image_id"])
    _, target = dataset[index]
    np.testing.assert_array_equal(target["masks"][0].numpy(), mask)
    assert target["iscrowd"][0] == 1
    no_crowd = D.CocoDetection(url, "train", include_crowd=False)
    assert len(no_crowd[index][1]["labels"]) == len(target["labels"]) - 1


def test_uncompressed_rle_matches_pycocotools():
    rng = np.random.default_rng(0)
    for first in (0, 1):
        mask = (rng.random((7, 9)) > 0.5).astype(np.uint8)
        mask[0, 0] = first
        rle = uncompressed_rle(mask)
        assert sum(rle["counts"]) == mask.size
        decoded = mask_utils.decode(mask_utils.frPyObjects(rle, 7, 9))
        np.testing.assert_array_equal(decoded, mask)


def test_filter_empty_and_detection_transform(url):
    D.generate_coco(url, num_classes=3, train_images=8, val_images=2, image_size=64, objects_per_image=(0, 2))
    everything = D.CocoDetection(url, "train")
    non_empty = D.CocoDetection(url, "train", filter_empty=True)
    expected = [i for i in everything.ids if any(not a["iscrowd"] for a in everything.coco.imgToAnns.get(i, []))]
    assert non_empty.ids == expected and len(expected) < len(everything.ids)
    dataset = D.CocoDetection(url, "train", D.build_detection_transform(True, min_size=32, max_size=48), filter_empty=True)
    images, targets = D.detection_collate([dataset[0], dataset[1]])
    for image, target in zip(images, targets):
        assert image.dtype == torch.float32 and min(image.shape[1:]) == 32 and max(image.shape[1:]) <= 48
        assert target["masks"].shape[1:] == image.shape[1:]
        assert len(target["boxes"]) == len(target["labels"]) == len(target["masks"])
        assert target["boxes"].canvas_size == tuple(image.shape[1:])


def test_objects_are_separable_by_colour(url):
    """The class is tied to colour: a nearest-mean classifier on object colour is far above chance."""
    D.generate_coco(url, seed=1, num_classes=5, train_images=24, val_images=8, image_size=96)

    def features(split: str) -> tuple[np.ndarray, np.ndarray]:
        dataset = D.CocoDetection(url, split)
        rows, labels = [], []
        for i in range(len(dataset)):
            image, target = dataset[i]
            pixels = image.permute(1, 2, 0).numpy().astype(float)
            for mask, label in zip(target["masks"].numpy().astype(bool), target["labels"].tolist()):
                rows.append(pixels[mask].mean(0))
                labels.append(label)
        return np.array(rows), np.array(labels)

    (xt, yt), (xv, yv) = features("train"), features("val")
    classes = np.unique(yt)
    centroids = np.stack([xt[yt == c].mean(0) for c in classes])
    predicted = classes[np.argmin(((xv[:, None] - centroids[None]) ** 2).sum(-1), 1)]
    assert (predicted == yv).mean() > 0.9
