"""``PretrainConfig``: every knob of a pre-training run, loadable from a ``params.yaml`` section."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal, Optional

from itpn.config import DataclassConfig

TeacherKind = Literal["ema", "clip", "none"]
AmpDtype = Literal["bf16", "fp16", "fp32"]

_CHOICES = {
    "teacher": ("ema", "clip", "none"),
    "mask_mode": ("random", "block"),
    "mfm_loss": (None, "mse", "smooth_l1", "cosine"),
    "amp_dtype": ("bf16", "fp16", "fp32"),
}


@dataclass
class PretrainConfig(DataclassConfig):
    """A pre-training run. Defaults are the paper's recipe (section 5.1) for Fast-iTPN-B with the
    EMA teacher; ``batch_size`` is per process, the global batch is
    ``batch_size * accum_steps * world_size`` and, unless ``lr`` is set, ``lr = blr * global / 256``."""

    # model
    model: str = "fast_itpn_base_patch16_224"
    model_kwargs: dict[str, Any] = field(default_factory=dict)  # extra timm.create_model arguments
    img_size: int = 224
    drop_path: float = 0.1
    # False: HiViT pre-trained without the feature pyramid (MAE-style, pixel MIM only): the paper's
    # "without integral pre-training" ablation (Table 8 first row, Figure 7's HiViT curve); the export
    # then holds no pyramid. Table 9's convolutional ablation is a model argument: model_kwargs {cmlp: false}.
    integral: bool = True
    # objective
    teacher: TeacherKind = "ema"
    ema_momentum: float = 0.996
    clip_model: str = "ViT-L-14"  # open_clip config name, or a path to a model-config .json
    clip_checkpoint: Optional[str] = None  # local path/URL of the open_clip weights
    mask_ratio: float = 0.75
    mask_mode: Literal["random", "block"] = "random"
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

    def __post_init__(self) -> None:
        self.betas = tuple(float(beta) for beta in self.betas)  # YAML gives a list
        if len(self.betas) != 2:
            raise ValueError(f"betas must be two numbers (beta1, beta2), got {self.betas}")
        for name, choices in _CHOICES.items():
            if getattr(self, name) not in choices:
                raise ValueError(f"{name} must be one of {choices}, got {getattr(self, name)!r}")
        for name in ("batch_size", "accum_steps", "checkpoint_every", "img_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.epochs is None and self.total_steps is None:
            raise ValueError("set epochs or total_steps")
        if not self.integral and self.teacher != "none":
            raise ValueError(f"integral=False pre-trains HiViT without the feature pyramid, so there are no pyramid "
                             f"levels for MFM (teacher={self.teacher!r}): set teacher='none' (the paper's Table 8 "
                             f"first row is pixel MIM alone)")
        if self.teacher == "clip" and not self.clip_checkpoint:
            raise ValueError("teacher='clip' needs clip_checkpoint, the local path of the open_clip weights")

    @property
    def feature_loss(self) -> str:
        if self.mfm_loss is not None:
            return self.mfm_loss
        return "smooth_l1" if self.teacher == "clip" else "mse"

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["betas"] = list(self.betas)
        return values
