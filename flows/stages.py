"""The pipeline's stages, one command each, shared by the Prefect flows and ``dvc.yaml``:

    python -m flows.stages prepare_data --params params.yaml
    python -m flows.stages pretrain --params params.yaml   # experiment.gpus: 8 -> torchrun, 8 processes

A training stage with ``experiment.gpus > 1`` re-launches itself under ``torchrun --standalone
--nproc_per_node <gpus>`` (``stage_command``), so the flows, DVC and a user's shell launch it alike.
A stage reads its section of the parameters, calls the library, and writes
``<output_dir>/<stage>/result.json``: what it produced (URLs; the library's own files live in
``<stage>/run/``), its metric rows, training curves, benchmark rows and the cache key it ran
under (inputs + code). A stage whose ``result.json`` already carries the same key is not run
again. ``metrics.json`` (flat) and ``curves.csv`` beside it are what DVC's metrics and plots read.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import platform
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Callable

import torch

from .params import FINETUNE_TASKS, PipelineParams

CODE_ROOTS = ("itpn", "flows/stages.py", "flows/params.py", "configs")
REPO_ROOT = Path(__file__).resolve().parent.parent
# Stages torchrun launches on experiment.gpus processes (the OpenMMLab ones through mmengine's
# "pytorch" launcher); data preparation and the single-device benchmark run in one process.
DISTRIBUTED_STAGES = {"pretrain", "finetune_classification", "finetune_detection", "finetune_segmentation",
                      "finetune_rotated"}


def stage_command(stage: str, params_file: str, gpus: int, *extra: str) -> list[str]:
    """The command that runs ``stage``: ``torchrun --standalone --nproc_per_node <gpus>`` for a training
    stage on several GPUs of one node, else one Python process."""
    if gpus > 1 and stage in DISTRIBUTED_STAGES:
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={gpus}", "-m",
                "flows.stages", stage, "--params", params_file, *extra]
    return [sys.executable, "-m", "flows.stages", stage, "--params", params_file, *extra]


@dataclass
class StageResult:
    stage: str
    key: str
    outputs: dict[str, str] = field(default_factory=dict)
    metrics: list[dict[str, Any]] = field(default_factory=list)
    curves: list[dict[str, Any]] = field(default_factory=list)  # {"url", "task", "dataset", "split", "model"...}
    benchmarks: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    hardware: dict[str, Any] = field(default_factory=dict)
    started_at: str = ""  # when the stage really ran (ISO 8601, UTC); a cached result keeps its run's times
    finished_at: str = ""

    @classmethod
    def read(cls, path: Path) -> "StageResult":
        return cls(**json.loads(path.read_text()))

    def write(self, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / "result.json"
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(asdict(self), indent=2))
        temporary.replace(path)
        flat = {f"{m['task']}/{m['dataset']}/{m['split']}/{m['name']}" + (f"/{m['variant']}" if m.get("variant") else ""):
                m["value"] for m in self.metrics}
        (directory / "metrics.json").write_text(json.dumps(flat, indent=2, sort_keys=True))
        write_curves_csv(self.curves, directory / "curves.csv")
        return path


def write_curves_csv(curves: list[dict[str, Any]], path: Path) -> None:
    """All training curves of a stage as one CSV (``curve``, ``step`` and the logged values)."""
    import fsspec

    rows: list[dict[str, Any]] = []
    for curve in curves:
        name = f"{curve['task']}/{curve['dataset']}"
        by_step: dict[int, dict[str, Any]] = {}
        with fsspec.open(curve["url"], "rt") as lines:
            for line in lines:
                if not line.strip():
                    continue
                record = json.loads(line)
                if curve.get("format") == "rows":  # one metric per line: pivot to one row per step
                    by_step.setdefault(record["step"], {"curve": name, "step": record["step"]})[
                        record["name"]] = record["value"]
                else:
                    rows.append({"curve": name, **{k: v for k, v in record.items() if isinstance(v, (int, float))}})
        rows.extend(by_step.values())
    columns = ["curve", "step"] + sorted({k for row in rows for k in row} - {"curve", "step"})
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def hardware() -> dict[str, Any]:
    info = {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
            "cpus": os.cpu_count()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpus"] = torch.cuda.device_count()
    return info


def code_digest() -> str:
    """Hash of the library code and configs: a change to either invalidates cached stages."""
    digest = hashlib.sha256()
    for root in CODE_ROOTS:
        path = REPO_ROOT / root
        files = sorted(path.rglob("*")) if path.is_dir() else [path]
        for file in files:
            if file.is_file() and file.suffix in (".py", ".yaml", ".yml", ".json") and "__pycache__" not in file.parts:
                digest.update(str(file.relative_to(REPO_ROOT)).encode())
                digest.update(file.read_bytes())
    return digest.hexdigest()[:16]


def stage_key(stage: str, inputs: Any) -> str:
    payload = json.dumps({"stage": stage, "inputs": inputs, "code": code_digest()}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


# --- the stages ------------------------------------------------------------------------------
def prepare_data(params: PipelineParams, out: Path) -> StageResult:
    from itpn.data import prepare

    result = StageResult("prepare_data", key="")
    for kind, arguments in params.data.sets.items():
        url = params.data_url(kind)
        prepared = prepare(kind, url, generate=params.data.generate, strict=params.data.strict, **arguments)
        result.outputs[f"{kind}_manifest"] = f"{url}/manifest.json"
        counts = prepared.manifest.get("counts", {})
        for split, count in counts.items():
            if isinstance(count, (int, float)):
                result.notes.append(f"{kind}/{split}: {count} samples")
        if prepared.report.num_skipped:
            result.notes.append(f"{kind}: skipped {prepared.report.num_skipped} bad samples "
                                f"(listed in {url}/manifest.json)")
    return result


def pretrain(params: PipelineParams, out: Path) -> StageResult:
    from itpn.pretrain import PretrainConfig, run_pretraining

    section = {"model": params.experiment.model, "model_kwargs": params.experiment.model_kwargs,
               "device": params.experiment.device, **params.pretrain,
               "data_url": params.data_url("imagenet"), "output_url": str(out / "run")}
    outcome = run_pretraining(PretrainConfig.from_dict(section, source="params.yaml: pretrain"))
    result = StageResult("pretrain", key="")
    result.outputs = {"export": outcome.export_url, "checkpoint": outcome.checkpoint_url or ""}
    model = section["model"]
    result.curves.append({"url": outcome.metrics_url, "task": "pretrain", "dataset": "imagenet", "split": "train",
                          "model": model})
    result.metrics.append({"task": "pretrain", "dataset": "imagenet", "split": "train", "name": "loss",
                           "value": outcome.final_loss, "step": outcome.steps_done, "model": model})
    if outcome.skipped_images:
        result.notes.append(f"pretrain: skipped {outcome.skipped_images} unreadable images")
    return result


def finetune_classification(params: PipelineParams, out: Path) -> StageResult:
    """ImageNet fine-tuning from the pre-training export, then the same weights under every
    ``eval_variants`` acceleration variant (accuracy and speed-up from one model)."""
    from itpn.finetune import run_classification

    own = params.finetune.get("classification", {})
    section = {"model": params.experiment.model, "model_kwargs": params.experiment.model_kwargs,
               "device": params.experiment.device, **own,
               "data_url": params.data_url("imagenet"), "output_url": str(out / "run"),
               "pretrained": initial_weights(params, own)}
    outcome = run_classification(section)
    return StageResult("finetune_classification", key="", outputs={"model": outcome.export_url},
                       metrics=outcome.metrics,
                       curves=[{"url": outcome.curve_url, "format": "rows", "task": "classification",
                                "dataset": "imagenet"}])


OPENMMLAB_TASKS = {  # stage task -> (metric task name, data set kind, runner)
    "detection": ("detection", "coco", "run_detection"),
    "segmentation": ("segmentation", "ade20k", "run_segmentation"),
    "rotated": ("rotated_detection", "dota", "run_rotated"),
}
OPENMMLAB_KEYS = {"config", "cfg_options", "variant", "eval_variants", "pretrained"}


def finetune_openmmlab(task: str) -> Callable[[PipelineParams, Path], StageResult]:
    """COCO / ADE20K / DOTA fine-tuning through the OpenMMLab adapters, from the pre-training export;
    then the fine-tuned detector or segmenter evaluated under every ``eval_variants`` variant."""
    metric_task, data_kind, runner_name = OPENMMLAB_TASKS[task]

    def run(params: PipelineParams, out: Path) -> StageResult:
        import itpn.mmlab

        section = dict(params.finetune.get(task, {}))
        unknown = sorted(set(section) - OPENMMLAB_KEYS)
        if unknown or "config" not in section:
            raise ValueError(f"params.yaml finetune.{task}: unknown keys {unknown} / needs 'config'; the keys are "
                             f"{sorted(OPENMMLAB_KEYS)}")
        config = str(REPO_ROOT / section["config"])
        backbone = {"model.backbone.model_name": params.experiment.model,
                    "model.backbone.model_kwargs": params.experiment.model_kwargs}
        options = {**backbone, **section.get("cfg_options", {})}
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            options["launcher"] = "pytorch"  # under torchrun: mmengine joins its process group
        runner = getattr(itpn.mmlab, runner_name)
        work_dir = str(out / "run")
        rows = runner(config, data_root=params.data_url(data_kind), checkpoint=initial_weights(params, section),
                      work_dir=work_dir, output_url=work_dir, cfg_options=options,
                      variant=section.get("variant"))
        trained = sorted((out / "run").glob("iter_*.pth"), key=lambda path: int(path.stem.split("_")[1]))
        for variant in section.get("eval_variants", []):
            if variant != section.get("variant", "baseline"):
                evaluation = str(out / "run" / "eval" / variant)
                rows += runner(config, data_root=params.data_url(data_kind), work_dir=evaluation,
                               output_url=evaluation, variant=variant, train=False,
                               cfg_options={**options, "load_from": str(trained[-1])})
        return StageResult(f"finetune_{task}", key="", outputs={"checkpoint": str(trained[-1]) if trained else ""},
                           metrics=rows,
                           curves=[{"url": f"{work_dir}/curve.jsonl", "format": "rows", "task": metric_task,
                                    "dataset": data_kind}])

    return run


def initial_weights(params: PipelineParams, section: dict[str, Any]) -> str | None:
    """The weights a fine-tune starts from: its section's own ``pretrained`` when given (a URL, or null for
    random weights: the no-pre-training baseline of ``itpn reproduce``), else the pretrain stage's export."""
    if "pretrained" in section:
        return section["pretrained"]
    return pretrain_export(params)


