"""The pipeline's outline, defined once: the fine-tuning tasks (the data set each reads, the library code
that trains it) and the stages in the order they run.

Everything else imports these: the stage table (``flows.stages.bodies``), the flows, the CLI, the
parameters' checks, and ``dvc.yaml``, whose templated fine-tune stage runs ``foreach`` over
``FINETUNE_TASKS`` read from this file (DVC reads a Python file's literal assignments as variables, so
``FINETUNE_TASKS`` stays a literal). ``prefect.yaml`` has one deployment per stage; a test holds it
to ``STAGE_NAMES``.
"""
from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent  # stages run here; params.yaml's config paths are relative to it
FINETUNE_TASKS = {
    "classification": {"data": "imagenet", "library": "itpn/finetune"},
    "detection": {"data": "coco", "library": "itpn/mmlab"},
    "segmentation": {"data": "ade20k", "library": "itpn/mmlab"},
    "rotated": {"data": "dota", "library": "itpn/mmlab"},
}
RUN_FOLDER = "run"  # a stage's library files: <stage folder>/run (outs of dvc.yaml, resumed after a kill)


def finetune_stage(task: str) -> str:
    """The stage that fine-tunes ``task``: ``finetune_<task>``."""
    return f"finetune_{task}"


# Training stages: torchrun launches them on experiment.gpus processes and they hold a training slot; data
# preparation and the single-device benchmark run in one process.
DISTRIBUTED_STAGES = ("pretrain", *map(finetune_stage, FINETUNE_TASKS))
STAGE_NAMES = ("prepare_data", *DISTRIBUTED_STAGES, "benchmark_acceleration")
