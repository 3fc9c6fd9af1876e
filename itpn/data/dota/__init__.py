"""DOTA v1.0: generator, validator, oriented-object dataset, 1024×1024 patch split and detection merge.

Layout (``url``)::

    train/images/P0000.png        train/labelTxt/P0000.txt
    val/images/...                val/labelTxt/...
    test/images/...               (optional, no labels)

A ``labelTxt`` file may start with ``imagesource:`` and ``gsd:`` lines; every other non-empty line is
``x1 y1 x2 y2 x3 y3 x4 y4 class-name difficulty`` (difficulty 0/1; the patch split writes 2 for objects
cut by the patch border, as the DOTA devkit does).

Large images are cut into overlapping ``patch_size`` windows (:func:`split_dota`, the standard
1024/200 setting by default) named ``<image>__<patch_size>__<x>___<y>``; detections on patches are
shifted back and merged per class with polygon NMS (:func:`merge_dota_detections`).

One module a job: ``layout`` (the label format), ``generate``, ``dataset``, ``patches`` (split and
merge), ``validate``.
"""
from .dataset import DOTADataset
from .generate import generate_dota
from .layout import parse_label_text, usable_objects
from .patches import merge_dota_detections, parse_patch_name, split_dota, write_dota_task1
from .validate import validate_dota

__all__ = [
    "DOTADataset", "generate_dota", "merge_dota_detections", "parse_label_text", "parse_patch_name",
    "split_dota", "usable_objects", "validate_dota", "write_dota_task1",
]
