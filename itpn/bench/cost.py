"""What a training run costs in GPU-hours on a named card, before it starts.

GPU-hours of a stage = images it processes (epochs x data-set size, or iterations x global batch) /
(img/s on one card) / 3600. The img/s is the one ``benchmarks/gpu_suite.py`` measured on that card
when its ``gpu_suite.json`` has the same step (model, input size, teacher); otherwise it is derived
from the stage's FLOPs per image (forward + backward, ``torch.utils.flop_counter`` on the meta
device) at an assumed MFU of the card's stated bf16 peak (``ASSUMED_MFU``, ours). Cards are taken to
scale linearly (ours): N cards take 1/N of the hours.

The paper's own cost (section 5.1): one pre-training epoch of the base models takes about 2.7
(pixel, i.e. EMA-teacher or none) and 4.7 (CLIP) minutes on 64 V100s; of the large models 4.2 and
12.0 minutes (``PAPER_EPOCH_MINUTES``).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional

import torch

from .cards import Card, card_of_device
from .measure import count_gflops

ASSUMED_MFU = 0.35  # ours: the pre-training target of issue 24, used where no measured img/s exists
PAPER_GPUS = 64  # NVIDIA Tesla V100 (section 5.1)
PAPER_EPOCH_MINUTES = {("base", "pixel"): 2.7, ("base", "clip"): 4.7, ("large", "pixel"): 4.2,
                       ("large", "clip"): 12.0}
# Training images per epoch of the real data sets: ImageNet-1K train (ILSVRC 2012), COCO train2017, ADE20K
# SceneParsing train; DOTA v1.0's 1,411 train images cut into 1024-px patches with 200-px overlap give about
# 15,700 patches (ours: an estimate of the split, counted from the image sizes of the released set).
TRAIN_IMAGES = {"imagenet": 1_281_167, "coco": 118_287, "ade20k": 20_210, "dota": 15_700}


# The gpu suite's names of the models it measures (benchmarks/gpu_suite.py), the keys of its rows.
FAST_ITPN_LABELS = {"Fast-iTPN-T": "fast_itpn_tiny_patch16_224", "Fast-iTPN-S": "fast_itpn_small_patch16_224",
                    "Fast-iTPN-B": "fast_itpn_base_patch16_224", "Fast-iTPN-L": "fast_itpn_large_patch16_224"}
VIT_LABELS = {"ViT-B/16": "vit_base_patch16_224", "ViT-L/16": "vit_large_patch16_224"}


def size_text(size: tuple[int, int]) -> str:
    """``(224, 224)`` -> ``"224²"``, ``(800, 1344)`` -> ``"800×1344"``: the size column of the suite's rows."""
    return f"{size[0]}²" if size[0] == size[1] else f"{size[0]}×{size[1]}"


def suite_label(section: str, model: str, side: int) -> Optional[tuple[str, str, str]]:
    """The suite row key (section, model label, size) of ``model`` (a timm name) at ``side``² px, None when the
    suite does not measure that model."""
    label = next((label for label, name in {**FAST_ITPN_LABELS, **VIT_LABELS}.items() if name == model), None)
    return None if label is None else (section, label, size_text((side, side)))


@dataclass(frozen=True)
class StageWork:
    """The work of one stage: ``images`` it processes (``images_basis`` says how they were counted), the
    GFLOPs per image of its step (``flops_basis``), and ``suite_key``: the gpu_suite row
    (section, model label, size) whose img/s, when measured on the card, replaces the MFU assumption."""

    stage: str
    images: float
    images_basis: str
    gflops_per_image: float
    flops_basis: str
    suite_key: Optional[tuple[str, str, str]] = None
    paper_v100_hours: Optional[float] = None


@dataclass(frozen=True)
class StageCost:
    work: StageWork
    gpu_hours: float
    images_per_s: float
    rate_basis: str


def load_suite(path: Optional[str | Path], card: Card) -> Optional[dict[str, Any]]:
    """``gpu_suite.json`` at ``path`` when it was measured on ``card`` (None when ``path`` is None or missing).
    Raises ValueError when the file was measured on another card: its img/s would price the wrong one."""
    if path is None or not Path(path).is_file():
        return None
    suite = json.loads(Path(path).read_text())
    measured_on = card_of_device(suite.get("device", ""))
    if measured_on is None or measured_on.name != card.name:
        raise ValueError(f"{path} was measured on {suite.get('device')!r}, not on a {card.name}: give the suite file "
                         f"of that card, or --card {measured_on.name if measured_on else '<its card>'}")
    return suite


def suite_images_per_s(suite: Optional[dict[str, Any]], key: Optional[tuple[str, str, str]]) -> Optional[float]:
    """The measured img/s of the eager (or training) row ``key`` = (section, model label, size) of a suite."""
    if suite is None or key is None:
        return None
    for row in suite.get("rows", []):
        if (row["section"], row["model"], row["size"]) == key and row["mode"] != "compiled" and row["images_per_s"]:
            return float(row["images_per_s"])
    return None


