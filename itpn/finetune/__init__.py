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
from .config import RECIPES, ClassificationConfig

__all__ = [
    "ClassificationConfig", "ClassificationResult", "ClassificationTrainer", "RECIPES", "evaluate", "evaluate_variants",
    "read_export_metadata", "run_classification",
]
