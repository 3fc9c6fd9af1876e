"""``reproduce``: the runs one of the paper's tables needs, recorded under one experiment, then printed
beside the paper's numbers (``itpn reproduce TABLE --scale demo|small|paper``).

* ``table9`` (C-MLP x MFM): pre-training with the convolutional stem and pyramid (``cmlp: false``, the rows
  marked *) or C-MLP, each with MFM (EMA teacher) or without, plus our reference row without pre-training;
  every row fine-tuned on ImageNet (and COCO / ADE20K at the ``small`` and ``paper`` scales).
* ``table8`` (integral pre-training): HiViT pre-trained without the pyramid (``integral: false``), and the
  integral model fine-tuned with and without its pre-trained pyramid (``load_pyramid``).
* ``table7`` (DOTA) and ``figure5`` (COCO): one integral pre-training, fine-tuned and evaluated under each
  acceleration variant (at ``paper`` scale fine-tuned once per variant, as the paper does; at ``demo`` and
  ``small`` fine-tuned once and evaluated under every variant), and every variant benchmarked for speed.

A scale is a parameters file, ``configs/reproduce/<scale>.yaml``: the data, model and recipes every row
shares, and in its ``tables`` section the changes of the tables whose paper runs used another model or
recipe (at paper scale: Tables 8/9 iTPN-B pixel, Table 7 / Figure 5 Fast-iTPN-B with CLIP-L). Each row's parameters are that file plus its row's changes, written beside its outputs and run
through the pipeline's own stages (``flows.stages``, subprocesses as in ``experiment``); the prepared data
and the pre-trainings several rows share run once (``experiment.stage_dirs``). Every stage is recorded in the store under ``reproduce-<table>-<scale>``
with ``reproduce: {table, scale, row, variant}`` in its params. Data: generated at the scale's sizes, or
``data_root``, a URL holding the data sets in their real layouts (README, "Real data"); generated data
go to ``<output_dir>/datasets``.
"""
from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Optional, Sequence

import yaml
from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from services.paper_tables import experiment_name
from services.store import open_writer

from .outline import FINETUNE_TASKS, REPO_ROOT, finetune_stage
from .params import PipelineParams
from .record import git_commit, result_rows, result_times
from .stages.result import StageResult
from .tasks import run_stage_process

SCALES = ("smoke", "demo", "small", "paper")


@dataclass(frozen=True)
class Row:
    """One row of a table: the pre-training it starts from (``None``: random weights) and the changes to
    the model and to each fine-tuning section."""

    name: str
    pretrain: Optional[dict[str, Any]] = field(default_factory=dict)
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    finetune: dict[str, dict[str, Any]] = field(default_factory=dict)
    variant: str = "baseline"


@dataclass(frozen=True)
class Table:
    name: str
    rows: tuple[Row, ...]
    tasks: tuple[str, ...]  # the fine-tuning tasks of the paper's columns
    demo_tasks: tuple[str, ...]  # the tasks run at demo scale (the others are minutes each on a CPU)
    benchmark: bool = False  # rows are acceleration variants: also time them

    @property
    def variants(self) -> list[str]:
        return [row.variant for row in self.rows]


NO_PYRAMID = {task: {"cfg_options": {"model.backbone.load_pyramid": False}} for task in ("detection", "segmentation")}
MIM = {"teacher": "none"}
MIM_MFM = {"teacher": "ema"}
DENSE = ("classification", "detection", "segmentation")


def _variant_rows(variants: list[str]) -> tuple[Row, ...]:
    # the scale's own pre-training (EMA-teacher MFM at demo/small, Fast-iTPN's CLIP-L recipe at paper scale)
    return tuple(Row(variant, pretrain={}, variant=variant) for variant in variants)


TABLES: dict[str, Table] = {
    "table9": Table("table9", (
        Row("none", pretrain=None),
        Row("conv", pretrain=MIM, model_kwargs={"cmlp": False}),
        Row("conv_mfm", pretrain=MIM_MFM, model_kwargs={"cmlp": False}),
        Row("mim", pretrain=MIM),
        Row("mim_mfm", pretrain=MIM_MFM),
    ), tasks=DENSE, demo_tasks=("classification",)),
    "table8": Table("table8", (
        Row("no_ipt", pretrain={"teacher": "none", "integral": False}, finetune=NO_PYRAMID),
        Row("ipt_pyramid_not_loaded", pretrain=MIM_MFM, finetune=NO_PYRAMID),
        Row("ipt_pyramid_loaded", pretrain=MIM_MFM),
    ), tasks=DENSE, demo_tasks=("classification",)),
    "table7": Table("table7", _variant_rows(["baseline", "window", "window_hrpe", "window_gathering",
                                             "window_gathering_rpe", "window_gathering_hrpe"]),
                    tasks=("rotated",), demo_tasks=("rotated",), benchmark=True),
    "figure5": Table("figure5", _variant_rows(["baseline", "migration_10", "migration_20", "migration_30",
                                               "migration_40", "window", "window_gathering",
                                               "migration_30_gathering"]),
                     tasks=("detection",), demo_tasks=("detection",), benchmark=True),
}