def stage_cost(work: StageWork, card: Card, suite: Optional[dict[str, Any]] = None,
               mfu: float = ASSUMED_MFU) -> StageCost:
    """GPU-hours of ``work`` on ``card``: from the suite's measured img/s when it has the step, else from
    FLOPs at ``mfu`` of the card's stated peak: hours = GFLOPs/img x images / (mfu x peak TFLOP/s x 1e3) / 3600."""
    measured = suite_images_per_s(suite, work.suite_key)
    if measured:
        rate, basis = measured, f"measured by gpu_suite on {suite['device']} ({suite.get('date', '')})"
    elif work.gflops_per_image > 0:
        rate = mfu * card.bf16_tflops * 1e3 / work.gflops_per_image
        basis = f"{100 * mfu:.0f} % MFU of {card.bf16_tflops:g} TFLOP/s (assumed, ours)"
    else:
        return StageCost(work, 0.0, 0.0, "no GPU work")
    return StageCost(work, work.images / rate / 3600, rate, basis)


def paper_v100_hours(model: str, teacher: str, epochs: float) -> Optional[float]:
    """The paper's V100-hours for ``epochs`` of pre-training ``model`` (section 5.1), None for sizes it
    does not report (tiny, small)."""
    size = next((size for size in ("base", "large") if f"_{size}_" in model), None)
    if size is None:
        return None
    supervision = "clip" if teacher.startswith("clip") else "pixel"
    return PAPER_EPOCH_MINUTES[(size, supervision)] * epochs * PAPER_GPUS / 60


@lru_cache(maxsize=None)
def _training_gflops(model: str, size: tuple[int, int], kwargs: str, pyramid: bool, backward: bool) -> float:
    import timm

    import itpn.models  # noqa: F401  (registers the models)
    from itpn.models import set_acceleration

    options = json.loads(kwargs)
    variant = options.pop("variant", None)
    with torch.device("meta"):
        extra = {"pyramid": True, "num_classes": 0} if pyramid else {}
        network = timm.create_model(model, img_size=size, **extra, **options)
        if variant:
            set_acceleration(network, variant)
        images = torch.empty(1, 3, *size)

        def step() -> None:
            out = network(images)
            total = sum(value.float().sum() for value in out.values()) if isinstance(out, dict) else out.float().sum()
            if backward:
                total.backward()

        if backward:
            return count_gflops(step)
        with torch.no_grad():
            return count_gflops(step)


def training_gflops(model: str, size: tuple[int, int], model_kwargs: Optional[dict[str, Any]] = None, *,
                    pyramid: bool = False, variant: Optional[str] = None, backward: bool = True) -> float:
    """GFLOPs per image of one forward (+ backward) of ``model`` at ``size`` (H, W) px, counted on the meta
    device (no weights, seconds for any size); ``pyramid``: the dense backbone with its feature pyramid
    (the detection / segmentation heads are not counted); ``variant``: an acceleration variant."""
    options = dict(model_kwargs or {}, **({"variant": variant} if variant else {}))
    return _training_gflops(model, tuple(size), json.dumps(options, sort_keys=True), pyramid, backward)


@lru_cache(maxsize=None)
def _pretraining_gflops(values: str) -> float:
    from itpn.pretrain import PretrainConfig
    from itpn.pretrain.masking import MaskGenerator
    from itpn.pretrain.teachers import EMATeacher
    from itpn.pretrain.trainer import build_objective

    config = PretrainConfig.from_dict({**json.loads(values), "device": "cpu"})
    grid = (config.img_size // 16, config.img_size // 16)
    with torch.device("meta"):
        objective = build_objective(config, 768 if config.uses_clip else None)
        teacher = EMATeacher(objective.encoder, config.ema_momentum, config.mfm_targets) \
            if config.teacher == "ema" else None
    mask = MaskGenerator(grid, config.mask_ratio, config.mask_mode)(1, torch.Generator().manual_seed(0)).to("meta")
    images = torch.empty(1, 3, config.img_size, config.img_size, device="meta")
    targets = None

    def step() -> None:
        nonlocal targets
        if teacher is not None:
            with torch.no_grad():
                targets = teacher(images, mask)
        objective(images, mask, targets)["loss"].backward()

    return count_gflops(step)


def pretraining_gflops(config_values: dict[str, Any]) -> float:
    """GFLOPs per image of one integral pre-training update (EMA teacher's forward, the student's forward and
    backward on the visible units, the decoder on all), counted on the meta device. A CLIP teacher's own
    forward is not counted (its weights are not loaded for a plan): the figure is then a lower bound."""
    return _pretraining_gflops(json.dumps(config_values, sort_keys=True, default=str))
