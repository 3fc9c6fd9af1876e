"""The whole GPU table in one process, within a time budget: Fast-iTPN against ViT, every acceleration
variant, a fine-tuning step and an integral pre-training step.

    PYTHONPATH=. python3 benchmarks/gpu_suite.py --out results/gpu_suite          # one H200: at most 8 minutes
    PYTHONPATH=. python3 benchmarks/gpu_suite.py --device cpu --small --out /tmp/s  # the same code paths, tiny

Measured, bf16 (autocast) by default, in this order (what matters most first, so a budget that runs out
cuts the least important rows):

1. inference img/s of Fast-iTPN T/S/B/L and timm's ViT-B/16 and ViT-L/16 at 224² (batch 256) and 1024²
   (batch 8), eager, with peak memory and GFLOPs per image;
2. every acceleration variant of Fast-iTPN-B (the dense-prediction backbone with its pyramid, as
   Figure 5 of the paper times it) at 1024² and 800×1344, batch 8: img/s, speed-up over the baseline,
   GFLOPs, peak memory;
3. one fine-tuning step (forward, backward, AdamW) of Fast-iTPN-B and ViT-B/16 at 224², batch 128;
4. one integral pre-training update of Fast-iTPN-B at 224² (75 % masked, MIM + MFM with the EMA teacher,
   ``itpn.pretrain.Trainer``), batch 128: img/s and MFU;
5. the same inference ``torch.compile``d (``fullgraph=True``): Fast-iTPN-B and ViT-B first, then the
   variants of Figure 5 at 1024², then the other models.

Each group is measured in interleaved rounds (every row once per round, the fastest round counts).
Before each group or compile the run estimates its seconds (FLOPs at the slowest rate measured so far;
compiles from the blocks traced, scaled by the worst compile overrun so far) and skips what would end
after ``--budget`` seconds, saying so in the table. ``gpu_suite.json`` and ``gpu_suite.md`` are
rewritten after every group, so a run killed from outside keeps what it measured.

MFU is achieved FLOP/s (FLOPs per image x img/s, ``torch.utils.flop_counter``) over the card's stated
dense bf16 peak (``itpn.bench.cards``, source printed); a device without a stated peak (a CPU) is
judged against the matmul ceiling measured at the start of the run, and the table says which.
"""
from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import timm
import torch
import torch.nn.functional as F
from torch import nn

import itpn.models  # noqa: F401  (registers the models with timm)
from itpn.bench import (best_of_rounds, count_gflops, device_name, forward_peak_memory_mb, inference_context,
                        matmul_peak_tflops, measure_throughput, measure_training_step, resolve_dtype)
from itpn.bench.budget import Budget, Estimator
from itpn.bench.cards import card_of_device
from itpn.bench.cost import FAST_ITPN_LABELS, VIT_LABELS, size_text
from itpn.bench.pretraining import measure_pretraining_step
from itpn.models import VARIANTS, set_acceleration

MODELS = {**FAST_ITPN_LABELS, **VIT_LABELS}
FIRST_COMPILED = ("Fast-iTPN-B", "ViT-B/16")  # the comparison the targets are about, compiled before the rest
COMPILED_VARIANTS = ("baseline", "migration_30", "window", "window_gathering", "migration_30_gathering")  # Fig. 5
TARGETS_NOTE = "targets of issue 24"


@dataclass(frozen=True)
class Profile:
    """Sizes, batches and repetitions of one run: ``FULL`` on the GPU, ``SMALL`` for a CPU smoke run."""

    inference: tuple[tuple[int, int], ...]  # (side in px, batch)
    variant_sizes: tuple[tuple[int, int], ...]  # (height, width) px
    variant_batch: int
    window_size: Optional[int]  # None: the variants' own (16 tokens)
    train_size: int
    train_batch: int
    pretrain_batch: int
    warmup: int
    iters: int
    rounds: int
    budget_s: float
    fast_itpn_kwargs: dict[str, Any] = field(default_factory=dict)
    vit_kwargs: dict[str, Any] = field(default_factory=dict)
    pretrain_kwargs: dict[str, Any] = field(default_factory=dict)


