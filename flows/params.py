"""The pipeline's parameters: ``params.yaml``, typed, so the CLI, Prefect and DVC validate them alike.

Each section is handed to the library's own config (``PretrainConfig`` and the fine-tuning
configs), which reject unknown keys by name; this file fixes only the pipeline's outline.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

DATA_KINDS = ("imagenet", "coco", "ade20k", "dota")
FINETUNE_TASKS = ("classification", "detection", "segmentation", "rotated")
STAGE_NAMES = ("prepare_data", "pretrain", *(f"finetune_{task}" for task in FINETUNE_TASKS), "benchmark_acceleration")


def _anchor(location: str, base: Path) -> str:
    if "://" in location or Path(location).is_absolute():
        return location
    return os.path.normpath(base / location)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ExperimentParams(Strict):
    name: str = "demo"
    model: str = "fast_itpn_tiny_patch16_224"
    model_kwargs: dict[str, Any] = Field(default_factory=dict, description="extra timm.create_model arguments")
    device: str = "cpu"
    gpus: int = Field(1, ge=0, description="GPUs per node for torchrun; 1 runs in one process")
    cpu_jobs: int = Field(2, ge=1, description="training stages at once on CPU (the slots of the `cpu-training` "
                          "concurrency limit when it is created; the fastest bound for the demo on 2 cores, README)")
    output_dir: str = "outputs"
    stage_dirs: dict[str, str] = Field(default_factory=dict, description="per-stage output folders shared with other "
                                       "experiments (a sweep's data, pre-training and benchmark); default "
                                       "<output_dir>/<stage>")
    shared_name: str = Field("", description="the experiment the stages in stage_dirs are recorded under "
                             "(a sweep's own name); default: name")
    sweep: str = Field("", description="the sweep this experiment belongs to (set by the sweep flow)")
    sweep_point: dict[str, Any] = Field(default_factory=dict, description="its coordinates in the sweep: model, "
                                        "variant, seed, recipe (set by the sweep flow)")


class DataParams(Strict):
    root: str = "outputs/data"
    generate: bool = True
    strict: bool = False
    sets: dict[str, dict[str, Any]] = Field(default_factory=dict)


class BenchmarkParams(Strict):
    """The acceleration benchmark of the experiment's model (``benchmarks/acceleration.py`` times
    the released sizes; this one times what the experiment fine-tuned)."""

    resolutions: list[int] = Field(default_factory=lambda: [224])
    variants: list[str] = Field(default_factory=list, description="empty: every named variant")
    batch_size: int = 8
    dtype: str = "fp32"
    window_size: int | None = Field(None, description="tokens per window side for the windowed variants")
    warmup: int = 2
    iterations: int = 5
    rounds: int = 2
    pyramid: bool = Field(True, description="time the dense-prediction model (backbone + pyramid, as Fig. 5); "
                                            "false: the backbone the classifier runs")
    clock: str = Field("wall", description="wall, or process: CPU seconds on one thread, for a shared CPU")


class PipelineParams(Strict):
    experiment: ExperimentParams = Field(default_factory=ExperimentParams)
    data: DataParams = Field(default_factory=DataParams)
    pretrain: dict[str, Any] = Field(default_factory=dict)
    finetune: dict[str, dict[str, Any]] = Field(default_factory=dict)
    benchmark: BenchmarkParams = Field(default_factory=BenchmarkParams)

    @classmethod
    def load(cls, path: str | Path) -> "PipelineParams":
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"parameters file not found: {path} (the repository's params.yaml is the default)")
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as error:
            raise ValueError(f"{path} is not valid YAML: {error}") from error
        try:
            params = cls.model_validate(raw)
        except Exception as error:
            raise ValueError(f"{path}: {error}") from error
        # relative locations are relative to the parameters file, whichever directory runs the stage
        base = path.resolve().parent
        params.experiment.output_dir = _anchor(params.experiment.output_dir, base)
        unknown = sorted(set(params.experiment.stage_dirs) - set(STAGE_NAMES))
        if unknown:
            raise ValueError(f"{path}: experiment.stage_dirs names unknown stages {unknown}; the stages are "
                             f"{list(STAGE_NAMES)}")
        params.experiment.stage_dirs = {stage: _anchor(folder, base)
                                        for stage, folder in params.experiment.stage_dirs.items()}
        params.data.root = _anchor(params.data.root, base)
        return params

    def data_url(self, kind: str) -> str:
        return f"{self.data.root.rstrip('/')}/{kind}"

    def stage_dir(self, stage: str) -> Path:
        """Where ``stage`` writes ``result.json`` and its run folder."""
        return Path(self.experiment.stage_dirs.get(stage) or Path(self.experiment.output_dir) / stage)

    def record_name(self, stage: str) -> str:
        """The experiment ``stage`` is recorded under: a shared stage under ``shared_name``."""
        if stage in self.experiment.stage_dirs and self.experiment.shared_name:
            return self.experiment.shared_name
        return self.experiment.name
