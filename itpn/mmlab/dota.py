"""DOTA for mmrotate through the project's reader, and DOTA's metric on full images after merging patches.

``ITPNDOTADataset`` reads the ``labelTxt`` files ``itpn.data.split_dota`` writes (with their
``imagesource:``/``gsd:`` header lines, which mmrotate's own reader cannot parse) through
``itpn.data.parse_label_text``. ``DOTAMergedMetric`` shifts each patch's detections back into its
image and merges them per class with polygon NMS (``itpn.data.merge_dota_detections``), then scores
them against the unsplit ``labelTxt`` files with mmrotate's ``eval_rbbox_map`` (VOC07 11-point AP at
IoU 0.5 between polygons, difficult objects ignored): DOTA's Task-1 evaluation.
"""
from __future__ import annotations

import glob
import os
from multiprocessing.pool import ThreadPool
from types import SimpleNamespace
from typing import Any, Sequence
from unittest import mock

import numpy as np
import torch
from mmengine.logging import MMLogger
from mmrotate.datasets import DOTADataset
from mmrotate.evaluation import DOTAMetric, eval_rbbox_map
from mmrotate.evaluation.functional import mean_ap as mmrotate_mean_ap
from mmrotate.registry import DATASETS, METRICS
from mmrotate.structures.bbox import rbox2qbox

from itpn.data import DOTA_CLASSES, merge_dota_detections, usable_objects
from itpn.data.errors import LayoutError, UnknownClassError


def read_label_file(path: str, classes: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(polygons (N, 8), labels (N,), difficulty (N,))`` of one labelTxt file.

    A bad line (``itpn.data.usable_objects``: unparsable, unknown DOTA class, zero area) is dropped on its
    own with a warning naming the file and line; the image keeps its other objects. A DOTA class outside
    the data set's ``classes`` raises.
    """
    with open(path) as handle:
        _, objects, problems = usable_objects(handle.read())
    for problem in problems:
        MMLogger.get_current_instance().warning(f"{path} (line {problem.line}): {problem.message}; line dropped")
    index = {name: i for i, name in enumerate(classes)}
    unknown = sorted({o.name for o in objects} - set(index))
    if unknown:
        raise UnknownClassError(f"classes {unknown} are not in the dataset's classes", file=path,
                                fix="set metainfo=dict(classes=...) of the dataset to the label set of the data")
    polygons = np.array([o.polygon for o in objects], dtype=np.float32).reshape(-1, 8)
    labels = np.array([index[o.name] for o in objects], dtype=np.int64)
    difficulty = np.array([o.difficulty for o in objects], dtype=np.int64)
    return polygons, labels, difficulty


def _label_files(folder: str) -> list[str]:
    files = sorted(glob.glob(os.path.join(folder, "*.txt")))
    if not files:
        raise LayoutError("no labelTxt files", file=folder,
                          fix="point it at <data>/<split>/labelTxt written by itpn.data.split_dota")
    return files


@DATASETS.register_module()
class ITPNDOTADataset(DOTADataset):
    """mmrotate's ``DOTADataset`` reading labelTxt files through ``itpn.data`` (the 15 DOTA v1.0 classes)."""

    METAINFO = dict(DOTADataset.METAINFO, classes=tuple(DOTA_CLASSES))

    def load_data_list(self) -> list[dict[str, Any]]:
        classes = self.metainfo["classes"]
        data_list = []
        for path in _label_files(self.ann_file):
            image_id = os.path.splitext(os.path.basename(path))[0]
            polygons, labels, difficulty = read_label_file(path, classes)
            instances = [dict(bbox=polygon.tolist(), bbox_label=int(label), ignore_flag=int(level > self.diff_thr))
                         for polygon, label, level in zip(polygons, labels, difficulty)]
            file_name = f"{image_id}.{self.img_suffix}"
            data_list.append(dict(img_id=image_id, file_name=file_name, instances=instances,
                                  img_path=os.path.join(self.data_prefix["img_path"], file_name)))
        return data_list


@METRICS.register_module()
class DOTAMergedMetric(DOTAMetric):
    """DOTA Task-1 mAP on full images from detections on ``split_dota`` patches.

    ``full_ann_dir``: the unsplit ``labelTxt`` folder of the evaluated split (every image in it
    counts, with or without detections). ``merge_iou_thr``: polygon-NMS threshold of the merge.
    ``nproc``: worker threads of ``eval_rbbox_map``'s TP/FP computation.
    """

    def __init__(self, full_ann_dir: str, merge_iou_thr: float = 0.1, nproc: int = 1, **kwargs: Any):
        super().__init__(predict_box_type="rbox", **kwargs)
        self.full_ann_dir = full_ann_dir
        self.merge_iou_thr = merge_iou_thr
        self.nproc = nproc

    def compute_metrics(self, results: list) -> dict[str, float]:
        classes = self.dataset_meta["classes"]
        detections = {}
        for _, prediction in results:
            boxes = torch.from_numpy(np.asarray(prediction["bboxes"], dtype=np.float32)).reshape(-1, 5)
            detections[prediction["img_id"]] = {"polys": rbox2qbox(boxes).numpy(), "scores": prediction["scores"],
                                                "labels": prediction["labels"]}
        merged = merge_dota_detections(detections, iou_thr=self.merge_iou_thr)
        det_results, annotations = [], []
        for path in _label_files(self.full_ann_dir):
            image_id = os.path.splitext(os.path.basename(path))[0]
            polygons, labels, difficulty = read_label_file(path, classes)
            difficult = difficulty == 1
            annotations.append(dict(bboxes=polygons[~difficult], labels=labels[~difficult],
                                    bboxes_ignore=polygons[difficult], labels_ignore=labels[difficult]))
            found = merged.get(image_id, {"polys": np.zeros((0, 8)), "scores": np.zeros(0),
                                          "labels": np.zeros(0, dtype=np.int64)})
            det_results.append([
                np.hstack([found["polys"][found["labels"] == label],
                           found["scores"][found["labels"] == label][:, None]]).astype(np.float32)
                for label in range(len(classes))])
        missing = sorted(set(merged) - {os.path.splitext(os.path.basename(p))[0]
                                        for p in _label_files(self.full_ann_dir)})
        if missing:
            raise LayoutError(f"patches of images {missing[:5]} have no labelTxt file in the unsplit annotations",
                              file=self.full_ann_dir, fix="point full_ann_dir at the labelTxt folder that was split")
        # eval_rbbox_map opens a 'spawn' process pool; worker processes re-import the caller's main
        # module, which hangs under some hosts (a pytest session that ran other tests first). The
        # per-image TP/FP work is small, so run it on threads in this process instead.
        if not hasattr(mmrotate_mean_ap, "get_context"):
            raise RuntimeError("mmrotate's mean_ap no longer opens its pool through get_context; update "
                               "itpn/mmlab/dota.py to the installed mmrotate")
        threads = SimpleNamespace(Pool=ThreadPool)
        with mock.patch.object(mmrotate_mean_ap, "get_context", lambda method: threads):
            mean_ap, _ = eval_rbbox_map(det_results, annotations, iou_thr=self.iou_thrs[0],
                                        use_07_metric=self.use_07_metric, box_type="qbox", dataset=list(classes),
                                        logger=MMLogger.get_current_instance(), nproc=self.nproc)
        return {"mAP": float(mean_ap)}
