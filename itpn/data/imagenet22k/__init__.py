"""ImageNet-22K (the paper's Table 4 "21K FT" intermediate fine-tuning): three layouts, an index built once
per class and cached (``build_index``), and a dataset that reads only that index (``ImageNet22k``).

One module a job: ``layout`` (what a URL holds), ``index`` (the cached sample lists), ``dataset``.
"""
from .dataset import ImageNet22k
from .index import ClassIndex, build_index, read_class_index, read_counts
from .layout import FULL_CLASS_COUNT, Layout, detect_layout

__all__ = ["FULL_CLASS_COUNT", "ClassIndex", "ImageNet22k", "Layout", "build_index", "detect_layout",
           "read_class_index", "read_counts"]
