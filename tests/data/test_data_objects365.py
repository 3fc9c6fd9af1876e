"""Objects365 v2 as a data set kind: the release's layout (patch folders, release-style file names), checked as
COCO is -- each bad record dropped on its own, named and counted -- and read by our reader and mmdet's."""
from __future__ import annotations

import json

import numpy as np
import pytest

import itpn.data as D
from itpn.data.coco import OBJECTS365_V2, CocoDetection


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    root = tmp_path_factory.mktemp("objects365")
    url = str(root / "objects365")
    return url, D.generate_objects365(url, seed=3, num_classes=6, train_images=6, val_images=3, image_size=64)


def test_the_layout_is_the_releases_and_our_reader_gives_the_generated_boxes(generated):
    url, data = generated
    annotations = json.loads(open(f"{url}/annotations/zhiyuan_objv2_train.json").read())
    assert len(annotations["categories"]) == 365 and annotations["categories"][0] == {
        "id": 1, "name": D.objects365_categories()[0][1], "supercategory": ""}
    record = annotations["images"][0]
    assert record["file_name"] == "images/v2/patch1/objects365_v2_00000001.jpg"
    assert OBJECTS365_V2.image_path("train", record["file_name"]) == "train/patch1/objects365_v2_00000001.jpg"

    dataset = CocoDetection(url, "train", layout=OBJECTS365_V2, with_masks=False)
    assert len(dataset) == 6 and dataset.classes == [name for _, name in D.objects365_categories()]
    _, target = dataset[0]
    expected = [o["bbox"] for o in data.samples[0]["objects"]]
    boxes = target["boxes"].numpy()
    np.testing.assert_allclose(boxes[:, 2:] - boxes[:, :2], np.array(expected)[:, 2:], atol=1e-4)


def test_bad_records_are_dropped_one_by_one_and_counted(generated, tmp_path):
    import shutil

    url = str(tmp_path / "copy")
    shutil.copytree(generated[0], url)
    path = f"{url}/annotations/zhiyuan_objv2_train.json"
    document = json.loads(open(path).read())
    first, second = document["annotations"][0], document["annotations"][1]
    first["bbox"][3] = 0.0  # a zero-height box
    second["category_id"] = 999  # a category the file does not list
    document["images"].append({"id": 99, "file_name": "images/v2/patch0/objects365_v2_00000099.jpg",
                               "width": 64, "height": 64})  # listed, not on disk
    document["images"].append(dict(document["images"][0], id=100,
                                   file_name="images/v1/" + document["images"][0]["file_name"].split("/", 2)[2]))
    open(path, "w").write(json.dumps(document))

    report = D.validate("objects365", url)
    by_code = {}
    for problem in report.problems:
        by_code.setdefault(problem.code, []).append(problem)
    assert [(p.record, p.message) for p in by_code["BoxOutOfRangeError"]] == [
        ("annotations[0] (id 1)", f"box {first['bbox']} has no area")]
    assert [p.message for p in by_code["UnknownClassError"]] == ["category_id 999 is not in the categories list"]
    missing = [p for p in by_code["LayoutError"] if p.file.endswith("train/patch0/objects365_v2_00000099.jpg")]
    assert missing and "missing" in missing[0].message
    assert any("image id 1 as well" in p.message for p in by_code["DuplicateError"])
    # the good records around them stay: every generated image, every annotation but the two bad ones
    assert report.counts["train/images"] == 6
    assert report.counts["train/annotations"] == len(document["annotations"]) - 2


def test_prepare_writes_a_manifest_mmdet_reads_through_our_dataset(generated):
    pytest.importorskip("mmdet")
    from itpn.mmlab.datasets import ITPNObjects365Dataset

    url, _ = generated
    prepared = D.prepare("objects365", url, generate=False)
    assert prepared.manifest["kind"] == "objects365" and prepared.manifest["counts"]["val/images"] == 3
    dataset = ITPNObjects365Dataset(data_root=url, ann_file="annotations/zhiyuan_objv2_val.json",
                                    data_prefix=dict(img="val/"), pipeline=[], test_mode=True)
    assert len(dataset) == 3
    info = dataset.get_data_info(0)
    assert info["img_path"].endswith("val/patch1/objects365_v1_00000001.jpg") and info["instances"]
