"""Data layer: readers, generators, validators and manifests for ImageNet-1K, COCO 2017, Objects365 v2, ADE20K, DOTA v1.0.

Every location is an fsspec URL (a plain path is the local disk). The pipeline's first stage calls
:func:`prepare`, which (optionally generates,) validates and writes ``manifest.json``.
"""

from ._gen import GeneratedData
from .ade20k import ADE20KSegmentation, clear_bad_values, generate_ade20k, reduce_zero_label
from .classes import (
    ADE20K_CLASSES,
    ADE20K_IGNORE_INDEX,
    DOTA_CLASSES,
    coco_categories,
    imagenet_wnids,
    objects365_categories,
)
from .coco import OBJECTS365_V2, CocoDetection, annotation_problems, generate_coco, generate_objects365, load_coco
from .dota import (
    DOTADataset,
    generate_dota,
    merge_dota_detections,
    parse_label_text,
    parse_patch_name,
    split_dota,
    usable_objects,
    write_dota_task1,
)
from .errors import (
    AnnotationSchemaError,
    BoxOutOfRangeError,
    CorruptImageError,
    DataError,
    DotaLineError,
    DuplicateError,
    EmptyFileError,
    LayoutError,
    MaskValueError,
    PolygonError,
    Problem,
    UnknownClassError,
    ValidationReport,
)
from .imagenet import ImageNetFolder, ImageNetTarShards, generate_imagenet, shard_imagenet
from .manifest import load_manifest
from .prepare import GENERATORS, PreparedData, prepare, write_manifest
from .transforms import (
    build_classification_transform,
    build_detection_transform,
    build_rotated_detection_transform,
    build_segmentation_transform,
    detection_collate,
)
from .validate import KINDS, validate

__all__ = [
    "ADE20K_CLASSES",
    "ADE20K_IGNORE_INDEX",
    "ADE20KSegmentation",
    "AnnotationSchemaError",
    "BoxOutOfRangeError",
    "CocoDetection",
    "CorruptImageError",
    "DOTADataset",
    "DOTA_CLASSES",
    "DataError",
    "DotaLineError",
    "DuplicateError",
    "EmptyFileError",
    "GENERATORS",
    "GeneratedData",
    "ImageNetFolder",
    "ImageNetTarShards",
    "KINDS",
    "LayoutError",
    "MaskValueError",
    "PolygonError",
    "PreparedData",
    "Problem",
    "UnknownClassError",
    "ValidationReport",
    "annotation_problems",
    "build_classification_transform",
    "build_detection_transform",
    "build_rotated_detection_transform",
    "build_segmentation_transform",
    "clear_bad_values",
    "coco_categories",
    "objects365_categories",
    "OBJECTS365_V2",
    "detection_collate",
    "generate_ade20k",
    "generate_coco",
    "generate_objects365",
    "generate_dota",
    "generate_imagenet",
    "imagenet_wnids",
    "load_coco",
    "load_manifest",
    "merge_dota_detections",
    "parse_label_text",
    "parse_patch_name",
    "prepare",
    "reduce_zero_label",
    "shard_imagenet",
    "split_dota",
    "usable_objects",
    "validate",
    "write_dota_task1",
    "write_manifest",
]