def pretrain_export(params: PipelineParams) -> str:
    export = params.stage_dir("pretrain") / "run" / "backbone.safetensors"
    if not export.exists():
        raise FileNotFoundError(f"no pre-training export at {export}: run the pretrain stage first "
                                f"(itpn pretrain, or dvc repro pretrain)")
    return export.as_posix()


def benchmark_acceleration(params: PipelineParams, out: Path) -> StageResult:
    """Every variant of the experiment's model, so speed-ups sit beside that model's accuracies."""
    from itpn.bench.acceleration import benchmark_variants
    from itpn.models import VARIANTS

    bench = params.benchmark
    rows = []
    for resolution in bench.resolutions:
        rows += benchmark_variants(params.experiment.model, resolution, bench.variants or list(VARIANTS),
                                   batch_size=bench.batch_size, device=params.experiment.device, dtype=bench.dtype,
                                   model_kwargs=params.experiment.model_kwargs, window_size=bench.window_size,
                                   warmup=bench.warmup, iterations=bench.iterations, rounds=bench.rounds,
                                   pyramid=bench.pyramid, clock=bench.clock)
    return StageResult("benchmark_acceleration", key="", benchmarks=[asdict(row) for row in rows])


STAGES: dict[str, Callable[[PipelineParams, Path], StageResult]] = {
    "prepare_data": prepare_data,
    "pretrain": pretrain,
    "finetune_classification": finetune_classification,
    **{f"finetune_{task}": finetune_openmmlab(task) for task in OPENMMLAB_TASKS},
    "benchmark_acceleration": benchmark_acceleration,
}
UPSTREAM = {
    "pretrain": ["prepare_data"],
    **{f"finetune_{task}": ["prepare_data", "pretrain"] for task in FINETUNE_TASKS},
}