FULL = Profile(inference=((224, 256), (1024, 8)), variant_sizes=((1024, 1024), (800, 1344)), variant_batch=8,
               window_size=None, train_size=224, train_batch=128, pretrain_batch=128, warmup=3, iters=10, rounds=2,
               budget_s=480.0)
# Every model 64 wide with one block per stage, 2 images at 64² and 1 at 128² (the 1024² of the full run);
# the variants at 128² and 80×128 with windows of 4 tokens, so the 800×1344 row's uneven windows (padding)
# are exercised too.
SMALL = Profile(inference=((64, 2), (128, 1)), variant_sizes=((128, 128), (80, 128)), variant_batch=1, window_size=4,
                train_size=64, train_batch=2, pretrain_batch=2, warmup=1, iters=1, rounds=1, budget_s=20.0,
                fast_itpn_kwargs=dict(depths=(1, 1, 2), embed_dim=64, num_heads=2, fpn_dim=32),
                vit_kwargs=dict(depth=2, embed_dim=64, num_heads=2),
                pretrain_kwargs=dict(model_kwargs={"depths": [1, 1, 2], "embed_dim": 64, "num_heads": 2,
                                                   "fpn_dim": 32}, decoder_dim=32, decoder_depth=1, decoder_heads=2))


@dataclass
class Row:
    """One line of the table. ``status`` is ``measured`` or says why the row has no numbers."""

    section: str
    model: str
    variant: str
    size: str
    batch: int
    mode: str
    status: str = "measured"
    images_per_s: Optional[float] = None
    latency_ms: Optional[float] = None
    peak_memory_mb: Optional[float] = None
    gflops_per_image: Optional[float] = None
    compile_s: Optional[float] = None
    mfu: Optional[float] = None
    relative: Optional[float] = None  # img/s over the row it is compared with (see ``relative_to``)
    relative_to: str = ""


