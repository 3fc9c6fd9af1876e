"""COCO 2017 instances: generator, validator and detection/instance-segmentation dataset.

Layout (``url``)::

    annotations/instances_train2017.json
    annotations/instances_val2017.json
    train2017/<id:012d>.jpg
    val2017/<id:012d>.jpg

Annotations may carry polygons (lists of ``x, y`` pairs), uncompressed RLE (``counts`` list, as COCO's
crowd regions) or compressed RLE (``counts`` string); pycocotools turns all three into masks.

Objects365 v2 (``OBJECTS365_V2``) is the same format in its own layout (mmdet's reading of the release)::

    annotations/zhiyuan_objv2_train.json    train/patch<k>/<name>.jpg
    annotations/zhiyuan_objv2_val.json      val/patch<k>/<name>.jpg

One module a job: ``layout`` (file names, RLE), ``generate``, ``dataset``, ``validate``.
"""
from .dataset import CocoDetection, load_coco
from .generate import generate_coco, generate_objects365
from .layout import COCO_2017, OBJECTS365_V2, CocoStyleLayout
from .validate import annotation_problems, validate_coco, validate_objects365

__all__ = [
    "COCO_2017", "OBJECTS365_V2", "CocoDetection", "CocoStyleLayout", "annotation_problems", "generate_coco",
    "generate_objects365", "load_coco", "validate_coco", "validate_objects365",
]
