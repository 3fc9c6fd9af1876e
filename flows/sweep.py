"""A sweep's plan: one experiment per (model, acceleration variant, seed, pre-training recipe), each a
parameters file derived from a base one, sharing what does not depend on its coordinates.

* data preparation: the base experiment's ``prepare_data`` folder (the data sets are the same);
* pre-training: ``<output_dir>/shared/pretrain/<model>-<recipe>``, one per (model, recipe) whatever
  the variant and seed; a later sweep (or a re-run) finds its ``result.json`` with the same key and
  reuses it, a changed recipe or model gets a new key and a new pre-training;
* the acceleration benchmark: ``<output_dir>/shared/benchmark/<model>``, one per model;
* fine-tunes: ``<output_dir>/sweeps/<sweep>/<point>/``, one per point.

Shared stages are recorded under the sweep's own experiment (``<sweep>``), each point's fine-tunes
under ``<sweep>/<point>``; every experiment row carries the sweep's name for the dashboard.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from itpn.records import model_size

from .outline import FINETUNE_TASKS
from .params import PipelineParams

SIZE_LETTERS = {"t": "tiny", "s": "small", "b": "base", "l": "large"}
SIZES = set(SIZE_LETTERS.values())


def model_name(model: str) -> str:
    """A timm name from a size (``T``/``tiny`` -> ``fast_itpn_tiny_patch16_224``); a full name is kept."""
    size = SIZE_LETTERS.get(model.lower(), model.lower())
    return f"fast_itpn_{size}_patch16_224" if size in SIZES else model


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")


@dataclass
class SweepPoint:
    name: str  # the experiment's name: <sweep>/<point>
    params_file: str
    model: str
    variant: str
    seed: int | None
    recipe: str
    tasks: list[str] = field(default_factory=list)  # the fine-tunes it runs

    @property
    def group(self) -> tuple[str, str]:
        """Points of one group share one pre-training."""
        return self.model, self.recipe


def point_params(base: PipelineParams, sweep: str, model: str, variant: str, seed: int | None, recipe: str,
                 recipe_overrides: dict[str, Any], tasks: list[str]) -> tuple[str, dict[str, Any]]:
    """The point's name and parameters (absolute paths, so the file works from any directory); a model is
    named by its size word (``tiny``) when it has one."""
    short = model_size(model) or model
    point = "-".join([short, variant] + ([f"s{seed}"] if seed is not None else [])
                     + ([recipe] if recipe != "default" else []))
    params = base.model_dump()
    root = Path(base.experiment.output_dir)
    experiment = params["experiment"]
    experiment.update(
        name=f"{sweep}/{point}", model=model, sweep=sweep, shared_name=sweep,
        sweep_point={"model": model, "variant": variant, "seed": seed, "recipe": recipe},
        output_dir=str(root / "sweeps" / slug(sweep) / slug(point)),
        stage_dirs={"prepare_data": str(base.stage_dir("prepare_data")),
                    "pretrain": str(root / "shared" / "pretrain" / slug(f"{short}-{recipe}")),
                    "benchmark_acceleration": str(root / "shared" / "benchmark" / slug(short))})
    params["pretrain"] = {**params["pretrain"], **recipe_overrides}
    finetune = {}
    for task in tasks:
        section = dict(params["finetune"][task])
        section["variant"] = variant
        if seed is not None:
            if task == "classification":
                section["seed"] = seed
            else:  # OpenMMLab: mmengine's randomness config
                section["cfg_options"] = {**section.get("cfg_options", {}), "randomness.seed": seed}
        finetune[task] = section
    params["finetune"] = finetune
    return point, params


def plan_sweep(params_file: str | Path, sweep: str, models: list[str] | None = None,
               variants: list[str] | None = None, seeds: list[int] | None = None,
               recipes: dict[str, dict[str, Any]] | None = None, tasks: list[str] | None = None) -> list[SweepPoint]:
    """Write one parameters file per point under ``<output_dir>/sweeps/<sweep>/`` and return the points.

    ``models``: timm names or sizes (T/S/B/L); default the base experiment's model. ``variants``:
    acceleration variants the fine-tunes train with (``finetune.<task>.variant``); default
    ``baseline``. ``seeds``: fine-tuning seeds; default the base's. ``recipes``: name -> overrides of
    the ``pretrain`` section; default one recipe, the base's. ``tasks``: the fine-tunes each point
    runs; default every one the base configures."""
    from itpn.models.acceleration import get_variant

    base = PipelineParams.load(params_file)
    if not sweep or "/" in sweep:
        raise ValueError(f"sweep name {sweep!r}: give a non-empty name without '/'")
    tasks = [task for task in FINETUNE_TASKS if task in base.finetune] if tasks is None else list(tasks)
    unknown = sorted(set(tasks) - set(base.finetune))
    if unknown or not tasks:
        raise ValueError(f"{params_file}: the sweep's tasks {unknown or tasks} are not configured under finetune "
                         f"(configured: {sorted(base.finetune)})")
    for variant in variants or []:
        get_variant(variant)  # an unknown name fails here, naming the known ones
    points = []
    directory = Path(base.experiment.output_dir) / "sweeps" / slug(sweep)
    for recipe, overrides in (recipes or {"default": {}}).items():
        for model in [model_name(m) for m in models or [base.experiment.model]]:
            for variant in variants or ["baseline"]:
                for seed in seeds or [None]:
                    point, params = point_params(base, sweep, model, variant, seed, recipe, overrides, tasks)
                    path = directory / f"{slug(point)}.yaml"
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_text(yaml.safe_dump(params, sort_keys=False))
                    PipelineParams.load(path)  # the written file is valid
                    points.append(SweepPoint(f"{sweep}/{point}", str(path), model, variant, seed, recipe, tasks))
    names = [point.name for point in points]
    if len(set(names)) != len(names):
        raise ValueError(f"sweep {sweep!r} has repeated points: {sorted({n for n in names if names.count(n) > 1})}")
    return points