class Suite:
    """The run's device, precision, budget, estimates and rows; ``write`` rewrites both output files."""

    def __init__(self, args: argparse.Namespace, profile: Profile):
        self.args, self.profile = args, profile
        self.device = torch.device(args.device)
        self.dtype = resolve_dtype(args.dtype)
        self.budget = Budget(args.budget or profile.budget_s, reserve=2.0 if args.small else 10.0)
        self.card = card_of_device(device_name(self.device))
        self.matmul_tflops = matmul_peak_tflops(self.device, self.dtype)
        self.peak_tflops = self.card.bf16_tflops if self.card else self.matmul_tflops
        self.peak_source = self.card.source if self.card else (
            f"no stated peak for {device_name(self.device)}: the {self.matmul_tflops:.3g} TFLOP/s of a square "
            f"matmul measured at the start of this run")
        compile_base, compile_per_block = (20.0, 1.5) if args.compile_backend == "inductor" else (0.5, 0.3)
        self.estimate = Estimator(0.3 * self.peak_tflops, compile_base, compile_per_block)
        self.rows: list[Row] = []
        self.started = datetime.datetime.now(datetime.timezone.utc)

    # --- building and measuring ------------------------------------------------------------
    def build(self, label: str, size: tuple[int, int], **kwargs: Any) -> nn.Module:
        extra = self.profile.vit_kwargs if label in VIT_LABELS else self.profile.fast_itpn_kwargs
        with torch.device(self.device):
            return timm.create_model(MODELS[label], img_size=size, **{**extra, **kwargs}).eval()

    def images(self, batch: int, size: tuple[int, int]) -> torch.Tensor:
        return torch.randn(batch, 3, *size, device=self.device)

    def work_gflops(self, gflops_per_image: float, batch: int, calls: int) -> float:
        return gflops_per_image * batch * calls

    def calls(self) -> int:
        return (self.profile.warmup + self.profile.iters) * self.profile.rounds

    def mfu(self, gflops_per_image: float, images_per_s: float) -> float:
        return gflops_per_image * images_per_s / 1e3 / self.peak_tflops

    def compile(self, model: nn.Module) -> nn.Module:
        return torch.compile(model, fullgraph=True, dynamic=False, backend=self.args.compile_backend)  # static shapes

    def measure_group(self, rows: list[Row], models: list[nn.Module], inputs: list[torch.Tensor]) -> None:
        """Interleaved inference rounds over ``models`` (one input each); fills ``rows``' numbers."""
        start = time.monotonic()
        results = best_of_rounds({str(i): (lambda m=m, x=x: measure_throughput(
            m, x, dtype=self.dtype, warmup=self.profile.warmup, iters=self.profile.iters))
            for i, (m, x) in enumerate(zip(models, inputs))}, self.profile.rounds)
        work = 0.0
        for i, (row, model, images) in enumerate(zip(rows, models, inputs)):
            row.images_per_s, row.latency_ms = results[str(i)].images_per_s, results[str(i)].latency_ms
            row.peak_memory_mb = forward_peak_memory_mb(model, images, dtype=self.dtype)
            row.mfu = self.mfu(row.gflops_per_image, row.images_per_s)
            work += self.work_gflops(row.gflops_per_image, row.batch, self.calls())
        self.estimate.observe_run(work, time.monotonic() - start)

    def compile_and_warm(self, row: Row, model: nn.Module, images: torch.Tensor) -> Optional[nn.Module]:
        """``torch.compile`` ``model`` if its estimate fits (else ``row`` says it was skipped); the first
        call, which compiles, is timed as ``row.compile_s``."""
        blocks = sum(1 for module in model.modules() if type(module).__name__.endswith("Block"))
        estimate = self.estimate.compile_seconds(blocks) + self.estimate.run_seconds(
            self.work_gflops(row.gflops_per_image, row.batch, self.calls()))
        if not self.budget.fits(estimate):
            row.status = self.budget.skip_reason(estimate)
            return None
        compiled = self.compile(model)
        start = time.monotonic()
        try:
            with inference_context(self.device, self.dtype):
                compiled(images)
        except Exception as error:  # a model that does not compile is a finding: the row says so, the run goes on
            row.status = f"failed: {type(error).__name__}: {str(error).splitlines()[0][:200]}"
            traceback.print_exc()
            return None
        row.compile_s = time.monotonic() - start
        self.estimate.observe_compile(blocks, row.compile_s)
        return compiled

    # --- output ----------------------------------------------------------------------------------
    def header(self) -> dict[str, Any]:
        return dict(device=device_name(self.device), card=self.card.name if self.card else None,
                    torch=torch.__version__, timm=timm.__version__, python=platform.python_version(),
                    date=self.started.strftime("%Y-%m-%d %H:%M UTC"), dtype=str(self.dtype).removeprefix("torch."),
                    compile_backend=self.args.compile_backend, budget_s=self.budget.seconds,
                    elapsed_s=round(self.budget.elapsed, 1), peak_tflops=self.peak_tflops, peak_source=self.peak_source,
                    matmul_tflops=self.matmul_tflops, small=self.args.small)

    def write(self) -> None:
        out = Path(self.args.out)
        out.mkdir(parents=True, exist_ok=True)
        header = self.header()
        (out / "gpu_suite.json").write_text(json.dumps(
            {**header, "rows": [asdict(row) for row in self.rows], "targets": targets(self.rows)}, indent=2) + "\n")
        (out / "gpu_suite.md").write_text(markdown(header, self.rows))


# --- the sections ---------------------------------------------------------------------------------
def inference_eager(suite: Suite) -> None:
    for side, batch in suite.profile.inference:
        size = (side, side)
        rows = [Row("inference", label, "baseline", size_text(size), batch, "eager") for label in MODELS]
        suite.rows.extend(rows)
        models = [suite.build(label, size) for label in MODELS]
        images = suite.images(batch, size)
        for row, model in zip(rows, models):
            row.gflops_per_image = count_gflops(model, images[:1], dtype=suite.dtype)
        estimate = suite.estimate.run_seconds(sum(suite.work_gflops(r.gflops_per_image, batch, suite.calls())
                                                  for r in rows))
        if suite.budget.fits(estimate):
            suite.measure_group(rows, models, [images] * len(models))
        else:
            for row in rows:
                row.status = suite.budget.skip_reason(estimate)
        relative(rows, "ViT-B/16")
        del models
        free(suite)
        suite.write()


