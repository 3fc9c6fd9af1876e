"""``PretrainConfig``: every knob of a pre-training run, loadable from a ``params.yaml`` section, and
the named recipes of the paper and the released code (``recipe: NAME`` / ``--recipe NAME``)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping, Optional

from itpn.config import COUNT, FRACTION, NON_NEGATIVE, POSITIVE, ConfigValueError, DataclassConfig, Range

# The file a run exports under its output_url: backbone + pyramid, what the fine-tunes load. The pipeline's
# flows and dvc.yaml (its ``vars``) read the name from here.
EXPORT_NAME = "backbone.safetensors"
TeacherKind = Literal["ema", "clip", "clip_visible_distill", "none"]
AmpDtype = Literal["bf16", "fp16", "fp32"]

_CHOICES = {
    "teacher": ("ema", "clip", "clip_visible_distill", "none"),
    "mask_mode": ("random", "block", "beit"),
    "teacher_interpolation": (None, "bicubic", "bilinear", "lanczos"),
    "mfm_loss": (None, "mse", "smooth_l1", "cosine"),
    "mfm_targets": ("masked", "visible"),
    "pos_embed_init": ("trunc_normal", "sincos"),
    "clip_targets": ("all", "masked"),
    "clip_mask_at": (None, "stage3", "embedding"),
    "amp_dtype": ("bf16", "fp16", "fp32"),
}

# --- named recipes ------------------------------------------------------------------------------
# Each value is a partial config; keys given next to ``recipe`` (params.yaml, --set) override it.
# ``batch_size`` is per process: the global batches below assume the released 64 GPUs.
RECIPES: dict[str, dict[str, Any]] = {
    # iTPN-B, pixel MIM + multi-stage MFM with the EMA teacher, 1600 epochs. Optimisation and masking:
    # sunsmarterjie/iTPN itpn_pixel/PRETRAIN.md (64 GPUs x 64, blr 1.5e-4, mask 0.75, 40 warm-up
    # epochs, 1600 epochs) and main_pretrain.py (AdamW betas (0.9, 0.95), weight decay 0.05, min_lr 0,
    # no gradient clipping); model itpn_pixel/models/models_itpn_mim.py (fpn_depth 2, rpe off, decoder
    # 512-d x 8 blocks x 16 heads, no drop path, encoder positions started from sin-cos). EMA momentum
    # 0.996 and lambda 0.3: paper section 3.4 and equation 4; 1600 epochs: paper section 5.1 (400 and
    # 1600 for the EMA teacher). MFM as sections 3.3-3.4 write it (mfm_targets "visible"): the teacher sees
    # only the student's masked input x * M, and h^s is a per-token linear map of V^s; the released code
    # has no MFM (issue #7).
    "itpn_pixel": dict(
        model="itpn_base_patch16_224", model_kwargs={"fpn_depth": 2, "rpe": False}, img_size=224, drop_path=0.0,
        pos_embed_init="sincos", mfm_targets="visible",
        teacher="ema", ema_momentum=0.996, mfm_weight=0.3, mask_ratio=0.75, mask_mode="random",
        decoder_dim=512, decoder_depth=8, decoder_heads=16, norm_pix_loss=True, min_crop_scale=0.2,
        batch_size=64, epochs=1600, warmup_epochs=40, blr=1.5e-4, lr=None, min_lr=0.0, weight_decay=0.05,
        betas=(0.9, 0.95), eps=1e-8, clip_grad=None),
    # iTPN-B distilled from CLIP-B/16, the released iTPN-CLIP recipe: itpn_clip/README.md (64 GPUs x 32,
    # --lr 1.5e-3, --opt_betas 0.98 read as BEiT-v2's (0.9, 0.98), --epochs 300, --drop_path 0.1,
    # --opt_eps 1e-8, --second_input_size 224, --layer_scale_init_value 0.1, which run_itpn_pretraining.py
    # hands to every block, the stem's included) and run_itpn_pretraining.py defaults (75 of 196 units masked
    # by masking_generator.py, 5 warm-up epochs, min_lr 1e-5, weight decay 0.05, no gradient clipping);
    # augmentation of datasets.py (DataAugmentationForiTPN: colour jitter 0.4, crop scale 0.08-1, the
    # teacher's image from the same crop at second_input_size, lanczos); model clip_tpn_base_3324_patch16_224
    # in modeling_pretrain.py (fpn_depth 1, rpe on); smooth-L1 on all tokens: engine_for_pretraining.py.
    # OpenAI weights need QuickGELU. (official-keys/itpn_clip_base_pretrain.txt lists no gamma because it
    # was listed from the constructor's defaults; a checkpoint with or without them loads.)
    "itpn_clip_b16": dict(
        model="itpn_base_patch16_224",
        model_kwargs={"fpn_depth": 1, "rpe": True, "init_values": 0.1, "stem_init_values": 0.1}, img_size=224,
        drop_path=0.1, teacher="clip", clip_model="ViT-B-16-quickgelu", mfm_loss="smooth_l1", clip_targets="all",
        clip_aux_weight=1.0, mask_ratio=75 / 196, mask_mode="beit", min_crop_scale=0.08, color_jitter=0.4,
        teacher_interpolation="lanczos",
        batch_size=32, epochs=300, warmup_epochs=5, lr=1.5e-3, min_lr=1e-5, weight_decay=0.05, betas=(0.9, 0.98),
        eps=1e-8, clip_grad=None),
    # Fast-iTPN-B as the paper pre-trains every Fast-iTPN: section 5.1, "we pre-train all the Fast-iTPN
    # series for 1600 epochs using CLIP-L as supervision and cosine similarity as loss function", and
    # otherwise "the most configurations above": 75% random masking, blr 1.5e-4 with a 4096 batch,
    # weight decay 0.05, cosine schedule, 40 warm-up epochs. The released iTPN-CLIP method
    # (itpn_clip/modeling_pretrain.py) is the objective, as Fast-iTPN "inherits the pre-training
    # strategies of iTPN" (section 4.3); no RPE in pre-training (Table 2, section 4.3). Where the
    # paper is silent the released CLIP recipe fills in (ours): betas (0.9, 0.98), min_lr 1e-5,
    # drop path 0.1, no gradient clipping. Fast-iTPN's LayerScale 0.1 is the model's default. Masked units
    # become the mask token at the patch embedding (fast_itpn/modeling_finetune.py, ConvPatchEmbed's masked
    # forward; the pre-training checkpoints hold that mask_token, issues #12 and #17).
    "fast_itpn_clip_l": dict(
        model="fast_itpn_base_patch16_224", model_kwargs={}, img_size=224, drop_path=0.1, teacher="clip",
        clip_model="ViT-L-14-quickgelu", mfm_loss="cosine", clip_targets="all", clip_aux_weight=1.0,
        clip_mask_at="embedding",
        mask_ratio=0.75, mask_mode="random", min_crop_scale=0.2,
        batch_size=64, epochs=1600, warmup_epochs=40, blr=1.5e-4, lr=None, min_lr=1e-5, weight_decay=0.05,
        betas=(0.9, 0.98), eps=1e-8, clip_grad=None),
}
# As itpn_clip_b16 with the CLIP-L/14 teacher (itpn_clip/README.md "iTPN-B using CLIP-L":
# --second_input_size 196, --teacher_dim 768; the width comes from the teacher here).
RECIPES["itpn_clip_l14"] = {**RECIPES["itpn_clip_b16"], "clip_model": "ViT-L-14-quickgelu"}


@dataclass
class PretrainConfig(DataclassConfig):
    """A pre-training run. The plain defaults are the pixel iTPN optimisation for Fast-iTPN-B with the
    EMA teacher and some choices of ours (MFM at the masked units, truncated-normal positions, drop path
    0.1, clipping 3.0); ``recipe`` names a set of settings from the paper or the released code
    (``RECIPES``, applied by ``from_dict`` / ``from_yaml`` / ``from_recipe``, keys given beside it win).
    ``batch_size`` is per process, the global batch is ``batch_size * accum_steps * world_size``
    and, unless ``lr`` is set, ``lr = blr * global / 256``.

    ``teacher`` picks the objective:

    * ``ema``: pixel MIM through the pyramid + multi-stage MFM against the moving-averaged backbone
      (paper sections 3.3-3.4); ``mfm_targets`` says where (the student's own ``visible`` units as
      the paper writes it, or the ``masked`` units, ours and the plain default; measured side by side
      in ``benchmarks/mfm_target.py``).
    * ``clip``: the released iTPN-CLIP method (``itpn_clip/modeling_pretrain.py``): no pixel decoder,
      the masked units replaced by a mask token at stage 3, CLIP features of ``clip_targets``
      regressed by the pyramid head and an auxiliary head (weight ``clip_aux_weight``).
    * ``clip_visible_distill``: ours, not the paper's: pixel MIM + ``mfm_weight`` x CLIP distillation at
      the visible units only.
    * ``none``: pixel MIM alone.
    """

    recipe: Optional[str] = None  # a key of RECIPES (applied by from_dict / from_yaml / from_recipe)
    # model
    model: str = "fast_itpn_base_patch16_224"
    model_kwargs: dict[str, Any] = field(default_factory=dict)  # extra timm.create_model arguments
    img_size: int = 224
    drop_path: float = 0.1
    # False: HiViT pre-trained without the feature pyramid (MAE-style, pixel MIM only): the paper's
    # "without integral pre-training" ablation (Table 8 first row, Figure 7's HiViT curve); the export
    # then holds no pyramid. Table 9's convolutional ablation is a model argument: model_kwargs {cmlp: false}.
    integral: bool = True
    # encoder position embedding at the start: timm's truncated normal (ours) or the released pixel MIM's sin-cos
    pos_embed_init: Literal["trunc_normal", "sincos"] = "trunc_normal"
    # objective
    teacher: TeacherKind = "ema"
    ema_momentum: float = 0.996
    # EMA teacher: where the MFM targets are taken. visible: the paper's (sections 3.3-3.4; the itpn_pixel
    # recipe's); masked (ours, the plain default): the hidden units, chosen because visible undid the MIM gain
    # on the generated data (60.5 -> 50.4 % low-label top-1, benchmarks/mfm_target.py; objective.py).
    mfm_targets: Literal["masked", "visible"] = "masked"
    # open_clip config name or path to a model-config .json. OpenAI's CLIP weights were trained with
    # QuickGELU: open_clip's "-quickgelu" configs build it (the plain names build GELU).
    clip_model: str = "ViT-L-14-quickgelu"
    clip_checkpoint: Optional[str] = None  # local path/URL of the open_clip weights
    clip_targets: Literal["all", "masked"] = "all"  # clip mode: tokens supervised (released default: all)
    clip_aux_weight: float = 1.0  # clip mode: weight of the auxiliary head at 3/4 depth (released 1.0)
    # clip mode: where masked units become the mask token, "stage3" (released iTPN-CLIP) or "embedding" (released
    # Fast-iTPN's masked patch embedding); None: embedding for Fast-iTPN's convolutional stem, else stage3
    clip_mask_at: Optional[Literal["stage3", "embedding"]] = None
    mask_ratio: float = 0.75
    mask_mode: Literal["random", "block", "beit"] = "random"  # beit: the released block masks (clip only)
    mfm_weight: float = 0.3  # lambda of equation 4
    mfm_loss: Optional[str] = None  # None: mse for the EMA teacher, smooth_l1 for CLIP
    decoder_dim: int = 512
    decoder_depth: int = 8
    decoder_heads: int = 16
    norm_pix_loss: bool = True
    # data
    data_url: Optional[str] = None  # ImageNet-style folder: <data_url>/<data_split>/<class>/<image>
    data_split: str = "train"
    min_crop_scale: float = 0.2
    color_jitter: float = 0.0  # brightness/contrast/saturation jitter before the crop (released CLIP: 0.4)
    # The CLIP teacher's image: None resizes the student's crop (ours); an interpolation cuts the teacher's own
    # view of the same crop at its input size with it (released: lanczos, itpn_clip/datasets.py).
    teacher_interpolation: Optional[str] = None
    num_workers: int = 8
    # optimisation
    batch_size: int = 64
    accum_steps: int = 1
    epochs: Optional[int] = 1600
    total_steps: Optional[int] = None  # overrides epochs when set
    warmup_epochs: float = 40.0
    warmup_steps: Optional[int] = None  # overrides warmup_epochs when set
    blr: float = 1.5e-4
    lr: Optional[float] = None
    min_lr: float = 0.0
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    clip_grad: Optional[float] = 3.0
    amp_dtype: AmpDtype = "bf16"
    device: str = "auto"  # auto: cuda:LOCAL_RANK when CUDA is available, else cpu
    fsdp: bool = False
    compile: bool = False
    # bookkeeping
    output_url: str = "runs/pretrain"
    checkpoint_every: int = 1000
    resume: bool = True  # continue from <output_url>/checkpoint.pt when it exists
    stop_after_steps: Optional[int] = None  # end this job after that many updates (schedule unchanged)
    seed: int = 0
    progress: bool = True

    RANGES = {
        **dict.fromkeys(("img_size", "decoder_dim", "decoder_depth", "decoder_heads", "batch_size", "accum_steps",
                         "epochs", "total_steps", "checkpoint_every", "stop_after_steps"), COUNT),
        **dict.fromkeys(("num_workers", "warmup_epochs", "warmup_steps", "min_lr", "weight_decay", "mfm_weight",
                         "clip_aux_weight", "seed"), NON_NEGATIVE),
        **dict.fromkeys(("blr", "lr", "eps", "clip_grad"), POSITIVE),
        **dict.fromkeys(("ema_momentum", "min_crop_scale", "color_jitter"), FRACTION),
        "drop_path": Range(0, 1, open_high=True),
        "mask_ratio": Range(0, 1, open_low=True, open_high=True),
    }

    def __post_init__(self) -> None:
        if len(self.betas) != 2 or not all(FRACTION.admits(beta) for beta in self.betas):
            raise ConfigValueError("betas", self.betas, "two numbers in [0, 1] (beta1, beta2)")
        self.betas = tuple(float(beta) for beta in self.betas)  # YAML gives a list
        if self.recipe is not None and self.recipe not in RECIPES:
            raise ConfigValueError("recipe", self.recipe, f"one of {', '.join(RECIPES)}")
        for name, choices in _CHOICES.items():
            if getattr(self, name) not in choices:
                raise ConfigValueError(name, getattr(self, name), f"one of {choices}")
        self.check_ranges()
        if self.epochs is None and self.total_steps is None:
            raise ValueError("set epochs or total_steps")
        if not self.integral and self.teacher != "none":
            raise ValueError(f"integral=False pre-trains HiViT without the feature pyramid, so there are no pyramid "
                             f"levels for MFM (teacher={self.teacher!r}): set teacher='none' (the paper's Table 8 "
                             f"first row is pixel MIM alone)")
        if self.mask_mode == "beit" and self.teacher != "clip":
            raise ValueError(f"mask_mode='beit' masks a different number of units per image, which only the CLIP "
                             f"objective takes (it replaces masked tokens); teacher={self.teacher!r} drops them: use "
                             f"mask_mode='block' (BEiT blocks to an exact count) or 'random'")
        if self.teacher_interpolation is not None and not self.uses_clip:
            raise ValueError(f"teacher_interpolation cuts the CLIP teacher's view; teacher={self.teacher!r} has no "
                             f"CLIP teacher: leave it unset")
        if self.uses_clip and not self.clip_checkpoint:
            raise ValueError(f"teacher={self.teacher!r} needs clip_checkpoint, the local path of the open_clip weights")

    @property
    def uses_clip(self) -> bool:
        return self.teacher in ("clip", "clip_visible_distill")

    @property
    def feature_loss(self) -> str:
        if self.mfm_loss is not None:
            return self.mfm_loss
        return "smooth_l1" if self.uses_clip else "mse"

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], source: Optional[str] = None) -> "PretrainConfig":
        """Settings from a mapping; with ``recipe: NAME`` the recipe's settings come first and the
        other keys override them (``model_kwargs`` key by key). An unknown recipe or key is an error naming
        it and ``source``."""
        name = values.get("recipe")
        if name is not None:
            if name not in RECIPES:
                raise ValueError(f"unknown recipe {name!r} in {source or cls.__name__}; the recipes are: "
                                 f"{', '.join(RECIPES)}")
            recipe = RECIPES[name]
            values = {**recipe, **values,
                      "model_kwargs": {**recipe.get("model_kwargs", {}), **values.get("model_kwargs", {})}}
        return super().from_dict(values, source)

    @classmethod
    def from_recipe(cls, name: str, **overrides: Any) -> "PretrainConfig":
        """``RECIPES[name]`` with ``overrides`` on top, e.g. ``from_recipe("itpn_pixel", data_url=...)``."""
        return cls.from_dict({"recipe": name, **overrides}, source=f"recipe {name!r}")

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["betas"] = list(self.betas)
        return values
