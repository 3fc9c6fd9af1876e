"""The pipeline's parameters (``params.yaml``), read once and checked whole before anything runs.

``PipelineParams.load`` parses the file and collects every problem in it, each one line naming the
file, the key, the value and the fix (``ParamsError``): the outline's own keys through the pydantic
models below, and every library section through the library's own config, so its fields are typed
once, in the library: ``pretrain`` as ``PretrainConfig``, ``finetune.classification`` as
``ClassificationConfig`` (their field types and ``RANGES``), the OpenMMLab sections' keys, config files
and variants, and ``data.sets``' generator arguments. With ``check_data`` the data sets themselves must
be where ``data.root`` says when they are not generated.

Folders: ``experiment.output_dir`` holds one folder per stage (``stage_dir``, unless
``experiment.stage_dirs`` shares one with other experiments), each with its library files in
``run_dir``; relative locations are relative to the parameters file.
"""
from __future__ import annotations

import dataclasses
import difflib
import inspect
import math
import os
import re
import typing
from dataclasses import astuple, dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, TypeAdapter, ValidationError

from .outline import FINETUNE_TASKS, REPO_ROOT, RUN_FOLDER, STAGE_NAMES

OPENMMLAB_TASKS = tuple(task for task, spec in FINETUNE_TASKS.items() if spec["library"] == "itpn/mmlab")
EXAMPLE = "the repository's params.yaml shows every section with working values"
# What experiment.device may be: itpn.runtime.setup_runtime's "auto" and "cuda" (the local rank's GPU), or a
# torch.device of one of these types ("cuda:1"); the list is the one an error shows.
DEVICES = ("auto", "cpu", "cuda", "cuda:0", "mps", "xpu")
DEVICE_PATTERN = r"auto|cpu|mps|(cuda|xpu)(:\d+)?"


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
    output_dir: str = Field("outputs", description="one folder per stage (params.stage_dir), relative to this file")
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
    sets: dict[str, dict[str, Any]] = Field(default_factory=dict, description="the data sets to prepare (kind -> "
                                            "generator arguments; with generate: false only the kinds count)")


class BenchmarkParams(Strict):
    """The acceleration benchmark of the experiment's model (``benchmarks/acceleration.py`` times
    the released sizes; this one times what the experiment fine-tuned)."""

    resolutions: list[PositiveInt] = Field(default_factory=lambda: [224], description="image sizes in pixels")
    variants: list[str] = Field(default_factory=list, description="empty: every named variant")
    batch_size: int = Field(8, ge=1)
    dtype: Literal["fp32", "bf16", "fp16"] = "fp32"
    window_size: PositiveInt | dict[PositiveInt, PositiveInt] | None = Field(
        default_factory=lambda: {224: 7},
        description="tokens per window side for the windowed variants: one for every resolution, or "
                    "{resolution: tokens} (the windows each task evaluates with at that size; a size left out, or "
                    "null, keeps the variants' own 16). Default: 2x2 windows of 7 at 224 (the classifier's, ours)")
    warmup: int = Field(2, ge=0)
    iterations: int = Field(5, ge=1)
    rounds: int = Field(2, ge=1)
    pyramid: bool = Field(True, description="time the dense-prediction model (backbone + pyramid, as Fig. 5); "
                                            "false: the backbone the classifier runs")
    clock: Literal["wall", "process"] = Field("wall", description="wall, or process: CPU seconds on one thread, "
                                                                  "for a shared CPU")

    def window_for(self, resolution: int) -> int | None:
        """The window size the windowed variants are timed with at ``resolution`` px (None: their own)."""
        if isinstance(self.window_size, dict):
            return self.window_size.get(resolution)
        return self.window_size


class OpenMMLabSection(Strict):
    """A COCO / ADE20K / DOTA fine-tune: an OpenMMLab config of ``configs/`` and changes to it."""

    config: str = Field(description="the OpenMMLab config, relative to the repository")
    cfg_options: dict[str, Any] = Field(default_factory=dict, description="mmengine overrides, dotted keys")
    variant: str | None = Field(None, description="acceleration variant while fine-tuning")
    eval_variants: list[str] = Field(default_factory=list, description="also evaluate the weights under these")
    pretrained: str | None = Field(None, description="weights to start from (default: the pre-training export)")


