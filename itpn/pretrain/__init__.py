"""Integral pre-training of iTPN / Fast-iTPN: pixel MIM through the feature pyramid plus multi-stage
MFM with an EMA teacher (paper sections 3.2-3.4), or the released iTPN-CLIP distillation (section 5.1,
``itpn_clip/modeling_pretrain.py``). ``run_pretraining(PretrainConfig.from_recipe("itpn_pixel", ...))``,
or ``python -m itpn.pretrain --config params.yaml [--recipe NAME]`` (also under ``torchrun``)."""
from .config import EXPORT_NAME, RECIPES, PretrainConfig
from .data import SkipUnreadable, pretrain_transform
from .masking import Mask, MaskGenerator
from .objective import ClipDistillModel, IntegralPretrainModel, TeacherTargets
from .teachers import ClipTeacher, EMATeacher
from .trainer import NonFiniteLossError, PretrainResult, Trainer, run_pretraining

__all__ = [
    "ClipDistillModel", "ClipTeacher", "EMATeacher", "EXPORT_NAME", "IntegralPretrainModel", "Mask", "MaskGenerator",
    "NonFiniteLossError", "PretrainConfig", "RECIPES", "PretrainResult", "SkipUnreadable", "TeacherTargets", "Trainer",
    "pretrain_transform", "run_pretraining",
]