def variants_eager(suite: Suite) -> None:
    batch = suite.profile.variant_batch
    for size in suite.profile.variant_sizes:
        model = suite.build("Fast-iTPN-B", size, pyramid=True, num_classes=0)
        images = suite.images(batch, size)
        rows, configs = [], []
        for name, config in VARIANTS.items():
            if suite.profile.window_size and config.window_size:
                config = config.replace(window_size=suite.profile.window_size)
            set_acceleration(model, config)
            rows.append(Row("variants", "Fast-iTPN-B", name, size_text(size), batch, "eager",
                            gflops_per_image=count_gflops(model, images[:1], dtype=suite.dtype)))
            configs.append(config)
        suite.rows.extend(rows)
        estimate = suite.estimate.run_seconds(sum(suite.work_gflops(r.gflops_per_image, batch, suite.calls())
                                                  for r in rows))
        if suite.budget.fits(estimate):
            start = time.monotonic()

            def measure(config: Any, model: nn.Module = model) -> Callable[[], Any]:
                def run() -> Any:
                    set_acceleration(model, config)
                    return measure_throughput(model, images, dtype=suite.dtype, warmup=suite.profile.warmup,
                                              iters=suite.profile.iters)
                return run

            results = best_of_rounds({row.variant: measure(config) for row, config in zip(rows, configs)},
                                     suite.profile.rounds)
            for row, config in zip(rows, configs):
                set_acceleration(model, config)
                row.images_per_s, row.latency_ms = results[row.variant].images_per_s, results[row.variant].latency_ms
                row.peak_memory_mb = forward_peak_memory_mb(model, images, dtype=suite.dtype)
                row.mfu = suite.mfu(row.gflops_per_image, row.images_per_s)
            suite.estimate.observe_run(sum(suite.work_gflops(r.gflops_per_image, batch, suite.calls()) for r in rows),
                                       time.monotonic() - start)
        else:
            for row in rows:
                row.status = suite.budget.skip_reason(estimate)
        relative(rows, "baseline", key="variant")
        del model
        free(suite)
        suite.write()


def finetune_steps(suite: Suite) -> None:
    size, batch = (suite.profile.train_size,) * 2, suite.profile.train_batch
    labels = ["Fast-iTPN-B", "ViT-B/16"]
    rows = [Row("fine-tuning step", label, "baseline", size_text(size), batch, "train") for label in labels]
    suite.rows.extend(rows)
    models = [suite.build(label, size, num_classes=1000).train() for label in labels]
    images = suite.images(batch, size)
    targets_ = torch.randint(0, 1000, (batch,), device=suite.device)
    for row, model in zip(rows, models):
        row.gflops_per_image = count_gflops(lambda: model(images[:1]).float().logsumexp(-1).sum().backward())
        model.zero_grad(set_to_none=True)
    estimate = suite.estimate.run_seconds(sum(suite.work_gflops(r.gflops_per_image, batch, suite.calls())
                                              for r in rows))
    if suite.budget.fits(estimate):
        start = time.monotonic()
        optimizers = [torch.optim.AdamW(model.parameters(), lr=1e-4) for model in models]
        results = best_of_rounds({row.model: (lambda m=model, o=optimizer: measure_training_step(
            m, images, lambda logits: F.cross_entropy(logits.float(), targets_), o, dtype=suite.dtype,
            warmup=suite.profile.warmup, iters=suite.profile.iters))
            for row, model, optimizer in zip(rows, models, optimizers)}, suite.profile.rounds)
        for row in rows:
            result = results[row.model]
            row.images_per_s, row.latency_ms, row.peak_memory_mb = (result.images_per_s, result.latency_ms,
                                                                    result.peak_memory_mb)
            row.mfu = suite.mfu(row.gflops_per_image, row.images_per_s)
        suite.estimate.observe_run(sum(suite.work_gflops(r.gflops_per_image, batch, suite.calls()) for r in rows),
                                   time.monotonic() - start)
    else:
        for row in rows:
            row.status = suite.budget.skip_reason(estimate)
    relative(rows, "ViT-B/16")
    del models
    free(suite)
    suite.write()


