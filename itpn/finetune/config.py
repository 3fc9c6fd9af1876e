"""``ClassificationConfig``: an ImageNet fine-tune, with the paper's recipe for each model size as defaults."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Optional

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, IMAGENET_INCEPTION_MEAN, IMAGENET_INCEPTION_STD

from itpn.config import COUNT, FRACTION, NON_NEGATIVE, POSITIVE, ConfigValueError, DataclassConfig, Range
from itpn.models.acceleration import get_variant
from itpn.models.layout import check_active, stage3_depth
from itpn.records import model_family, model_size

from .optim import LAYER_DECAY_RULES

# Each recipe: settings per model size (a row of SIZE_FIELDS), and settings shared by its sizes. batch_size is per
# GPU and accum_steps the update frequency of the released command; lr is absolute (a released blr is multiplied
# out for the batch given).
SIZE_FIELDS = ("lr", "epochs", "warmup_epochs", "layer_decay", "drop_path", "batch_size", "accum_steps", "img_size")
RECIPES: dict[str, dict[str, Any]] = {
    # Fast-iTPN ImageNet-1K fine-tuning: fast_itpn/README.md (its commands pass --imagenet_default_mean_and_std)
    # and run_class_finetuning.py (--use_mean_pooling by default: the tokens are averaged, then normalised by
    # fc_norm); official-code-facts 5.2. T/S ran 16 GPUs, B and L 32 GPUs. Paper 5.2 agrees.
    "fast_itpn": dict(
        sizes={"tiny": (1e-4, 100, 5, 0.80, 0.1, 64, 1, 224), "small": (1e-4, 100, 5, 0.90, 0.1, 64, 1, 224),
               "base": (1e-4, 20, 3, 0.90, 0.1, 32, 1, 224), "large": (5e-5, 20, 3, 0.95, 0.2, 4, 4, 640)},
        layer_decay_rule="fast_itpn", mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD,
        model_kwargs={"final_norm": "post_pool"}),
    # iTPN as paper section 5.2 gives it: 100 / 50 epochs (B / L), lr 5e-4 / 1e-3, weight decay 0.05, batch 1024
    # (32 per GPU on 32 GPUs), 5 warm-up epochs, layer decay 0.65 / 0.70. Where 5.2 is silent the released pixel
    # fine-tuning fills in (ours to choose): drop path 0.15 / 0.2 (itpn_pixel/FINETUNE.md), ImageNet mean/std
    # (itpn_pixel/util/datasets.py), and the released iTPN layer numbering (itpn.finetune.optim, rule "itpn").
    "itpn": dict(
        sizes={"base": (5e-4, 100, 5, 0.65, 0.15, 32, 1, 224), "large": (1e-3, 50, 5, 0.70, 0.2, 32, 1, 224)},
        layer_decay_rule="itpn", mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD, model_kwargs={}),
    # The released fine-tuning of iTPN pre-trained with CLIP: itpn_clip/README.md ("Fine-tune iTPN-B / iTPN-L/16":
    # 64 GPUs x 32 / 16, lr 5e-4 / 2e-4, 100 / 50 epochs, 20 / 5 warm-up, layer decay 0.60 / 0.55, drop path
    # 0.1 / 0.25) and run_itpn_finetuning.py: LayerScale 0.1 on every block, the stem's included
    # (--layer_scale_init_value 0.1, the "Correction" line), Inception mean/std 0.5 (datasets.py).
    "itpn_clip": dict(
        sizes={"base": (5e-4, 100, 20, 0.60, 0.1, 32, 1, 224), "large": (2e-4, 50, 5, 0.55, 0.25, 16, 1, 224)},
        layer_decay_rule="itpn", mean=IMAGENET_INCEPTION_MEAN, std=IMAGENET_INCEPTION_STD,
        model_kwargs={"init_values": 0.1, "stem_init_values": 0.1}),
    # The released fine-tuning of iTPN pre-trained on pixels: itpn_pixel/FINETUNE.md (32 GPUs x 32, blr 4e-4 / 1e-3,
    # so lr = blr x 1024 / 256 = 1.6e-3 / 4e-3; 100 / 50 epochs, 5 warm-up, layer decay 0.60 / 0.55, drop path
    # 0.15 / 0.2) with main_finetune.py's ImageNet mean/std.
    "itpn_pixel": dict(
        sizes={"base": (1.6e-3, 100, 5, 0.60, 0.15, 32, 1, 224), "large": (4e-3, 50, 5, 0.55, 0.2, 32, 1, 224)},
        layer_decay_rule="itpn", mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD, model_kwargs={}),
}
# The recipe a model family fine-tunes with unless ``recipe`` names another: Fast-iTPN's own, and paper 5.2's for
# iTPN and its backbone HiViT.
FAMILY_RECIPES = {"fast_itpn": "fast_itpn", "itpn": "itpn", "hivit": "itpn"}


def default_recipe(model: str) -> str:
    """The recipe of ``model``'s family (``FAMILY_RECIPES``); ``ValueError`` naming the families otherwise."""
    family = model_family(model)
    if family not in FAMILY_RECIPES:
        raise ValueError(f"no fine-tuning recipe for model {model!r}: its family {family!r} is none of "
                         f"{tuple(FAMILY_RECIPES)}; set recipe to one of {tuple(RECIPES)}")
    return FAMILY_RECIPES[family]