@dataclass(frozen=True)
class Problem:
    """One problem of a parameters file: the dotted ``key``, its ``value`` (``...`` when the key is missing
    or the problem is the section's), what is wrong and how to fix it."""

    key: str
    value: Any
    problem: str
    fix: str

    def __str__(self) -> str:
        shown = "" if self.value is ... else f" = {_short(self.value)}"
        return f"{self.key}{shown}: {self.problem}. Fix: {self.fix}."


class ParamsError(ValueError):
    """Every problem of a parameters file, one line each, naming the file."""

    def __init__(self, path: Path | str, problems: list[Problem]) -> None:
        super().__init__("\n".join(f"{path}: {problem}" for problem in problems))
        self.path, self.problems = path, problems


def _short(value: Any) -> str:
    """A value as the message shows it: a whole section cut to its first 60 characters."""
    text = repr(value)
    return text if isinstance(value, str) or len(text) <= 60 else text[:57] + "..."


def _unknown(key: str, value: Any, known: typing.Iterable[str], what: str = "key", unknown_value: bool = False,
             ) -> Problem:
    """``key`` (or its ``value``, when ``unknown_value``) is none of ``known``: the nearest one is the fix."""
    known = sorted(known)
    name = str(value) if unknown_value else key.rsplit(".", 1)[-1]
    close = difflib.get_close_matches(name, known, n=1)
    listed = f"the {what}s here are {', '.join(known)}"
    return Problem(key, value, f"unknown {what}", f"rename it to {close[0]!r} ({listed})" if close else listed)