def pretrain_step(suite: Suite) -> None:
    side, batch = suite.profile.train_size, suite.profile.pretrain_batch
    row = Row("pre-training step", "Fast-iTPN-B", "baseline", size_text((side, side)), batch,
              "train: 75 % masked, MIM + MFM, EMA teacher")
    suite.rows.append(row)
    values = dict(model=MODELS["Fast-iTPN-B"], teacher="ema", mask_ratio=0.75, img_size=side, batch_size=batch,
                  amp_dtype=suite.args.dtype, device=suite.args.device, **suite.profile.pretrain_kwargs)
    # the step's FLOPs are about three forward passes of the visible quarter plus the teacher's: ~ a fine-tune step
    reference = next((r for r in suite.rows if r.section == "fine-tuning step" and r.model == "Fast-iTPN-B"), None)
    per_image = reference.gflops_per_image if reference and reference.gflops_per_image else 0.0
    estimate = suite.estimate.run_seconds(per_image * batch * (suite.profile.warmup + suite.profile.iters)) + (
        10.0 if suite.device.type == "cuda" else 1.0)  # building the trainer (ours)
    if not suite.budget.fits(estimate):
        row.status = suite.budget.skip_reason(estimate)
    else:
        start = time.monotonic()
        step = measure_pretraining_step(values, warmup=suite.profile.warmup, iters=suite.profile.iters)
        row.images_per_s, row.latency_ms, row.peak_memory_mb = step.images_per_s, step.step_ms, step.peak_memory_mb
        row.gflops_per_image = step.gflops_per_image
        row.mfu = suite.mfu(step.gflops_per_image, step.images_per_s)
        suite.estimate.observe_run(step.gflops_per_image * batch * (suite.profile.warmup + suite.profile.iters),
                                   time.monotonic() - start)
    free(suite)
    suite.write()


def compiled_group(suite: Suite, section: str, entries: list[tuple[str, str, tuple[int, int], int]]) -> None:
    """Compile each (model label, variant, size, batch) of ``section`` (``inference``: the classifier,
    ``variants``: the dense backbone) that fits, then time the compiled ones interleaved."""
    eager = {(r.section, r.model, r.variant, r.size): r for r in suite.rows if r.mode == "eager"}
    rows, models, inputs = [], [], []
    for label, variant, size, batch in entries:
        row = Row(section, label, variant, size_text(size), batch, "compiled")
        suite.rows.append(row)
        if section == "variants":
            model = suite.build(label, size, pyramid=True, num_classes=0)
            config = VARIANTS[variant]
            if suite.profile.window_size and config.window_size:
                config = config.replace(window_size=suite.profile.window_size)
            set_acceleration(model, config)
        else:
            model = suite.build(label, size)
        reference = eager.get((section, label, variant, row.size))
        images = suite.images(batch, size)
        row.gflops_per_image = reference.gflops_per_image if reference and reference.gflops_per_image else \
            count_gflops(model, images[:1], dtype=suite.dtype)
        compiled = suite.compile_and_warm(row, model, images)
        if compiled is not None:
            rows.append(row)
            models.append(compiled)
            inputs.append(images)
        suite.write()
    if rows:
        estimate = suite.estimate.run_seconds(sum(suite.work_gflops(r.gflops_per_image, r.batch, suite.calls())
                                                  for r in rows))
        if suite.budget.fits(estimate):
            suite.measure_group(rows, models, inputs)
        else:
            for row in rows:
                row.status = suite.budget.skip_reason(estimate) + " (compiled, not timed)"
    for row in rows:
        reference = eager.get((section, row.model, row.variant, row.size))
        if reference and reference.images_per_s and row.images_per_s:
            row.relative, row.relative_to = row.images_per_s / reference.images_per_s, "eager"
    del models
    free(suite)
    suite.write()