@dataclass
class ClassificationConfig(DataclassConfig):
    """An ImageNet-style fine-tune. Fields left ``None`` take the value ``recipe`` gives the model's size
    (``RECIPES``; by default the recipe of the model's family, ``FAMILY_RECIPES``); ``model_kwargs`` go over
    the recipe's. The rest are shared by all recipes: AdamW (weight decay 0.05), warm-up then cosine to
    ``min_lr``, mixup 0.8 / cutmix 1.0, RandAugment ``rand-m9-mstd0.5-inc1``, random erasing 0.25, label
    smoothing 0.1, model EMA 0.9999 used for evaluation."""

    recipe: Optional[str] = None  # a key of RECIPES; None: the model family's (FAMILY_RECIPES)
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
    layer_decay_rule: Optional[str] = None  # how layers are numbered: "fast_itpn" or "itpn" (itpn.finetune.optim)
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
    mean: Optional[tuple[float, float, float]] = None  # input normalisation (the recipe's when None)
    std: Optional[tuple[float, float, float]] = None
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
        if not size:
            raise ValueError(f"cannot tell the size of model {self.model!r}: its name names none of "
                             f"{sorted({size for recipe in RECIPES.values() for size in recipe['sizes']})}")
        if self.recipe is None:
            self.recipe = default_recipe(self.model)
        if self.recipe not in RECIPES:
            raise ConfigValueError("recipe", self.recipe, f"one of {', '.join(RECIPES)}")
        recipe = RECIPES[self.recipe]
        if size not in recipe["sizes"]:
            raise ValueError(f"recipe {self.recipe!r} has no settings for {size} models ({self.model}); it covers "
                             f"{', '.join(recipe['sizes'])}: choose another recipe or model")
        shared = {key: value for key, value in recipe.items() if key not in ("sizes", "model_kwargs")}
        for name, value in {**dict(zip(SIZE_FIELDS, recipe["sizes"][size])), **shared}.items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        self.model_kwargs = {**recipe["model_kwargs"], **self.model_kwargs}
        self.mean, self.std = tuple(float(v) for v in self.mean), tuple(float(v) for v in self.std)
        if len(self.mean) != len(self.std) or min(self.std) <= 0:
            raise ConfigValueError("std", list(self.std), f"one positive value per channel of mean {list(self.mean)}")
        if self.layer_decay_rule not in LAYER_DECAY_RULES:
            raise ConfigValueError("layer_decay_rule", self.layer_decay_rule, f"one of {LAYER_DECAY_RULES}")
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
        values = dataclasses.asdict(self)
        values["mean"], values["std"] = list(self.mean), list(self.std)
        return values