def _model_at(model: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    """The pydantic model that holds the key at ``loc`` (its last element), if it is a model's field."""
    for part in loc[:-1]:
        annotation = model.model_fields[part].annotation if part in model.model_fields else None
        if not (inspect.isclass(annotation) and issubclass(annotation, BaseModel)):
            return None
        model = annotation
    return model


def _should(message: str) -> str:
    """Pydantic's "Input should be X" as "must be X", its bounds in the library configs' words ("at least")."""
    for pydantic_words, ours in (("Input should be", "must be"), ("greater than or equal to", "at least"),
                                 ("less than or equal to", "at most")):
        message = message.replace(pydantic_words, ours)
    return message


def _pydantic_problems(error: ValidationError, model: type[BaseModel], prefix: str = "") -> list[Problem]:
    """A pydantic ``error`` of ``model`` (the section ``prefix``, if any) as problems, one per key."""
    problems = []
    for item in error.errors():
        key = ".".join([prefix, *map(str, item["loc"])] if prefix else map(str, item["loc"]))
        value = item.get("input", ...)
        if item["type"] == "extra_forbidden":
            holder = _model_at(model, item["loc"])
            what = "section" if len(item["loc"]) == 1 and not prefix else "key"
            problems.append(_unknown(key, value, holder.model_fields if holder else [], what))
        elif item["type"] == "missing":
            problems.append(Problem(key, ..., "missing", f"add {key}; {EXAMPLE}"))
        else:
            message = _should(item["msg"])
            fix = f"set {key} to a value that {message.replace('must be', 'is')}"
            problems.append(Problem(key, value, message, fix))
    return problems


def _text_number_fix(key: str, value: Any, expected: str) -> str:
    """The fix for ``key``: a value ``expected`` describes; for a number YAML read as text, how to write it."""
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            pass
        else:
            return f"write {key}: {float(value)!r} (YAML reads a number without a dot, like {value}, as text)"
    return f"set {key} to {expected}"


def _library_problems(config_class: type, values: dict[str, Any], prefix: str, build: typing.Callable[[], Any],
                      ) -> list[Problem]:
    """The section ``values`` checked against the library config ``config_class``: unknown keys, each value
    against its field's own type, then the config built by ``build`` (its ranges and cross-checks)."""
    from itpn.config import ConfigValueError
    from itpn.models.layout import InactiveVariantError

    hints = typing.get_type_hints(config_class)
    fields = [field.name for field in dataclasses.fields(config_class)]
    problems = []
    for name, value in values.items():
        key = f"{prefix}.{name}"
        if name not in fields:
            problems.append(_unknown(key, value, fields))
            continue
        problem = _value_problem(key, value, hints[name], getattr(config_class, "RANGES", {}).get(name))
        if problem is not None:
            problems.append(problem)
    if problems:
        return problems
    try:
        build()
    except InactiveVariantError as error:
        return _inactive_problems(error, prefix, "window_size", values.get("window_size"))
    except ConfigValueError as error:
        key = f"{prefix}.{error.key}"
        return [Problem(key, error.value, f"must be {error.expected}", _text_number_fix(key, error.value,
                                                                                         error.expected))]
    except ValueError as error:
        return [Problem(prefix, ..., str(error), f"change {prefix} as the message says; {EXAMPLE}")]
    return []


def _generator_problems(kind: str, arguments: dict[str, Any]) -> list[Problem]:
    """``data.sets.<kind>`` against its generator: unknown arguments, each value against the argument's type
    (the generator's signature) and against the rule the generator itself checks (``GENERATOR_ARGUMENTS``)."""
    from itpn.data.prepare import GENERATOR_ARGUMENTS, GENERATORS

    parameters = dict(inspect.signature(GENERATORS[kind], eval_str=True).parameters)
    parameters.pop("url", None)
    rules = GENERATOR_ARGUMENTS[kind]
    problems = []
    for name, value in arguments.items():
        key = f"data.sets.{kind}.{name}"
        if name not in parameters:
            problems.append(_unknown(key, value, parameters, "generator argument"))
            continue
        problem = _value_problem(key, value, parameters[name].annotation, rules.get(name))
        if problem is not None:
            problems.append(problem)
    return problems


def _value_problem(key: str, value: Any, annotation: Any, rule: Any = None) -> Problem | None:
    """The problem of one value, if any: not finite, not of ``annotation``'s type, or outside ``rule`` (an
    object with ``admits`` and ``describe``, e.g. ``itpn.config.Range``)."""
    if isinstance(value, float) and not math.isfinite(value):
        return Problem(key, value, "must be a finite number", f"set {key} to a finite number")
    if isinstance(value, str) and annotation in (bool, typing.Optional[bool]):  # pydantic reads "no" as False
        return Problem(key, value, "must be true or false", f"write {key}: true or {key}: false "
                                                             "(unquoted: a quoted word is text)")
    try:
        TypeAdapter(annotation).validate_python(value)
    except ValidationError as error:
        message = _should(error.errors()[0]["msg"])
        return Problem(key, value, message, _text_number_fix(key, value, message.removeprefix("must be ")))
    if rule is not None and value is not None and not rule.admits(value):  # every one, not the first
        expected = rule.describe()
        return Problem(key, value, f"must be {expected}", _text_number_fix(key, value, expected))
    return None


def _inactive_problems(error: Any, prefix: str, window_key: str, window_value: Any) -> list[Problem]:
    """An ``InactiveVariantError`` as problems, one per setting and cause (the variants it concerns named in
    it): under ``<prefix>.<window_key>`` (now ``window_value``) when windows cover the grid, under
    ``<prefix>.eval_variants`` when a migration drops nothing."""
    grouped: dict[tuple[str, str, str], list[str]] = {}
    for inactive in error.inactive:
        grouped.setdefault((inactive.setting, inactive.problem, inactive.fix), []).append(inactive.variant)
    return [Problem(f"{prefix}.{window_key}" if setting == "window_size" else f"{prefix}.eval_variants",
                    window_value if setting == "window_size" else variants,
                    f"{', '.join(variants)}: {problem}", fix)
            for (setting, problem, fix), variants in grouped.items()]


def openmmlab_evaluation_size(cfg: Any) -> tuple[int, int] | None:
    """The input size (H, W) px an OpenMMLab config evaluates at: a sliding-window test's crop, else the
    largest size the validation pipeline's ``Resize`` makes (mmcv's ``scale`` is (W, H)), padded as the data
    preprocessor pads (``pad_size_divisor``, at least the 16 px tokens); None when neither
    says (the fine-tune then records the size the backbone saw, ``itpn.mmlab.runner.evaluated_layout``)."""
    test_cfg = cfg.get("model", {}).get("test_cfg") or {}
    if test_cfg.get("mode") == "slide" and test_cfg.get("crop_size"):
        height, width = test_cfg["crop_size"]
        return int(height), int(width)
    loader = cfg.get("val_dataloader") or {}
    pipeline = (loader.get("dataset") or {}).get("pipeline") or cfg.get("test_pipeline") or []
    divisor = int((cfg.get("model", {}).get("data_preprocessor") or {}).get("pad_size_divisor") or 16)
    for step in pipeline:
        if str(step.get("type", "")).endswith("Resize") and step.get("scale"):
            scale = step["scale"]
            width, height = (scale, scale) if isinstance(scale, int) else scale
            return _padded(int(height), max(divisor, 16)), _padded(int(width), max(divisor, 16))
    return None


def _padded(side: int, divisor: int) -> int:
    return -(-side // divisor) * divisor


class PipelineParams(Strict):
    experiment: ExperimentParams = Field(default_factory=ExperimentParams)
    data: DataParams = Field(default_factory=DataParams)
    pretrain: dict[str, Any] = Field(default_factory=dict, description="PretrainConfig's keys (itpn.pretrain)")
    finetune: dict[str, dict[str, Any]] = Field(default_factory=dict, description="per task: ClassificationConfig's "
                                                "keys, or an OpenMMLab section (OpenMMLabSection)")
    benchmark: BenchmarkParams = Field(default_factory=BenchmarkParams)

    @classmethod
    def load(cls, path: str | Path, *, check_data: bool = False) -> "PipelineParams":
        """Read and check the parameters file ``path``; raises ``ParamsError`` listing every problem.
        ``check_data``: the data sets must already be under ``data.root`` unless they are generated."""
        path = Path(path)
        if not path.is_file():
            raise ParamsError(path, [Problem("(file)", str(path), "no such parameters file",
                                             "give --params the path of a parameters file; " + EXAMPLE)])
        try:
            raw = yaml.safe_load(path.read_text())
        except yaml.YAMLError as error:
            where = getattr(error, "problem_mark", None)
            line = f"line {where.line + 1}" if where else "(file)"
            raise ParamsError(path, [Problem(line, ..., f"not valid YAML ({getattr(error, 'problem', error)})",
                                             "fix the YAML syntax there")]) from None
        if raw is None:  # an empty file, or comments only: running on every default is never what was meant
            raise ParamsError(path, [Problem("(file)", ..., "the file is empty (no sections)",
                                             "write the sections to run (experiment, data, pretrain, finetune, "
                                             "benchmark); " + EXAMPLE)])
        if not isinstance(raw, dict):
            raise ParamsError(path, [Problem("(file)", raw, "not a mapping of sections", EXAMPLE)])
        return cls.from_mapping(raw, source=path, base=path.resolve().parent, check_data=check_data)

    @classmethod
    def from_mapping(cls, raw: dict[str, Any], *, source: Path | str, base: Path,
                     check_data: bool = False) -> "PipelineParams":
        """Parameters from a parsed mapping (what a parameters file holds), checked whole; relative
        locations are relative to ``base``. Raises ``ParamsError`` naming ``source``."""
        try:
            params, problems = cls.model_validate(raw), []
        except ValidationError as error:
            # Every problem at once: the sections the outline rejects are reported here, and the others are
            # still checked below (through the library's configs) on parameters without the rejected ones.
            problems = _pydantic_problems(error, cls)
            rejected = {entry["loc"][0] for entry in error.errors() if entry["loc"]}
            try:
                params = cls.model_validate({key: value for key, value in raw.items() if key not in rejected})
            except ValidationError:
                raise ParamsError(source, problems) from None
        params.experiment.output_dir = _anchor(params.experiment.output_dir, base)
        params.experiment.stage_dirs = {stage: _anchor(folder, base)
                                        for stage, folder in params.experiment.stage_dirs.items()}
        params.data.root = _anchor(params.data.root, base)
        problems += params.problems()
        if check_data:
            problems += params.data_problems()
        if problems:
            raise ParamsError(source, problems)
        return params

    def problems(self) -> list[Problem]:
        """Every problem of the sections the outline leaves to the library (and of the stage folders)."""
        from itpn.data import GENERATORS
        from itpn.finetune import ClassificationConfig
        from itpn.pretrain import PretrainConfig

        problems = [_unknown(f"experiment.stage_dirs.{stage}", folder, STAGE_NAMES, "stage")
                    for stage, folder in self.experiment.stage_dirs.items() if stage not in STAGE_NAMES]
        problems += self._model_problems() + self._device_problems()
        problems += _library_problems(PretrainConfig, self.pretrain, "pretrain", self.pretrain_config)
        for task, section in self.finetune.items():
            if task not in FINETUNE_TASKS:
                problems.append(_unknown(f"finetune.{task}", section, FINETUNE_TASKS, "task"))
            elif task in OPENMMLAB_TASKS:
                problems += self._openmmlab_problems(task, section)
            else:
                problems += _library_problems(ClassificationConfig, section, f"finetune.{task}",
                                              lambda: self.classification_config(section.get("pretrained")))
        for kind, arguments in self.data.sets.items():
            if kind not in GENERATORS:
                problems.append(_unknown(f"data.sets.{kind}", arguments, GENERATORS, "data set"))
            elif self.data.generate:
                problems += _generator_problems(kind, arguments)
        problems += self._variant_problems("benchmark.variants", self.benchmark.variants)
        return problems + self._benchmark_layout_problems()

    def _stage3_depth(self) -> int:
        from itpn.models.layout import stage3_depth

        return stage3_depth(self.experiment.model, self.experiment.model_kwargs)

    def _benchmark_layout_problems(self) -> list[Problem]:
        """Variants the benchmark would time while they do not act at a resolution (``check_active``)."""
        from itpn.models import VARIANTS
        from itpn.models.layout import InactiveVariantError, check_active

        variants = [name for name in self.benchmark.variants or VARIANTS if name in VARIANTS and name != "baseline"]
        problems = []
        for resolution in self.benchmark.resolutions if variants else []:
            try:
                check_active(variants, resolution, self._stage3_depth(),
                             window_size=self.benchmark.window_for(resolution))
            except InactiveVariantError as error:
                window_key = (f"window_size.{resolution}" if isinstance(self.benchmark.window_size, dict)
                              else "window_size")
                problems += [Problem(problem.key.replace("benchmark.eval_variants", "benchmark.variants"),
                                     *astuple(problem)[1:])
                             for problem in _inactive_problems(error, "benchmark", window_key,
                                                               self.benchmark.window_for(resolution))]
            except ValueError as error:
                problems.append(Problem("benchmark.resolutions", resolution, str(error),
                                        "use sides that are multiples of 16 px"))
        return problems

    def _model_problems(self) -> list[Problem]:
        import timm

        import itpn.models  # noqa: F401 - registers the models with timm

        if timm.is_model(self.experiment.model):
            return []
        return [_unknown("experiment.model", self.experiment.model, itpn.models.MODEL_NAMES, "model",
                         unknown_value=True)]

    def _device_problems(self) -> list[Problem]:
        """``experiment.device`` must be one ``itpn.runtime.setup_runtime`` (``torch.device``) takes."""
        device = self.experiment.device
        if re.fullmatch(DEVICE_PATTERN, device):
            return []
        return [_unknown("experiment.device", device, DEVICES, "device", unknown_value=True)]

    def _variant_problems(self, key: str, variants: list[str]) -> list[Problem]:
        from itpn.models import VARIANTS

        return [_unknown(key, variant, VARIANTS, "acceleration variant", unknown_value=True) for variant in variants
                if variant not in VARIANTS]

    def _openmmlab_problems(self, task: str, section: dict[str, Any]) -> list[Problem]:
        prefix = f"finetune.{task}"
        try:
            checked = OpenMMLabSection.model_validate(section)
        except ValidationError as error:
            return _pydantic_problems(error, OpenMMLabSection, prefix)
        problems = []
        if not (REPO_ROOT / checked.config).is_file():
            folder = f"configs/{Path(checked.config).parent.name}" if checked.config else "configs/"
            problems.append(Problem(f"{prefix}.config", checked.config, f"no such file in {REPO_ROOT}",
                                    f"name a config under {folder} (relative to the repository)"))
        variants = [checked.variant] if checked.variant else []
        unknown = self._variant_problems(f"{prefix}.eval_variants", [*variants, *checked.eval_variants])
        if problems or unknown:
            return problems + unknown
        return self._openmmlab_layout_problems(prefix, checked, [*variants, *checked.eval_variants])

    def _openmmlab_layout_problems(self, prefix: str, section: OpenMMLabSection, variants: list[str]
                                   ) -> list[Problem]:
        """Variants the fine-tune would evaluate while they do not act at the config's evaluation size."""
        variants = [variant for variant in variants if variant != "baseline"]
        evaluation = self.openmmlab_evaluation(section) if variants else None
        if evaluation is None or evaluation[0] is None:
            return []
        from itpn.models.layout import InactiveVariantError, check_active

        size, window_size = evaluation
        try:
            check_active(variants, size, self._stage3_depth(), window_size=window_size)
        except InactiveVariantError as error:
            problems = _inactive_problems(error, f"{prefix}.cfg_options", "model.backbone.window_size", window_size)
            return [Problem(problem.key.replace(f"{prefix}.cfg_options.eval_variants", f"{prefix}.eval_variants"),
                            *astuple(problem)[1:]) for problem in problems]
        return []

    def openmmlab_evaluation(self, section: OpenMMLabSection) -> tuple[tuple[int, int] | None, int | None] | None:
        """The input size (H, W) px an OpenMMLab fine-tune evaluates at (``openmmlab_evaluation_size`` of its
        config with the section's ``cfg_options``) and its backbone's ``window_size``; None when OpenMMLab is
        not installed. The config is read without importing OpenMMLab's modules (a tenth of a second)."""
        try:
            from mmengine.config import Config
        except ImportError:  # `itpn doctor` names it; the fine-tune cannot run anyway
            return None
        cfg = Config.fromfile(str(REPO_ROOT / section.config), import_custom_modules=False)
        if section.cfg_options:
            cfg.merge_from_dict(dict(section.cfg_options))
        return openmmlab_evaluation_size(cfg), cfg.model.backbone.get("window_size")

    def data_problems(self) -> list[Problem]:
        """Data sets that are not generated must already be under ``data.root``: a missing root or kind."""
        import fsspec

        if self.data.generate:
            return []
        filesystem, root = fsspec.core.url_to_fs(self.data.root)
        real_data = "the folder holding your data sets in their standard layouts (README, \"Real data\")"
        if not filesystem.isdir(root):
            return [Problem("data.root", self.data.root, "no such folder, and data.generate is false so nothing "
                            "will be generated there", f"point data.root at {real_data}, or set data.generate: true "
                            "for generated stand-ins")]
        return [Problem(f"data.sets.{kind}", self.data_url(kind), "no such folder under data.root",
                        f"put the {kind} data set there, or remove data.sets.{kind}")
                for kind in self.data.sets if not filesystem.isdir(f"{root.rstrip('/')}/{kind}")]

    def data_url(self, kind: str) -> str:
        """Where the data set of ``kind`` lives: ``<data.root>/<kind>``."""
        return f"{self.data.root.rstrip('/')}/{kind}"

    def stage_dir(self, stage: str) -> Path:
        """Where ``stage`` writes ``result.json``: ``<experiment.output_dir>/<stage>`` unless shared."""
        return Path(self.experiment.stage_dirs.get(stage) or Path(self.experiment.output_dir) / stage)

    def run_dir(self, stage: str) -> Path:
        """Where ``stage``'s library writes its own files (checkpoints, logs, exports): the library's
        ``output_url`` / ``work_dir``, resumed after a kill (``flows.stages.run_folder``)."""
        return self.stage_dir(stage) / RUN_FOLDER

    def pretrain_export(self) -> Path:
        """The pre-training's export, what the fine-tunes start from."""
        from itpn.pretrain import EXPORT_NAME

        return self.run_dir("pretrain") / EXPORT_NAME

    def record_name(self, stage: str) -> str:
        """The experiment ``stage`` is recorded under: a shared stage under ``shared_name``."""
        if stage in self.experiment.stage_dirs and self.experiment.shared_name:
            return self.experiment.shared_name
        return self.experiment.name

    def _common(self) -> dict[str, Any]:
        return {"model": self.experiment.model, "model_kwargs": self.experiment.model_kwargs,
                "device": self.experiment.device}

    def pretrain_config(self) -> Any:
        """The ``pretrain`` section as the library's ``PretrainConfig``, with the experiment's model and device,
        the ImageNet data and the stage's run folder."""
        from itpn.pretrain import PretrainConfig

        return PretrainConfig.from_dict({**self._common(), **self.pretrain, "data_url": self.data_url("imagenet"),
                                         "output_url": str(self.run_dir("pretrain"))}, source="pretrain")

    def classification_config(self, pretrained: str | None) -> Any:
        """``finetune.classification`` as the library's ``ClassificationConfig``, starting from ``pretrained``."""
        from itpn.finetune import ClassificationConfig

        section = self.finetune.get("classification", {})
        return ClassificationConfig.from_dict({**self._common(), **section, "data_url": self.data_url("imagenet"),
                                               "output_url": str(self.run_dir("finetune_classification")),
                                               "pretrained": pretrained}, source="finetune.classification")
