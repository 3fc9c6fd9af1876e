"""OpenMMLab adapters: the iTPN backbone + pre-trained pyramid as an mmdet / mmseg / mmrotate backbone,
layer-wise lr decay, COCO / ADE20K without the samples the manifest lists as skipped, DOTA through the
project's reader with DOTA's merged metric, checkpoints a kill cannot tear, and the entry points ``run_detection``,
``run_segmentation``, ``run_rotated``.

Needs the OpenMMLab stack (``scripts/install_openmmlab.sh``); the rest of ``itpn`` never imports it.
Configs load this package with ``custom_imports=dict(imports=['itpn.mmlab'])``.
"""
try:
    import mmdet.registry
    import mmrotate.registry
    import mmseg.registry
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError(f"itpn.mmlab needs the OpenMMLab stack ({error.name} is missing): run "
                      f"scripts/install_openmmlab.sh, or pip install the 'mmlab' extra") from error

from .backbone import ITPNBackbone
from .checkpoints import AtomicCheckpointRunner, checkpoints, resume_point
from .datasets import ITPNADE20KDataset, ITPNCocoDataset
from .dota import DOTAMergedMetric, ITPNDOTADataset, read_label_file
from .metric_hook import MetricRecordsHook
from .optim import LayerDecayOptimWrapperConstructor, layer_decay_groups
from .random_state import RandomStateHook
from .runner import load_config, run_detection, run_rotated, run_segmentation, run_task

for _registry in (mmdet.registry.MODELS, mmseg.registry.MODELS, mmrotate.registry.MODELS):
    _registry.register_module(module=ITPNBackbone, force=True)

__all__ = [
    "AtomicCheckpointRunner", "DOTAMergedMetric", "ITPNADE20KDataset", "ITPNBackbone", "ITPNCocoDataset",
    "ITPNDOTADataset", "LayerDecayOptimWrapperConstructor", "MetricRecordsHook", "RandomStateHook",
    "checkpoints", "layer_decay_groups", "load_config", "read_label_file", "resume_point", "run_detection",
    "run_rotated", "run_segmentation", "run_task",
]
