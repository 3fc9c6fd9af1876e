"""ImageNet readers round-trip the generator's output; tar shards equal the folder layout; data is learnable."""

from __future__ import annotations

import io
import uuid

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import itpn.data as D
from itpn.data.fs import open_fs


@pytest.fixture
def url():
    location = f"memory://data-imagenet-{uuid.uuid4().hex}"
    yield location
    fs, root = open_fs(location)
    if fs.exists(root):
        fs.rm(root, recursive=True)


def test_folder_round_trip(url):
    generated = D.generate_imagenet(url, seed=3, num_classes=4, train_per_class=5, val_per_class=2, image_size=48)
    wnids = sorted({s["wnid"] for s in generated.samples})
    assert len(wnids) == 4 and set(wnids) <= set(D.imagenet_wnids())
    for split, per_class in (("train", 5), ("val", 2)):
        dataset = D.ImageNetFolder(url, split)
        assert dataset.classes == wnids
        expected = sorted((s["file"], s["label"]) for s in generated.samples if s["split"] == split)
        assert sorted(dataset.samples) == expected
        assert len(dataset) == 4 * per_class
        assert np.bincount(dataset.targets).tolist() == [per_class] * 4
        image, label = dataset[0]
        assert image.size == (48, 48) and image.mode == "RGB"
        assert wnids[label] == dataset.samples[0][0].split("/")[1]


def test_per_class_keeps_the_same_first_images_of_every_class(url):
    """The low-label fine-tune reads a fixed subset: the first N files of each class, whatever the order of
    classes, with the labels of the whole set; a class with fewer images keeps all of them."""
    D.generate_imagenet(url, seed=0, num_classes=3, train_per_class=12, val_per_class=1, image_size=32)
    full = D.ImageNetFolder(url, "train")
    subset = D.ImageNetFolder(url, "train", per_class=4)
    for label, wnid in enumerate(full.classes):
        files = sorted(key for key, target in full.samples if target == label)
        assert [key for key, target in subset.samples if target == label] == files[:4], wnid
    assert subset.classes == full.classes and len(subset) == 12
    assert len(D.ImageNetFolder(url, "train", per_class=50)) == 36
    with pytest.raises(ValueError, match="per_class must be at least 1"):
        D.ImageNetFolder(url, "train", per_class=0)


def test_generator_is_deterministic_and_seeded(url):
    a = D.prepare("imagenet", url + "/a", generate=True, seed=1, num_classes=3, train_per_class=2, val_per_class=1)
    b = D.prepare("imagenet", url + "/b", generate=True, seed=1, num_classes=3, train_per_class=2, val_per_class=1)
    c = D.prepare("imagenet", url + "/c", generate=True, seed=2, num_classes=3, train_per_class=2, val_per_class=1)
    assert a.manifest["content_hash"] == b.manifest["content_hash"] != c.manifest["content_hash"]


def test_image_size_must_be_multiple_of_16(url):
    with pytest.raises(ValueError, match="multiple of 16"):
        D.generate_imagenet(url, image_size=50)


def test_refuses_to_write_into_existing_data(url):
    D.generate_imagenet(url, num_classes=2, train_per_class=1, val_per_class=1, image_size=32)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        D.generate_imagenet(url, num_classes=2, train_per_class=1, val_per_class=1, image_size=32)
    again = D.generate_imagenet(url, num_classes=3, train_per_class=1, val_per_class=1, image_size=32, overwrite=True)
    assert len(D.ImageNetFolder(url, "train")) == 3 and len(again.samples) == 6


def test_tar_layout_round_trip(url):
    generated = D.generate_imagenet(url, num_classes=3, train_per_class=4, val_per_class=2, image_size=32,
                                    layout="tar", samples_per_shard=5)
    fs, root = open_fs(url)
    assert sorted(fs.ls(f"{root}/train", detail=False)) == [f"{root}/train/train-00000{i}.tar" for i in range(3)]
    for split in ("train", "val"):
        dataset = D.ImageNetTarShards(url, split)
        keys = [dataset._key(i) for i in range(len(dataset))]
        truth = {s["file"]: s["label"] for s in generated.samples if s["split"] == split}
        assert sorted(keys) == sorted(truth)
        assert [truth[k] for k in keys] == dataset.targets
        image, label = dataset[len(dataset) - 1]
        assert image.size == (32, 32) and label == dataset.targets[-1]
    assert D.validate("imagenet_tar", url).counts == {"train/images": 12, "val/images": 6}


