"""DOTA through the project's reader, patch split, merge and DOTA's metric on full images."""
import numpy as np
import pytest
import torch

from itpn.data import DOTA_CLASSES, split_dota
from itpn.data.errors import UnknownClassError
from itpn.mmlab import DOTAMergedMetric, ITPNDOTADataset, read_label_file


@pytest.fixture(scope="module")
def split(dota_dir, tmp_path_factory):
    root = str(tmp_path_factory.mktemp("split"))
    split_dota(dota_dir, root, patch_size=64, gap=32, overwrite=True)  # objects (< 32 px) are whole in a patch
    return root


def test_dataset_reads_patches_with_header_lines(split):
    dataset = ITPNDOTADataset(data_root=split, ann_file="train/labelTxt/", data_prefix=dict(img_path="train/images/"),
                              pipeline=[], lazy_init=True)
    data = dataset.load_data_list()
    assert data and all(item["img_path"].endswith(".png") for item in data)
    instances = [inst for item in data for inst in item["instances"]]
    assert instances and all(len(inst["bbox"]) == 8 and 0 <= inst["bbox_label"] < 15 for inst in instances)


def _patch_results(split_root, keep_cut):
    """Ground truth of every val patch as detections (score 1) in the metric's result format, each box shrunk
    by 3 % (IoU ~0.94): mmcv's rotated IoU of two exactly equal boxes is unreliable (coincident edges)."""
    from mmrotate.structures.bbox import qbox2rbox

    results = []
    import glob
    import os

    for path in sorted(glob.glob(os.path.join(split_root, "val", "labelTxt", "*.txt"))):
        polygons, labels, difficulty = read_label_file(path, DOTA_CLASSES)
        keep = np.ones(len(labels), bool) if keep_cut else difficulty != 2
        boxes = qbox2rbox(torch.from_numpy(polygons[keep])).numpy()
        boxes[:, 2:4] *= 0.97
        results.append(({}, dict(img_id=os.path.splitext(os.path.basename(path))[0], bboxes=boxes,
                                 scores=np.ones(int(keep.sum()), np.float32), labels=labels[keep])))
    return results


def test_merged_ground_truth_scores_full_map(dota_dir, split):
    metric = DOTAMergedMetric(full_ann_dir=f"{dota_dir}/val/labelTxt")
    metric.dataset_meta = dict(classes=DOTA_CLASSES)
    assert metric.compute_metrics(_patch_results(split, keep_cut=False))["mAP"] == pytest.approx(1.0)


def test_merged_metric_counts_missed_objects(dota_dir, split):
    metric = DOTAMergedMetric(full_ann_dir=f"{dota_dir}/val/labelTxt")
    metric.dataset_meta = dict(classes=DOTA_CLASSES)
    results = _patch_results(split, keep_cut=False)
    missed = np.bincount(np.concatenate([res["labels"] for _, res in results])).argmax()  # never detect one class
    partial = [(ann, dict(res, bboxes=res["bboxes"][keep], scores=res["scores"][keep], labels=res["labels"][keep]))
               for ann, res in results for keep in [res["labels"] != missed]]
    found_classes = len(np.unique(np.concatenate([res["labels"] for _, res in results])))
    assert metric.compute_metrics(partial)["mAP"] == pytest.approx(1.0 - 1.0 / found_classes)


def test_a_line_with_a_name_dota_lacks_is_dropped_alone(tmp_path):
    path = tmp_path / "P0001.txt"
    path.write_text("0 0 10 0 10 10 0 10 spaceship 0\n0 0 20 0 20 20 0 20 plane 1\n")
    polygons, labels, difficulty = read_label_file(str(path), DOTA_CLASSES)
    assert polygons.tolist() == [[0, 0, 20, 0, 20, 20, 0, 20]]
    assert labels.tolist() == [DOTA_CLASSES.index("plane")] and difficulty.tolist() == [1]


def test_a_dota_class_outside_the_datasets_classes_names_the_file(tmp_path):
    path = tmp_path / "P0001.txt"
    path.write_text("0 0 10 0 10 10 0 10 ship 0\n")
    with pytest.raises(UnknownClassError, match="P0001.txt.*ship"):
        read_label_file(str(path), ("plane", "harbor"))
