"""ADE20K reader round-trips the generator's masks exactly; reduce-zero-label and transforms."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
import torch

import itpn.data as D
from itpn.data.ade20k.generate import generated_values
from itpn.data.fs import open_fs


@pytest.fixture
def url():
    location = f"memory://data-ade-{uuid.uuid4().hex}"
    yield location
    fs, root = open_fs(location)
    if fs.exists(root):
        fs.rm(root, recursive=True)


def test_label_space():
    assert len(D.ADE20K_CLASSES) == 150 == len(set(D.ADE20K_CLASSES))
    assert D.ADE20K_CLASSES[0] == "wall" and D.ADE20K_CLASSES[-1] == "flag"
    np.testing.assert_array_equal(D.reduce_zero_label(np.array([0, 1, 150], dtype=np.uint8)), [255, 0, 149])


def test_round_trip_masks_exact(url):
    generated = D.generate_ade20k(url, seed=2, num_classes=6, train_images=5, val_images=3, image_size=64)
    values = set(generated_values(6))
    for split in ("train", "val"):
        raw = D.ADE20KSegmentation(url, split, reduce_zero_label=False)
        reduced = D.ADE20KSegmentation(url, split)
        truth = [s for s in generated.samples if s["split"] == split]
        assert [s[0] for s in raw.samples] == [s["file"] for s in truth]
        assert len(reduced.classes) == 150 and reduced.ignore_index == 255
        for i, sample in enumerate(truth):
            image, mask = raw[i]
            assert tuple(image.shape) == (3, 64, 64) and image.dtype == torch.uint8
            np.testing.assert_array_equal(mask.numpy(), sample["mask"])
            assert set(np.unique(sample["mask"])) <= values | {0} and (sample["mask"] == 0).any()
            _, labels = reduced[i]
            np.testing.assert_array_equal(labels.numpy(), D.reduce_zero_label(sample["mask"]))
    report = D.validate("ade20k", url, strict=True)
    assert report.counts == {"train/images": 5, "val/images": 3}
    assert set(report.class_counts["train"]) <= {D.ADE20K_CLASSES[v - 1] for v in values}


def test_url_may_point_inside_the_challenge_folder(url):
    D.generate_ade20k(url, num_classes=3, train_images=2, val_images=1, image_size=32)
    inner = url + "/ADEChallengeData2016"
    assert len(D.ADE20KSegmentation(inner, "train")) == 2
    assert D.validate("ade20k", inner).counts == {"train/images": 2, "val/images": 1}


def test_segmentation_transforms(url):
    D.generate_ade20k(url, num_classes=4, train_images=2, val_images=1, image_size=64)
    train = D.ADE20KSegmentation(url, "train", D.build_segmentation_transform(True, 96, scale=(256, 64)))
    image, mask = train[0]
    assert image.shape == (3, 96, 96) and image.dtype == torch.float32
    assert mask.shape == (96, 96) and mask.dtype == torch.int64
    values = set(mask.unique().tolist())
    assert 255 in values and values <= set(range(150)) | {255}  # padding is ignore
    val = D.ADE20KSegmentation(url, "val", D.build_segmentation_transform(False, 96, scale=(512, 128)))
    image, mask = val[0]
    assert image.shape == (3, 128, 128) and mask.shape == (64, 64)  # mask keeps full resolution


def test_pixels_are_learnable_from_colour(url):
    """Class tied to colour/texture: nearest-mean colour per pixel labels most validation pixels right."""
    D.generate_ade20k(url, seed=0, num_classes=5, train_images=8, val_images=4, image_size=64)

    def pixels(split: str) -> tuple[np.ndarray, np.ndarray]:
        dataset = D.ADE20KSegmentation(url, split)
        xs, ys = [], []
        for i in range(len(dataset)):
            image, mask = dataset[i]
            keep = mask.numpy().ravel() != 255
            xs.append(image.permute(1, 2, 0).numpy().reshape(-1, 3)[keep].astype(float))
            ys.append(mask.numpy().ravel()[keep])
        return np.concatenate(xs), np.concatenate(ys)

    (xt, yt), (xv, yv) = pixels("train"), pixels("val")
    classes = np.unique(yt)
    centroids = np.stack([xt[yt == c].mean(0) for c in classes])
    predicted = classes[np.argmin(((xv[:, None] - centroids[None]) ** 2).sum(-1), 1)]
    assert (predicted == yv).mean() > 0.8  # chance is about 0.2
