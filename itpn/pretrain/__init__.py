"""Integral pre-training of iTPN / Fast-iTPN: MIM through the feature pyramid plus multi-stage MFM
with an EMA or CLIP teacher (paper sections 3.2-3.4, 5.1). ``run_pretraining(PretrainConfig(...))``,
or ``python -m itpn.pretrain --config params.yaml`` (also under ``torchrun``)."""
from .config import PretrainConfig
from .data import SkipUnreadable, pretrain_transform
from .masking import Mask, MaskGenerator
from .objective import IntegralPretrainModel, TeacherTargets
from .teachers import ClipTeacher, EMATeacher
from .trainer import NonFiniteLossError, PretrainResult, Trainer, run_pretraining

__all__ = [
    "ClipTeacher", "EMATeacher", "IntegralPretrainModel", "Mask", "MaskGenerator",
    "NonFiniteLossError", "PretrainConfig", "PretrainResult", "SkipUnreadable", "TeacherTargets", "Trainer",
    "pretrain_transform", "run_pretraining",
]
