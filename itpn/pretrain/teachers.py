"""MFM teachers: the moving-averaged student backbone, or a CLIP image tower loaded from disk.

Both run without gradients and produce ``TeacherTargets`` for ``IntegralPretrainModel`` (EMA, and
CLIP for ``clip_visible_distill``) or ``ClipDistillModel`` (the released iTPN-CLIP); each
normalises the raw [0, 1] images itself (ImageNet statistics for the EMA teacher, CLIP's own for
CLIP: the released iTPN-CLIP code fed CLIP [0.5, 1] images, which this avoids).
"""
from __future__ import annotations

import copy
import json
import logging
import warnings
import zipfile
from pathlib import Path
from typing import Any, Optional

import fsspec
import torch
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from torch import nn

from itpn.models import HiViT

from .masking import Mask
from .objective import MfmTargets, TeacherTargets, normalize

log = logging.getLogger(__name__)


def _local(tensor: torch.Tensor) -> torch.Tensor:
    """The shard a rank holds of an FSDP2 (DTensor) parameter, or the tensor itself."""
    return tensor.to_local() if hasattr(tensor, "to_local") else tensor


class EMATeacher(nn.Module):
    """An exponential moving average of the student backbone: ``t <- m * t + (1 - m) * s`` after every
    optimiser update (m = 0.996, paper section 3.4). Fed the masked units (``targets="masked"``) or the
    student's visible ones (``"visible"``); ``objective`` discusses both readings of paper section 3.3."""

    def __init__(self, student: HiViT, momentum: float = 0.996, targets: MfmTargets = "masked"):
        super().__init__()
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"EMA momentum must be in [0, 1), got {momentum}")
        if targets not in ("masked", "visible"):
            raise ValueError(f"EMA teacher targets must be 'masked' or 'visible', got {targets!r}")
        self.momentum = momentum
        self.targets = targets
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
        """Stage features ``[tokens (B, n, C), stage2 (B, n, 2, 2, C/2), stage1 (B, n, 4, 4, C/4)]`` of the
        ``n`` masked (or visible) units, the teacher seeing those units only."""
        units = mask.ids_masked if self.targets == "masked" else mask.ids_keep
        out = self.backbone.forward_backbone(normalize(images, IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD), units)
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


OPENAI_KEYS = ("input_resolution", "context_length", "vocab_size")  # entries of OpenAI's own CLIP state dicts


def openai_weights_evidence(checkpoint: str) -> Optional[str]:
    """Why ``checkpoint`` (a local file) looks like OpenAI's CLIP weights, or None: OpenAI released CLIP
    as TorchScript archives whose state dict carries ``input_resolution``, ``context_length`` and
    ``vocab_size`` (openai/CLIP ``clip/model.py``, ``build_model``; open_clip's ``load_state_dict`` pops
    them for the same reason). Unreadable files give None (open_clip then names the problem)."""
    path = Path(checkpoint).expanduser()
    if not path.is_file():
        return None
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
        if any(name.endswith("constants.pkl") for name in names) and any("/code/" in name for name in names):
            return "a TorchScript archive, the format OpenAI released CLIP in"
    keys: list[str] = []
    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as handle:
                keys = list(handle.keys())
        else:
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            state = state.get("state_dict", state) if isinstance(state, dict) else {}
            keys = list(state)
    except Exception:  # noqa: BLE001 - not ours to diagnose; open_clip's loader reports it
        return None
    found = [key for key in OPENAI_KEYS if key in keys]
    return f"its state dict holds OpenAI's {found} entries" if found else None


def sibling_open_clip_config(checkpoint: str) -> tuple[Optional[Path], Optional[dict[str, Any]]]:
    """The ``open_clip_config.json`` next to ``checkpoint`` (the Hugging Face hub layout), if any."""
    path = Path(checkpoint).expanduser().parent / "open_clip_config.json"
    if not path.is_file():
        return None, None
    return path, json.loads(path.read_text()).get("model_cfg")


def check_clip_activation(model: str, name: str, config: dict[str, Any], checkpoint: str) -> None:
    """Refuse a teacher whose activation disagrees with its weights where that can be told.

    OpenAI's CLIP weights were trained with QuickGELU; open_clip's plain ``ViT-L-14`` / ``ViT-B-16``
    configs build GELU, and a state dict loads strictly either way, so the targets come out wrong
    without a word (open_clip only warns for a pretrained *tag*, ``factory.create_model``). Raises
    ``ValueError`` when the checkpoint is OpenAI's (``openai_weights_evidence``) and ``config`` has no
    ``quick_gelu``, or when an ``open_clip_config.json`` beside the file says otherwise than
    ``config``; warns when the architecture has OpenAI weights and neither can be told."""
    import open_clip

    quick_gelu = bool(config.get("quick_gelu", False))
    fix = f"clip_model='{name}-quickgelu'" if open_clip.get_model_config(f"{name}-quickgelu") else \
        "a model config with \"quick_gelu\": true"
    evidence = openai_weights_evidence(checkpoint)
    if evidence and not quick_gelu:
        raise ValueError(f"CLIP teacher {checkpoint} holds OpenAI weights ({evidence}), which were trained with "
                         f"QuickGELU, but clip_model={model!r} builds GELU, so every target would be wrong: use {fix}")
    sibling, sibling_config = sibling_open_clip_config(checkpoint)
    if sibling_config is not None and bool(sibling_config.get("quick_gelu", False)) != quick_gelu:
        raise ValueError(f"CLIP teacher {checkpoint}: {sibling} says quick_gelu={sibling_config.get('quick_gelu', False)}"
                         f" but clip_model={model!r} has quick_gelu={quick_gelu}; use the configuration the weights "
                         f"were trained with (open_clip's '-quickgelu' names build QuickGELU)")
    if not quick_gelu and evidence is None and sibling_config is None:
        if open_clip.get_pretrained_cfg(name, "openai"):
            message = (f"clip_model={model!r} builds GELU; if {checkpoint} holds OpenAI's CLIP weights (trained with "
                       f"QuickGELU) use {fix}, else ignore this")
            log.warning(message)
            warnings.warn(message, UserWarning, stacklevel=3)


class ClipTeacher(nn.Module):
    """The image tower of an open_clip model; targets are ``ln_post(patch tokens) @ proj`` on the full
    image, resized so that CLIP's patch grid equals the student's unit grid. ``model`` is an open_clip
    config name (OpenAI weights: a ``-quickgelu`` name) or a model-config JSON path; the activation is
    checked against the weights by ``check_clip_activation``."""

    def __init__(self, model: str, checkpoint: str, student_grid: tuple[int, int]):
        super().__init__()
        import open_clip

        check_clip_checkpoint(checkpoint)
        name = open_clip_model_name(model)
        config = open_clip.get_model_config(name)
        if config is None:
            raise ValueError(f"unknown open_clip model {model!r}; use one of open_clip.list_models() "
                             f"(e.g. ViT-B-16, ViT-L-14) or a path to a model-config .json")
        check_clip_activation(model, name, config, checkpoint)
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