def compiled(suite: Suite) -> None:
    sides = suite.profile.inference
    compiled_group(suite, "inference", [(label, "baseline", (side, side), batch) for side, batch in sides
                                         for label in FIRST_COMPILED])
    size, batch = suite.profile.variant_sizes[0], suite.profile.variant_batch
    compiled_group(suite, "variants", [("Fast-iTPN-B", variant, size, batch) for variant in COMPILED_VARIANTS])
    rest = [label for label in MODELS if label not in FIRST_COMPILED]
    compiled_group(suite, "inference", [(label, "baseline", (side, side), batch) for side, batch in sides
                                        for label in rest])


# --- comparisons, targets and the table --------------------------------------------------------------
def relative(rows: list[Row], reference: str, key: str = "model") -> None:
    base = next((row for row in rows if getattr(row, key) == reference and row.images_per_s), None)
    for row in rows:
        if base and row.images_per_s:
            row.relative, row.relative_to = row.images_per_s / base.images_per_s, reference


def free(suite: Suite) -> None:
    if suite.device.type == "cuda":
        torch.cuda.empty_cache()


def targets(rows: list[Row]) -> list[dict[str, Any]]:
    """The issue's targets, each with the measured value (None when its rows were skipped)."""
    def ratio(section: str, model: str, variant: str, mode: str, size_index: int) -> Optional[float]:
        sizes = list(dict.fromkeys(r.size for r in rows if r.section == section))
        if size_index >= len(sizes):
            return None
        row = next((r for r in rows if (r.section, r.model, r.variant, r.mode, r.size) ==
                    (section, model, variant, mode, sizes[size_index])), None)
        if row is None or row.images_per_s is None:
            return None
        if section == "variants":
            return row.relative
        reference = next((r for r in rows if (r.section, r.variant, r.mode, r.size) == (section, "baseline", mode, row.size)
                          and r.model == "ViT-B/16" and r.images_per_s), None)
        return row.images_per_s / reference.images_per_s if reference else None

    pretrain = next((r for r in rows if r.section == "pre-training step" and r.mfu is not None), None)
    checks = [
        ("Fast-iTPN-B / ViT-B/16 img/s, first inference size, eager", ratio("inference", "Fast-iTPN-B", "baseline",
                                                                             "eager", 0), 0.9),
        ("Fast-iTPN-B / ViT-B/16 img/s, first inference size, compiled", ratio("inference", "Fast-iTPN-B", "baseline",
                                                                                "compiled", 0), 0.9),
        ("Fast-iTPN-B / ViT-B/16 img/s, second inference size, eager", ratio("inference", "Fast-iTPN-B", "baseline",
                                                                              "eager", 1), 0.8),
        ("Fast-iTPN-B / ViT-B/16 img/s, second inference size, compiled", ratio(
            "inference", "Fast-iTPN-B", "baseline", "compiled", 1), 0.8),
        ("migration_30 speed-up, first variant size, eager", ratio("variants", "Fast-iTPN-B", "migration_30", "eager",
                                                                   0), 1.2),
        ("window_gathering speed-up, first variant size, eager", ratio("variants", "Fast-iTPN-B", "window_gathering",
                                                                       "eager", 0), 1.6),
        ("migration_30_gathering speed-up, first variant size, eager", ratio("variants", "Fast-iTPN-B",
                                                                             "migration_30_gathering", "eager", 0), 1.7),
        ("fine-tuning step Fast-iTPN-B / ViT-B/16", ratio("fine-tuning step", "Fast-iTPN-B", "baseline", "train", 0),
         0.9),
        ("pre-training MFU", pretrain.mfu if pretrain else None, 0.35),
    ]
    return [dict(target=name, value=value, at_least=bound,
                 verdict="not measured" if value is None else "met" if value >= bound else "missed")
            for name, value, bound in checks]


