"""A stage's cache key: one key, computed here, that decides whether a stage runs again.

Three runners could cache a stage; one key serves them all, and this is why it is ours:

* Prefect's task cache (``cache_policy``) keys a task on its arguments and source: for our tasks the
  parameters file's path, not its contents, nor the upstream stages' results, nor the library code the
  stage's process runs. It would return stale results, so every task runs with ``NO_CACHE``.
* DVC keys a stage on the deps and params ``dvc.yaml`` declares, but only under ``dvc repro``; there it
  decides alone (its commands pass ``--force``) and this key still says whether the run folder a killed
  run left may be resumed.
* ``stage_key`` hashes what a stage's result depends on: the model, the device, the stage's section of
  the parameters, the world size of a training stage, its upstream stages' keys, and the code under
  ``CODE_ROOTS`` (the library, the configs and the stage's own code in ``flows``). ``result.json``
  carries it; a stage whose result holds the same key is not run again (``flows.stages.run``), the
  flows record each run under it, and ``dvc.yaml`` lists the same code as each stage's deps.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any

from ..outline import DISTRIBUTED_STAGES, FINETUNE_TASKS, REPO_ROOT, finetune_stage
from ..params import PipelineParams
from .result import StageResult

CODE_ROOTS = ("itpn", "configs", "flows/outline.py", "flows/params.py", "flows/stages")
UPSTREAM = {
    "pretrain": ["prepare_data"],
    **{finetune_stage(task): ["prepare_data", "pretrain"] for task in FINETUNE_TASKS},
}


def code_digest() -> str:
    """Hash of the code under ``CODE_ROOTS``: a change to any of it invalidates cached stages."""
    digest = hashlib.sha256()
    for root in CODE_ROOTS:
        path = REPO_ROOT / root
        files = sorted(path.rglob("*")) if path.is_dir() else [path]
        for file in files:
            if file.is_file() and file.suffix in (".py", ".yaml", ".yml", ".json") and "__pycache__" not in file.parts:
                digest.update(str(file.relative_to(REPO_ROOT)).encode())
                digest.update(file.read_bytes())
    return digest.hexdigest()[:16]


def stage_inputs(stage: str, params: PipelineParams) -> dict[str, Any]:
    """What a stage's result depends on besides the code: its parameters and its upstream stages' keys."""
    sections = {
        "prepare_data": params.data.model_dump(),
        "pretrain": params.pretrain,
        "benchmark_acceleration": params.benchmark.model_dump(),
    }
    inputs: dict[str, Any] = {"model": params.experiment.model, "model_kwargs": params.experiment.model_kwargs,
                              "device": params.experiment.device,
                              "section": sections.get(stage) or params.finetune.get(stage.removeprefix("finetune_"))}
    if stage in DISTRIBUTED_STAGES:  # the world size sets the global batch and the scaled learning rate
        inputs["world_size"] = max(1, params.experiment.gpus)
    for upstream in UPSTREAM.get(stage, []):
        path = params.stage_dir(upstream) / "result.json"
        inputs[upstream] = StageResult.read(path).key if path.exists() else None
    return inputs


def stage_key(stage: str, params: PipelineParams) -> str:
    """The cache key of ``stage`` under ``params``: its inputs and the code digest, hashed."""
    payload = json.dumps({"stage": stage, "inputs": stage_inputs(stage, params), "code": code_digest()},
                         sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]
