"""Fine-tuning from the integral pre-training export: ImageNet classification here (timm), COCO
detection, ADE20K segmentation and DOTA rotated detection through the OpenMMLab adapters in
``itpn.mmlab`` (optional: ``scripts/install_openmmlab.sh``). ``python -m itpn.finetune <task>``
runs any of them from a config."""
from .classification import (
    ClassificationResult,
    ClassificationTrainer,
    evaluate,
    evaluate_variants,
    read_export_metadata,
    run_classification,
)
from .config import RECIPES, ClassificationConfig, model_size
from .records import MetricRecord, read_rows, write_metrics

__all__ = [
    "ClassificationConfig", "ClassificationResult", "ClassificationTrainer", "MetricRecord", "RECIPES", "evaluate",
    "evaluate_variants", "model_size", "read_export_metadata", "read_rows", "run_classification", "write_metrics",
]