def markdown(header: dict[str, Any], rows: list[Row]) -> str:
    def number(value: Optional[float], fmt: str) -> str:
        return "-" if value is None else fmt.format(value)

    lines = [f"# GPU suite: {header['device']}, torch {header['torch']}, timm {header['timm']}, {header['date']}", "",
             f"{header['dtype']} autocast; compiled with `torch.compile(fullgraph=True, backend="
             f"'{header['compile_backend']}')`; {header['elapsed_s']:.0f} s of a {header['budget_s']:.0f} s budget. "
             f"MFU against {header['peak_tflops']:.4g} TFLOP/s ({header['peak_source']}).", "",
             "| section | model | variant | size | batch | mode | img/s | relative | latency ms | peak MiB | "
             "GFLOPs/img | compile s | MFU | status |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        versus = f"{row.relative:.2f}× {row.relative_to}" if row.relative is not None else "-"
        lines.append(f"| {row.section} | {row.model} | {row.variant} | {row.size} | {row.batch} | {row.mode} | "
                     f"{number(row.images_per_s, '{:.1f}')} | {versus} | {number(row.latency_ms, '{:.1f}')} | "
                     f"{number(row.peak_memory_mb, '{:.0f}')} | {number(row.gflops_per_image, '{:.1f}')} | "
                     f"{number(row.compile_s, '{:.0f}')} | {number(row.mfu and 100 * row.mfu, '{:.1f} %')} | "
                     f"{row.status} |")
    lines += ["", f"## Targets ({TARGETS_NOTE})", "", "| target | measured | at least | verdict |", "|---|---|---|---|"]
    for check in targets(rows):
        lines.append(f"| {check['target']} | {number(check['value'], '{:.2f}')} | {check['at_least']} | "
                     f"{check['verdict']} |")
    return "\n".join(lines) + "\n"


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder for gpu_suite.json and gpu_suite.md")
    parser.add_argument("--device", default="cuda", help="cuda[:index], or cpu with --small")
    parser.add_argument("--dtype", help="bf16 (default), fp16 or fp32 autocast; --small defaults to fp32")
    parser.add_argument("--small", action="store_true",
                        help="tiny models and sizes (a CPU smoke run of the same code paths, about 20 s)")
    parser.add_argument("--budget", type=float, help=f"seconds for the whole run (default {FULL.budget_s:.0f}; "
                                                     f"--small {SMALL.budget_s:.0f})")
    parser.add_argument("--compile-backend", help="torch.compile backend: inductor (default), or eager for dynamo "
                                                  "tracing only (the default with --small)")
    args = parser.parse_args(argv)
    args.dtype = args.dtype or ("fp32" if args.small else "bf16")
    args.compile_backend = args.compile_backend or ("eager" if args.small else "inductor")
    resolve_dtype(args.dtype)  # an unknown name stops here, listing the valid ones
    if torch.device(args.device).type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: CUDA is not available here; use --device cpu --small for a smoke run")
    return args


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    # every compiled model and variant keeps its own graph: dynamo's default of 8 per code object is too few
    for name in ("recompile_limit", "cache_size_limit", "accumulated_recompile_limit", "accumulated_cache_size_limit"):
        if hasattr(torch._dynamo.config, name):
            setattr(torch._dynamo.config, name, max(256, getattr(torch._dynamo.config, name)))
    if args.device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    suite = Suite(args, SMALL if args.small else FULL)
    print(f"{suite.header()['device']}, torch {torch.__version__}, budget {suite.budget.seconds:.0f} s", flush=True)
    for section in (inference_eager, variants_eager, finetune_steps, pretrain_step, compiled):
        print(f"[{suite.budget.elapsed:5.0f} s] {section.__name__}", flush=True)
        section(suite)
    print(markdown(suite.header(), suite.rows))
    print(f"wrote {args.out}/gpu_suite.json and gpu_suite.md after {suite.budget.elapsed:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
