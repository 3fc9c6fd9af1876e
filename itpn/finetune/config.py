"""``ClassificationConfig``: an ImageNet fine-tune, with the paper's recipe for each model size as defaults."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Optional

from itpn.config import COUNT, FRACTION, NON_NEGATIVE, POSITIVE, ConfigValueError, DataclassConfig, Range
from itpn.models.acceleration import get_variant
from itpn.models.layout import check_active, stage3_depth
from itpn.records import model_size

# Fast-iTPN ImageNet-1K fine-tuning (the released fast_itpn/README.md; official-code-facts 5.2).
# batch_size is per GPU and accum_steps the update frequency: T/S ran 16 GPUs, B and L 32 GPUs.
RECIPES: dict[str, dict[str, Any]] = {
    "tiny": dict(lr=1e-4, epochs=100, warmup_epochs=5, layer_decay=0.80, drop_path=0.1, batch_size=64,
                 accum_steps=1, img_size=224),
    "small": dict(lr=1e-4, epochs=100, warmup_epochs=5, layer_decay=0.90, drop_path=0.1, batch_size=64,
                  accum_steps=1, img_size=224),
    "base": dict(lr=1e-4, epochs=20, warmup_epochs=3, layer_decay=0.90, drop_path=0.1, batch_size=32,
                 accum_steps=1, img_size=224),
    "large": dict(lr=5e-5, epochs=20, warmup_epochs=3, layer_decay=0.95, drop_path=0.2, batch_size=4,
                  accum_steps=4, img_size=640),
}


@dataclass
class ClassificationConfig(DataclassConfig):
    """An ImageNet-style fine-tune. Fields left ``None`` take the paper's value for the model's size
    (``RECIPES``); the rest are the recipe shared by all sizes: AdamW (weight decay 0.05), warm-up then
    cosine to ``min_lr``, mixup 0.8 / cutmix 1.0, RandAugment ``rand-m9-mstd0.5-inc1``, random erasing
    0.25, label smoothing 0.1, model EMA 0.9999 used for evaluation."""

    # model
    model: str = "fast_itpn_base_patch16_224"
    model_kwargs: dict[str, Any] = field(default_factory=dict)  # extra timm.create_model arguments
    pretrained: Optional[str] = None  # pre-training export (safetensors) or released checkpoint URL
    variant: str = "baseline"  # acceleration variant used while fine-tuning
    eval_variants: list[str] = field(default_factory=list)  # also evaluate the final weights under these
    # tokens per window side of the windowed variants (None: the variants' own 16, see itpn.models.layout);
    # a variant whose windows cover the whole img_size grid, or whose migration drops nothing there, is refused
    window_size: Optional[int] = None
    # data: an ImageNet folder (<data_url>/<split>/<wnid>/<image>)
    data_url: str = ""
    dataset: str = "imagenet"  # the name metrics are recorded under
    train_split: str = "train"
    val_split: str = "val"
    # fine-tune on the first N images of each class of train_split (sorted file order; the same subset for
    # every run): the low-label protocol where pre-training, which needs no labels, pays (ours; None: all)
    labels_per_class: Optional[int] = None
    img_size: Optional[int] = None
    crop_pct: Optional[float] = None  # evaluation centre crop (timm's default when None)
    num_workers: int = 8
    # optimisation
    batch_size: Optional[int] = None  # per process; global = batch_size * accum_steps * world size
    accum_steps: Optional[int] = None
    epochs: Optional[int] = None
    warmup_epochs: Optional[int] = None
    lr: Optional[float] = None  # absolute, not scaled by batch size (as released)
    min_lr: float = 1e-6
    warmup_lr: float = 1e-6
    weight_decay: float = 0.05
    layer_decay: Optional[float] = None
    drop_path: Optional[float] = None
    clip_grad: Optional[float] = None
    amp_dtype: str = "bf16"  # autocast dtype on CUDA ("bf16" or "fp32"); CPU runs in fp32
    # augmentation and regularisation
    mixup: float = 0.8
    cutmix: float = 1.0
    mixup_prob: float = 1.0
    mixup_switch_prob: float = 0.5
    smoothing: float = 0.1
    auto_augment: Optional[str] = "rand-m9-mstd0.5-inc1"
    color_jitter: float = 0.4
    reprob: float = 0.25
    model_ema: bool = True
    model_ema_decay: float = 0.9999
    model_ema_eval: bool = True
    # bookkeeping
    device: str = "auto"
    output_url: str = "runs/classification"
    resume: bool = True  # continue from <output_url>/checkpoint.pt when it exists
    checkpoint_every: int = 500  # updates between checkpoints inside an epoch (0: at epoch ends only)
    stop_after_epochs: Optional[int] = None  # end this job after that many epochs (schedule unchanged)
    max_steps_per_epoch: Optional[int] = None  # cap the updates per epoch (smoke runs and demos)
    log_every: int = 10
    seed: int = 0
    progress: bool = True

    RANGES = {
        # labels_per_class: None is the whole train split; checkpoint_every: 0 checkpoints at epoch ends only
        **dict.fromkeys(("labels_per_class", "img_size", "batch_size", "accum_steps", "epochs", "log_every",
                         "stop_after_epochs", "max_steps_per_epoch", "window_size"), COUNT),
        **dict.fromkeys(("num_workers", "warmup_epochs", "min_lr", "warmup_lr", "weight_decay", "mixup", "cutmix",
                         "color_jitter", "checkpoint_every", "seed"), NON_NEGATIVE),
        **dict.fromkeys(("lr", "clip_grad"), POSITIVE),
        **dict.fromkeys(("mixup_prob", "mixup_switch_prob", "smoothing", "reprob", "model_ema_decay"), FRACTION),
        "crop_pct": Range(0, 1, open_low=True),
        "layer_decay": Range(0, 1, open_low=True),
        "drop_path": Range(0, 1, open_high=True),
    }

    def __post_init__(self) -> None:
        size = model_size(self.model)
        if size not in RECIPES:
            raise ValueError(f"cannot tell the size of model {self.model!r}: its name names none of {tuple(RECIPES)}")
        for name, value in RECIPES[size].items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        if self.amp_dtype not in ("bf16", "fp32"):
            raise ConfigValueError("amp_dtype", self.amp_dtype, "'bf16' or 'fp32'")
        self.check_ranges()
        if self.warmup_epochs >= self.epochs and self.epochs > 1:
            raise ValueError(f"warmup_epochs ({self.warmup_epochs}) must be shorter than epochs ({self.epochs})")
        if (self.mixup > 0 or self.cutmix > 0) and self.batch_size % 2:
            raise ValueError(f"mixup/cutmix mix pairs of images: batch_size must be even, got {self.batch_size}")
        for variant in [self.variant, *self.eval_variants]:
            get_variant(variant)  # an unknown name fails here, before any data is read
        accelerated = [variant for variant in (self.variant, *self.eval_variants) if variant != "baseline"]
        if accelerated:  # InactiveVariantError names each variant that would not act at img_size
            check_active(accelerated, self.img_size, stage3_depth(self.model, self.model_kwargs),
                         window_size=self.window_size)
        if not self.data_url:
            raise ValueError("data_url is empty: point it at an ImageNet folder holding train/ and val/")

    @property
    def mixup_active(self) -> bool:
        return self.mixup_prob > 0 and (self.mixup > 0 or self.cutmix > 0)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