def stage_inputs(stage: str, params: PipelineParams) -> dict[str, Any]:
    """What a stage's result depends on: its parameters and its upstream stages' keys."""
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


def claim_run_directory(run_dir: Path, key: str, fresh: bool = False, *, rank: int | None = None,
                        launch: str | None = None, wait_s: float = 600.0) -> None:
    """Keep ``run_dir`` for a run with the same key (a killed run resumes from its checkpoint);
    clear it when the inputs or code changed (or ``fresh``), so no run resumes a stale one.

    Under ``torchrun`` rank 0 decides and marks the directory with the launch's id
    (``TORCHELASTIC_RUN_ID``); the other ranks wait for that mark, so none of them reads a
    checkpoint rank 0 is about to clear."""
    rank = int(os.environ.get("RANK", "0")) if rank is None else rank
    launch = os.environ.get("TORCHELASTIC_RUN_ID", "") if launch is None else launch
    marker, claimed = run_dir / ".stage_key", run_dir / ".launch"
    if rank != 0:
        deadline = time.monotonic() + wait_s
        while launch and not (claimed.exists() and claimed.read_text() == launch):
            if time.monotonic() > deadline:
                raise TimeoutError(f"rank {rank} waited {wait_s:.0f} s for rank 0 to claim {run_dir} (launch "
                                   f"{launch}); is rank 0 running, and is {run_dir} on a file system all ranks see?")
            time.sleep(0.2)
        return
    if run_dir.exists() and (fresh or not marker.exists() or marker.read_text() != key):
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    marker.write_text(key)
    claimed.write_text(launch)