@dataclass
class Job:
    """One stage of the grid: the rows it serves and the parameters file it runs with (``params``: that
    file, as checked when it was written)."""

    stage: str
    rows: list[str]
    params_file: str
    params: PipelineParams = field(repr=False)


def scale_file(scale: str) -> Path:
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; the scales are {', '.join(SCALES)}")
    return REPO_ROOT / "configs" / "reproduce" / f"{scale}.yaml"


def scale_params(scale: str, table: str) -> PipelineParams:
    """The scale's parameters for ``table``: its file with the ``tables.<table>`` changes merged in (the
    ``tables`` section is the scale file's own; the rest is a parameters file as ``PipelineParams`` reads)."""
    path = scale_file(scale)
    raw = yaml.safe_load(path.read_text()) or {}
    changes = (raw.pop("tables", None) or {}).get(table, {})
    return PipelineParams.from_mapping(_merge(raw, changes), source=path, base=path.resolve().parent)


def _merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in changes.items():
        merged[key] = _merge(merged.get(key, {}), value) if isinstance(value, dict) and isinstance(
            merged.get(key), dict) else copy.deepcopy(value)
    return merged


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:8]


def _write(directory: Path, values: dict[str, Any], check_data: bool, write: bool = True
           ) -> tuple[str, PipelineParams]:
    """``values`` checked whole (a bad row fails here, before anything runs), then written as
    ``directory/params.yaml`` (unless ``write`` is False); returns the file and its parameters."""
    path = directory / "params.yaml"
    params = PipelineParams.from_mapping(values, source=path, base=directory, check_data=check_data)
    if write:
        directory.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(values, sort_keys=False))
    return str(path), params


def select_rows(table: str, rows: Optional[Sequence[str]]) -> Table:
    """``TABLES[table]`` with only ``rows`` (in the table's order; ``None``: every row). A table of
    acceleration variants keeps its baseline row too: the speed-ups are measured against it.

    Raises ``ValueError`` naming an unknown table or row and the names there are."""
    if table not in TABLES:
        raise ValueError(f"unknown table {table!r}; the tables are {', '.join(TABLES)}")
    spec = TABLES[table]
    if rows is None:
        return spec
    names = [row.name for row in spec.rows]
    unknown = [name for name in rows if name not in names]
    if unknown or not rows:
        raise ValueError(f"{table} has no rows {unknown}; its rows are {', '.join(names)}")
    keep = {*rows, "baseline"} if spec.benchmark else set(rows)
    return replace(spec, rows=tuple(row for row in spec.rows if row.name in keep))


