"""The HiViT / iTPN / Fast-iTPN backbone and its pre-trained feature pyramid as one OpenMMLab backbone.

Integral pre-training trains the pyramid with the backbone, so the detector or segmenter built on
it needs no neck of its own (``neck=None``): only the task head starts from scratch.

- ``out="pyramid"`` (detection, rotated detection): the pyramid's ``fpn_dim`` maps at strides
  4, 8, 16 and, with ``pyramid_extra_levels=2``, 32 and 64 (2x2 average pools of stride 16), as
  the released detection code feeds Mask R-CNN.
- ``out="pyramid+backbone"`` (segmentation): each pyramid level concatenated with the backbone
  feature of the same stride, plus a stride-32 max pool of the stride-16 map, as the released
  segmentation code feeds UPerNet (channels ``[384, 512, 768, 768]`` for the base size).
"""
from __future__ import annotations

import logging
from typing import Any, Optional

import timm
import torch
import torch.nn.functional as F
from mmengine.model import BaseModule

from itpn.models import HiViT, LoadReport, load_checkpoint
from itpn.models.acceleration import set_acceleration
from itpn.models.layout import resolve_variant
from itpn.models.layers import units_to_map
from itpn.models.pyramid import FeaturePyramid

log = logging.getLogger(__name__)

OUTPUTS = ("pyramid", "pyramid+backbone")


class ITPNBackbone(BaseModule):
    """``timm.create_model(model_name, pyramid=True, ...)`` returning a tuple of NCHW maps, finest first.

    ``checkpoint`` (a pre-training export or released checkpoint) is loaded by ``init_weights``,
    strictly: every backbone and pyramid weight must be in it. ``load_pyramid=False`` loads the backbone
    alone and starts the pyramid from scratch (the paper's Table 8 "loaded ✗" column, and the only way
    to use an export pre-trained without the pyramid). ``acceleration`` names a variant of
    ``itpn.models.acceleration`` (``baseline``, ``migration_30``, ``window_gathering_hrpe`` ...);
    ``window_size`` the tokens per window side of a windowed variant (None: the variant's own,
    ``itpn.models.layout.resolve_variant``).
    """

    def __init__(
        self,
        model_name: str = "fast_itpn_base_patch16_224",
        img_size: int = 224,
        out: str = "pyramid",
        pyramid_extra_levels: int = 2,
        fpn_dim: int = 256,
        fpn_depth: int = 1,
        drop_path_rate: float = 0.1,
        acceleration: str = "baseline",
        window_size: Optional[int] = None,
        checkpoint: Optional[str] = None,
        load_pyramid: bool = True,
        grad_checkpointing: bool = False,
        model_kwargs: Optional[dict[str, Any]] = None,
        init_cfg: Optional[dict[str, Any]] = None,
    ):
        super().__init__(init_cfg)
        if out not in OUTPUTS:
            raise ValueError(f"ITPNBackbone out={out!r}: use 'pyramid' (detection) or 'pyramid+backbone' "
                             f"(segmentation)")
        if out == "pyramid+backbone" and pyramid_extra_levels:
            raise ValueError("ITPNBackbone out='pyramid+backbone' makes its own stride-32 level: set "
                             "pyramid_extra_levels=0")
        config = resolve_variant(acceleration, window_size)  # an unknown name fails here, naming the valid ones
        self.model: HiViT = timm.create_model(
            model_name, pyramid=True, num_classes=0, img_size=img_size, fpn_dim=fpn_dim, fpn_depth=fpn_depth,
            pyramid_extra_levels=pyramid_extra_levels, drop_path_rate=drop_path_rate, **(model_kwargs or {}))
        set_acceleration(self.model, config)
        self.model.set_grad_checkpointing(grad_checkpointing)
        self.model_name = model_name
        self.acceleration = acceleration
        self.out = out
        self.checkpoint = checkpoint
        self.load_pyramid = load_pyramid
        self.load_report: Optional[LoadReport] = None

    @property
    def out_channels(self) -> list[int]:
        fpn = self.model.pyramid.fpn_dim
        if self.out == "pyramid":
            return [fpn] * (3 + self.model.pyramid_extra_levels)
        dim = self.model.embed_dim
        return [fpn + dim // 4, fpn + dim // 2, fpn + dim, fpn + dim]

    def init_weights(self) -> None:
        super().init_weights()
        if self.checkpoint:
            self.load_report = load_checkpoint(self.model, self.checkpoint,
                                               skip=() if self.load_pyramid else ("pyramid.",))
            log.info("ITPNBackbone initialised from %s", self.load_report.summary())

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if self.out == "pyramid":
            maps = self.model.forward_features(images)
            return tuple(maps[name] for name in sorted(maps, key=lambda key: int(key[1:])))
        out = self.model.forward_backbone(images)
        levels = self.model.pyramid(out.stage1, out.stage2, out.tokens, out.layout)
        pyramid = FeaturePyramid.to_maps(levels, out.grid)
        backbone = {"s4": units_to_map(out.stage1, out.grid), "s8": units_to_map(out.stage2, out.grid),
                    "s16": units_to_map(out.tokens[:, :, None, None, :], out.grid)}
        maps = [torch.cat([pyramid[name], backbone[name]], dim=1) for name in ("s4", "s8", "s16")]
        maps.append(F.max_pool2d(maps[-1], kernel_size=2, stride=2))
        return tuple(maps)