def run_stage(stage: str, params: PipelineParams, force: bool = False, fresh: bool = False) -> StageResult:
    """Run ``stage`` unless its ``result.json`` holds the same key (``force``: run anyway); returns the
    (new or cached) result. A run folder left by a run of the same key is resumed unless ``fresh``."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; the stages are: {', '.join(STAGES)}")
    out = params.stage_dir(stage)
    key = stage_key(stage, stage_inputs(stage, params))
    previous = out / "result.json"
    if not force and previous.exists():
        cached = StageResult.read(previous)
        if cached.key == key:
            return cached
    claim_run_directory(out / "run", key, fresh=fresh)
    started_at, start = datetime.now(UTC), time.perf_counter()
    result = STAGES[stage](params, out)
    result.key, result.seconds, result.hardware = key, time.perf_counter() - start, hardware()
    result.started_at, result.finished_at = started_at.isoformat(), datetime.now(UTC).isoformat()
    if int(os.environ.get("RANK", "0")) == 0:
        result.write(out)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.stages", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=list(STAGES))
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--force", action="store_true", help="run even if a result with the same key exists "
                        "(DVC's stages pass it: DVC decides when a stage runs)")
    parser.add_argument("--fresh", action="store_true", help="discard the checkpoints of an earlier run of the same "
                        "key instead of resuming from them")
    args = parser.parse_args(argv)
    params = PipelineParams.load(args.params)
    if args.stage in DISTRIBUTED_STAGES and params.experiment.gpus > 1 and "TORCHELASTIC_RUN_ID" not in os.environ:
        flags = [flag for flag, wanted in (("--force", args.force), ("--fresh", args.fresh)) if wanted]
        command = stage_command(args.stage, args.params, params.experiment.gpus, *flags)
        print(" ".join(command), file=sys.stderr, flush=True)
        os.execv(command[0], command)  # torchrun's processes run this again, each as one rank
    result = run_stage(args.stage, params, force=args.force, fresh=args.fresh)
    print(json.dumps({"stage": result.stage, "key": result.key, "seconds": round(result.seconds, 1),
                      "outputs": result.outputs}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
