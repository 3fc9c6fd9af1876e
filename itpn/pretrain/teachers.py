"""MFM teachers: the moving-averaged student backbone, or a CLIP image tower loaded from disk.

Both run without gradients and produce ``TeacherTargets`` for ``IntegralPretrainModel``; each
normalises the raw [0, 1] images itself (ImageNet statistics for the EMA teacher, CLIP's own for
CLIP: the released iTPN-CLIP code fed CLIP [0.5, 1] images, which this avoids).
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Optional

import fsspec
import torch
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from torch import nn

from itpn.models import HiViT

from .masking import Mask
from .objective import TeacherTargets, normalize


def _local(tensor: torch.Tensor) -> torch.Tensor:
    """The shard a rank holds of an FSDP2 (DTensor) parameter, or the tensor itself."""
    return tensor.to_local() if hasattr(tensor, "to_local") else tensor


class EMATeacher(nn.Module):
    """An exponential moving average of the student backbone: ``t <- m * t + (1 - m) * s`` after every
    optimiser update (m = 0.996 in the paper). Fed the student's visible units (see ``objective``)."""

    def __init__(self, student: HiViT, momentum: float = 0.996):
        super().__init__()
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"EMA momentum must be in [0, 1), got {momentum}")
        self.momentum = momentum
        self.backbone = copy.deepcopy(student)
        self.backbone.pyramid = None  # targets are backbone stage features; the pyramid is not needed
        self.backbone.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "EMATeacher":
        """Always in eval mode: no drop path in the targets."""
        return super().train(False)

    def tracked_pairs(self, student: HiViT) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Teacher and student tensors in the same order (parameters and floating buffers)."""
        student_params = dict(student.named_parameters())
        student_buffers = dict(student.named_buffers())
        teacher, source = [], []
        for name, tensor in self.backbone.named_parameters():
            teacher.append(_local(tensor.data))
            source.append(_local(student_params[name].detach()))
        for name, tensor in self.backbone.named_buffers():
            if tensor.is_floating_point() and name in student_buffers:
                teacher.append(_local(tensor))
                source.append(_local(student_buffers[name]))
        return teacher, source

    @torch.no_grad()
    def update(self, student: HiViT) -> None:
        if hasattr(self, "reshard"):  # FSDP2 keeps a root module's parameters gathered after forward
            self.reshard()
        teacher, source = self.tracked_pairs(student)
        torch._foreach_lerp_(teacher, source, 1.0 - self.momentum)

    @torch.no_grad()
    def forward(self, images: torch.Tensor, mask: Mask) -> TeacherTargets:
        out = self.backbone.forward_backbone(normalize(images, IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD),
                                             mask.ids_keep)
        return TeacherTargets(stages=[out.tokens, out.stage2, out.stage1])


def open_clip_model_name(model: str) -> str:
    """``model`` is an open_clip config name (``ViT-B-16``, ``ViT-L-14``) or a path to a model-config
    JSON (registered under its file stem); returns the name to build."""
    if model.endswith(".json"):
        import open_clip

        path = Path(model).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"CLIP model config not found: {model}")
        open_clip.add_model_config(path)
        return path.stem
    return model


def check_clip_checkpoint(checkpoint: Optional[str]) -> str:
    """Fail early, naming the path, when the CLIP teacher's weights are not there."""
    if not checkpoint:
        raise ValueError("teacher='clip' needs clip_checkpoint: the local path of an open_clip state dict "
                         "(.bin/.pt/.safetensors); nothing is downloaded")
    filesystem, path = fsspec.core.url_to_fs(checkpoint)
    if not filesystem.exists(path):
        raise FileNotFoundError(f"CLIP teacher checkpoint not found: {checkpoint} (put the open_clip weights "
                                f"there; nothing is downloaded)")
    return checkpoint


class ClipTeacher(nn.Module):
    """The image tower of an open_clip model; targets are ``ln_post(patch tokens) @ proj`` on the full
    image, resized so that CLIP's patch grid equals the student's unit grid."""

    def __init__(self, model: str, checkpoint: str, student_grid: tuple[int, int]):
        super().__init__()
        import open_clip

        check_clip_checkpoint(checkpoint)
        name = open_clip_model_name(model)
        config = open_clip.get_model_config(name)
        if config is None:
            raise ValueError(f"unknown open_clip model {model!r}; use one of open_clip.list_models() "
                             f"(e.g. ViT-B-16, ViT-L-14) or a path to a model-config .json")
        patch = config["vision_cfg"]["patch_size"]
        self.input_size = (student_grid[0] * patch, student_grid[1] * patch)
        clip = open_clip.create_model(name, pretrained=checkpoint, force_image_size=self.input_size)
        self.visual = clip.visual
        self.visual.output_tokens = True
        preprocess = getattr(self.visual, "preprocess_cfg", None) or {}
        self.mean = tuple(preprocess.get("mean") or open_clip.OPENAI_DATASET_MEAN)
        self.std = tuple(preprocess.get("std") or open_clip.OPENAI_DATASET_STD)
        proj = self.visual.proj
        self.dim = int(proj.shape[1]) if proj is not None else int(self.visual.ln_post.normalized_shape[0])
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "ClipTeacher":
        return super().train(False)

    @torch.no_grad()
    def forward(self, images: torch.Tensor, mask: Optional[Mask] = None) -> TeacherTargets:
        x = images
        if tuple(x.shape[-2:]) != self.input_size:
            x = F.interpolate(x, size=self.input_size, mode="bicubic", align_corners=False, antialias=True)
        x = normalize(x.clamp(0.0, 1.0), self.mean, self.std)
        _, tokens = self.visual(x)
        if self.visual.proj is not None:
            tokens = tokens @ self.visual.proj
        return TeacherTargets(clip=tokens)
