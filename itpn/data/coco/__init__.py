"""COCO 2017 instances: generator, validator and detection/instance-segmentation dataset.

Layout (``url``)::

    annotations/instances_train2017.json
    annotations/instances_val2017.json
    train2017/<id:012d>.jpg
    val2017/<id:012d>.jpg

Annotations may carry polygons (lists of ``x, y`` pairs), uncompressed RLE (``counts`` list, as COCO's
crowd regions) or compressed RLE (``counts`` string); pycocotools turns all three into masks.

One module a job: ``layout`` (file names, RLE), ``generate``, ``dataset``, ``validate``.
"""
from .dataset import CocoDetection, load_coco
from .generate import generate_coco
from .validate import annotation_problems, validate_coco

__all__ = [
    "CocoDetection", "annotation_problems", "generate_coco", "load_coco", "validate_coco",
]