def test_shard_imagenet_copies_bytes_of_folder_layout(url):
    D.generate_imagenet(url + "/folder", num_classes=3, train_per_class=3, val_per_class=2, image_size=32)
    written = D.shard_imagenet(url + "/folder", url + "/tar", samples_per_shard=4)
    assert written == {"train": 9, "val": 6}
    folder_fs, folder_root = open_fs(url + "/folder")
    for split in ("train", "val"):
        folder = D.ImageNetFolder(url + "/folder", split)
        shards = D.ImageNetTarShards(url + "/tar", split)
        assert shards.classes == folder.classes
        by_name = {rel.split("/", 1)[1]: label for rel, label in folder.samples}
        for i, (shard, name, label, offset, size) in enumerate(shards.samples):
            assert by_name[name] == label
            original = folder_fs.cat_file(f"{folder_root}/{split}/{name}")
            assert shards.fs.cat_file(shards.path(shard), start=offset, end=offset + size) == original


def test_classification_transform_follows_recipe(url):
    D.generate_imagenet(url, num_classes=2, train_per_class=2, val_per_class=1, image_size=64)
    train = D.ImageNetFolder(url, "train", D.build_classification_transform(True, 32))
    image, _ = train[0]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32
    names = [type(t).__name__ for t in D.build_classification_transform(True, 32).transforms]
    assert names == ["RandomResizedCropAndInterpolation", "RandomHorizontalFlip", "RandAugment", "MaybeToTensor",
                     "Normalize", "RandomErasing"]
    erasing = D.build_classification_transform(True, 32).transforms[-1]
    assert erasing.probability == 0.25 and erasing.mode == "pixel"
    val = D.ImageNetFolder(url, "val", D.build_classification_transform(False, 32))
    assert val[0][0].shape == (3, 32, 32)


def test_local_and_memory_urls_give_the_same_manifest(url, tmp_path):
    kwargs = dict(seed=5, num_classes=2, train_per_class=2, val_per_class=1, image_size=32)
    local = D.prepare("imagenet", str(tmp_path / "in"), generate=True, **kwargs)
    file_url = D.prepare("imagenet", f"file://{tmp_path}/in2", generate=True, **kwargs)
    memory = D.prepare("imagenet", url, generate=True, **kwargs)
    assert local.manifest["content_hash"] == file_url.manifest["content_hash"] == memory.manifest["content_hash"]
    assert local.manifest["source_url"] == str(tmp_path / "in") and memory.manifest["source_url"] == url
    assert (tmp_path / "in" / "manifest.json").is_file()
    wnid = local.manifest["classes"][0]
    with Image.open(tmp_path / "in" / "train" / wnid / f"{wnid}_1.JPEG") as image:
        assert image.size == (32, 32)
    dataset = D.ImageNetFolder(f"file://{tmp_path}/in2", "val")
    assert len(dataset) == 2 and dataset[1][1] == 1


@pytest.fixture
def one_thread():
    """Tiny models train fastest on one thread; several oversubscribe a shared machine."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def test_stand_in_is_learnable_well_above_chance(url, one_thread):
    torch.manual_seed(0)
    D.generate_imagenet(url, seed=0, num_classes=10, train_per_class=30, val_per_class=10, image_size=32)

    def tensors(split: str) -> tuple[torch.Tensor, torch.Tensor]:
        dataset = D.ImageNetFolder(url, split)
        x = torch.stack([torch.from_numpy(np.array(dataset[i][0])).permute(2, 0, 1) for i in range(len(dataset))])
        return x.float() / 255, torch.tensor(dataset.targets)

    (xt, yt), (xv, yv) = tensors("train"), tensors("val")
    net = nn.Sequential(
        nn.Conv2d(3, 16, 3, 2, 1), nn.ReLU(), nn.Conv2d(16, 32, 3, 2, 1), nn.ReLU(),
        nn.Conv2d(32, 32, 3, 2, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10),
    )
    optimizer = torch.optim.Adam(net.parameters(), 3e-3)
    for _ in range(15):
        order = torch.randperm(len(xt))
        for start in range(0, len(xt), 32):
            idx = order[start : start + 32]
            loss = nn.functional.cross_entropy(net(xt[idx]), yt[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        accuracy = (net(xv).argmax(1) == yv).float().mean().item()
    assert accuracy >= 0.5  # chance is 0.1


def test_decoded_pixels_show_the_class_colour(url):
    D.generate_imagenet(url, num_classes=3, train_per_class=2, val_per_class=1, image_size=64)
    fs, root = open_fs(url)
    dataset = D.ImageNetFolder(url, "train")
    from itpn.data._render import class_style

    for rel, label in dataset.samples:
        with Image.open(io.BytesIO(fs.cat_file(f"{root}/{rel}"))) as image:
            pixels = np.asarray(image).reshape(-1, 3).astype(float)
        colour = np.array(class_style(label).colour, dtype=float)
        near = np.linalg.norm(pixels - colour * 0.925, axis=1) < 60
        assert near.mean() > 0.1  # the object covers a good part of the image in its class colour