def plan(table: str, scale: str, *, data_root: Optional[str] = None, output_dir: Optional[str] = None,
         rows: Optional[Sequence[str]] = None, check_data: bool = False, write: bool = True) -> list[Job]:
    """The jobs of ``table`` at ``scale`` in the order they run; writes each job's parameters file.

    ``data_root``: a URL with the data sets in their real layouts (nothing is generated); ``output_dir``:
    where the grid's folders go (default ``<scale file's output_dir>/reproduce/<table>-<scale>``);
    ``rows``: run only these rows of the table (default: all); ``check_data``: real data sets must already
    be under ``data_root``; ``write``: False checks every job's parameters without writing them (``--plan``).
    A problem of any job's parameters raises ``ParamsError`` naming them all."""
    spec = select_rows(table, rows)
    base_params = scale_params(scale, spec.name)
    base = base_params.model_dump()
    root = Path(output_dir).resolve() if output_dir else Path(base_params.experiment.output_dir) / "reproduce" / (
        f"{table}-{scale}")
    tasks = spec.demo_tasks if scale in ("smoke", "demo") else spec.tasks
    missing = [task for task in tasks if task not in base["finetune"]]
    if missing:
        raise ValueError(f"{scale_file(scale)} has no finetune section for {missing}, which {table} needs")
    kinds = {"imagenet", *(FINETUNE_TASKS[task]["data"] for task in tasks)}
    base["experiment"]["name"] = experiment_name(table, scale)
    generate = data_root is None and base_params.data.generate
    base["data"]["root"] = data_root or (str(root / "datasets") if generate else base_params.data.root)
    base["data"]["generate"] = generate
    base["data"]["sets"] = {kind: values for kind, values in base["data"]["sets"].items() if kind in kinds}
    base["finetune"] = {task: base["finetune"][task] for task in tasks}
    per_variant = scale == "paper"  # the paper fine-tunes each variant; smaller scales evaluate one model

    data_dir = str(root / "data" / "prepare_data")  # every job reads the one prepared data set
    base["experiment"]["stage_dirs"] = {"prepare_data": data_dir}
    data_values = _merge(base, {"experiment": {"output_dir": str(root / "data")}})
    jobs = [Job("prepare_data", [], *_write(root / "data", data_values, check_data, write))]
    pretrainings: dict[str, Job] = {}
    for row in spec.rows:
        values = _merge(base, {"experiment": {"model_kwargs": row.model_kwargs}})
        if row.pretrain is not None:
            values["pretrain"] = _merge(values["pretrain"], row.pretrain)
        finetune = {}
        for task in tasks:
            section = _merge(values["finetune"][task], row.finetune.get(task, {}))
            if row.pretrain is None:
                section["pretrained"] = None
            if spec.benchmark:
                if per_variant:
                    section.update(variant=row.variant, eval_variants=[])
                else:
                    section["eval_variants"] = [variant for variant in spec.variants if variant != "baseline"]
            finetune[task] = section
        values["finetune"] = finetune
        shared_finetune = spec.benchmark and not per_variant
        row_dir = root / ("all-variants" if shared_finetune else row.name)
        values["experiment"]["output_dir"] = str(row_dir)
        if row.pretrain is not None:  # rows with the same model and pre-training share one run
            key = _digest([values["experiment"]["model_kwargs"], values["pretrain"]])
            if key not in pretrainings:
                folder = root / f"pretrain-{row.name}"
                pretrainings[key] = Job("pretrain", [], *_write(folder, _merge(values, {
                    "experiment": {"output_dir": str(folder)}}), check_data, write))
                jobs.append(pretrainings[key])
            pretrainings[key].rows.append(row.name)
            values["experiment"]["stage_dirs"]["pretrain"] = str(pretrainings[key].params.stage_dir("pretrain"))
        params_file, params = _write(row_dir, values, check_data, write)
        for task in tasks:
            existing = next((job for job in jobs
                             if job.params_file == params_file and job.stage == finetune_stage(task)), None)
            if existing is None:
                jobs.append(Job(finetune_stage(task), [row.name], params_file, params))
            else:
                existing.rows.append(row.name)
    if spec.benchmark:
        bench = _merge(base, {"experiment": {"output_dir": str(root / "benchmark")},
                              "benchmark": {"variants": spec.variants}})
        jobs.append(Job("benchmark_acceleration", spec.variants, *_write(root / "benchmark", bench, check_data, write)))
    return jobs


@task(task_run_name="record {job.stage} for {job.rows}", retries=3, retry_delay_seconds=[1, 5, 15],
      cache_policy=NO_CACHE)
def record_job(job: Job, table: str, scale: str, result: StageResult) -> list[int]:
    """The job's result as one store run per row it serves (a re-run replaces its rows)."""
    params = job.params
    experiment = experiment_name(table, scale)
    started, finished = result_times(params, job.stage, result)
    metrics, benchmarks = result_rows(result)
    run_ids = []
    commit = git_commit()
    with open_writer() as writer:
        for row in job.rows or [""]:
            variant = next((spec.variant for spec in TABLES[table].rows if spec.name == row), "")
            recorded = writer.record_run(
                experiment, f"{experiment}:{row or 'shared'}:{job.stage}:{result.key}", started_at=started,
                finished_at=finished, metrics=metrics, benchmarks=benchmarks,
                artifacts={name: url for name, url in result.outputs.items() if url}, flow_name=job.stage,
                git_commit=commit, hardware=result.hardware,
                params={"reproduce": {"table": table, "scale": scale, "row": row, "variant": variant},
                        **params.model_dump()})
            run_ids.append(recorded["run_id"])
    return run_ids


@flow(name="reproduce", log_prints=True)
def reproduce(table: str = "table9", scale: str = "demo", data_root: Optional[str] = None,
              output_dir: Optional[str] = None, rows: Optional[list[str]] = None) -> dict[str, list[str]]:
    """Run and record every stage ``table`` needs at ``scale`` (only ``rows``, when given); returns
    ``{stage: [rows]}`` of what ran. A stage whose inputs and code are unchanged is not run again (its
    cached result is recorded)."""
    jobs = plan(table, scale, data_root=data_root, output_dir=output_dir, rows=rows)
    done: dict[str, list[str]] = {}
    for job in jobs:
        print(f"{job.stage} for {', '.join(job.rows) or 'all rows'}")
        result = run_stage_process(job.stage, job.params_file, job.params)
        record_job(job, table, scale, result)
        done.setdefault(job.stage, []).extend(job.rows)
    return done
