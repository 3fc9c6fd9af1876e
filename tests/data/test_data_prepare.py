"""prepare(): the same generate → validate → manifest path for generated and real data; manifests; fsspec."""

from __future__ import annotations

import importlib.util
import json
import uuid

import pytest

import itpn.data as D
from itpn.data.fs import open_fs

DEMO = {
    "imagenet": dict(num_classes=3, train_per_class=2, val_per_class=1, image_size=32),
    "imagenet_tar": dict(num_classes=3, train_per_class=2, val_per_class=1, image_size=32, samples_per_shard=4),
    "coco": dict(num_classes=2, train_images=3, val_images=1, image_size=64),
    "objects365": dict(num_classes=2, train_images=3, val_images=1, image_size=64),
    "ade20k": dict(num_classes=2, train_images=2, val_images=1, image_size=32),
    "dota": dict(num_classes=2, train_images=1, val_images=1, image_size=128, objects_per_image=(2, 3), object_scale=0.4),
}
READERS = {
    "imagenet": lambda url: D.ImageNetFolder(url, "train"),
    "imagenet_tar": lambda url: D.ImageNetTarShards(url, "train"),
    "coco": lambda url: D.CocoDetection(url, "train"),
    "objects365": lambda url: D.CocoDetection(url, "train", layout=D.OBJECTS365_V2),
    "ade20k": lambda url: D.ADE20KSegmentation(url, "train"),
    "dota": lambda url: D.DOTADataset(url, "train"),
}


@pytest.fixture
def url():
    location = f"memory://data-prepare-{uuid.uuid4().hex}"
    yield location
    fs, root = open_fs(location)
    if fs.exists(root):
        fs.rm(root, recursive=True)


@pytest.mark.parametrize("kind", sorted(DEMO))
def test_prepare_generates_validates_and_writes_manifest(url, kind):
    prepared = D.prepare(kind, url, generate=True, seed=7, **DEMO[kind])
    manifest = prepared.manifest
    assert D.load_manifest(url) == manifest
    assert manifest["kind"] == kind and manifest["source_url"] == url
    assert manifest["content_hash"].startswith("sha256:") and len(manifest["content_hash"]) == 71
    assert manifest["num_skipped"] == 0 and manifest["skipped"] == []
    assert manifest["problems"] == {"errors": 0, "warnings": 0, "by_code": {}}
    assert manifest["generator"]["params"]["seed"] == 7
    assert manifest["num_classes"] == {"imagenet": 3, "imagenet_tar": 3, "coco": 80, "objects365": 365, "ade20k": 150,
                                     "dota": 15}[kind]
    assert manifest["files"] == len(prepared.report.file_hashes) > 0
    truth = [s for s in prepared.generated.samples if s["split"] == "train"]
    assert manifest["counts"]["train/images"] == len(truth) == len(READERS[kind](url))
    # the same path for data that was not generated here: only generate=False
    again = D.prepare(kind, url)
    assert again.manifest == manifest and again.generated is None


def test_prepare_reuses_identical_generation_and_regenerates_on_change(url):
    first = D.prepare("coco", url, generate=True, **DEMO["coco"])
    reused = D.prepare("coco", url, generate=True, **DEMO["coco"])
    assert reused.generated is None and reused.manifest == first.manifest
    with pytest.raises(FileExistsError, match="overwrite=True"):
        D.prepare("coco", url, generate=True, **{**DEMO["coco"], "train_images": 4})
    changed = D.prepare("coco", url, generate=True, overwrite=True, **{**DEMO["coco"], "train_images": 4})
    assert changed.manifest["counts"]["train/images"] == 4
    assert changed.manifest["content_hash"] != first.manifest["content_hash"]


def test_manifest_drops_generator_when_files_changed(url):
    D.prepare("imagenet", url, generate=True, **DEMO["imagenet"])
    fs, root = open_fs(url)
    extra = next(p for p in fs.find(f"{root}/train") if p.endswith(".JPEG"))
    fs.pipe_file(extra.replace(".JPEG", "_copy.JPEG"), fs.cat_file(extra))
    manifest = D.prepare("imagenet", url).manifest
    assert manifest["generator"] is None
    assert manifest["problems"]["by_code"] == {"DuplicateError": 1}


def test_generator_arguments_need_generate(url):
    with pytest.raises(TypeError, match="generate=True"):
        D.prepare("coco", url, seed=1)
    with pytest.raises(ValueError, match="unknown data-set kind 'cifar'"):
        D.prepare("cifar", url)


def test_manifest_on_local_disk_is_deterministic_json(tmp_path):
    target = tmp_path / "ade"
    D.prepare("ade20k", str(target), generate=True, **DEMO["ade20k"])
    first = (target / "manifest.json").read_bytes()
    D.write_manifest("ade20k", str(target), generator=json.loads(first)["generator"])
    assert (target / "manifest.json").read_bytes() == first
    manifest = json.loads(first)
    assert manifest["counts"] == {"train/images": 2, "val/images": 1}
    assert set(manifest["class_counts"]["train"]) <= set(D.ADE20K_CLASSES)


@pytest.mark.skipif(importlib.util.find_spec("s3fs") is not None, reason="s3fs is installed")
def test_object_storage_without_its_filesystem_package_names_the_fix():
    with pytest.raises(ValueError, match="install `s3fs`"):
        D.validate("imagenet", "s3://some-bucket/imagenet")


def test_public_api_is_exported():
    for name in ("generate_imagenet", "generate_coco", "generate_ade20k", "generate_dota", "ImageNetFolder",
                 "ImageNetTarShards", "CocoDetection", "ADE20KSegmentation", "DOTADataset", "validate",
                 "write_manifest", "split_dota", "merge_dota_detections", "build_classification_transform", "prepare"):
        assert name in D.__all__ and callable(getattr(D, name))
    assert set(D.KINDS) == set(D.GENERATORS) == set(DEMO)
