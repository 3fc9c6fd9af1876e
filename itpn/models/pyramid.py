"""The iTPN feature pyramid, shared by pre-training and fine-tuning.

Top-down from stride 16: PatchSplit up-samples inside each unit (1x1 -> 2x2 -> 4x4 sub-tokens),
lateral projections add the stage-2 and stage-1 features, C-MLP blocks (channel MLPs, no
attention) refine each level. All of it works per 16x16 unit, so it runs on the visible units
of a masked image as well as on the full grid. ``conv=True`` puts a 3x3 depthwise convolution in
every block instead (Table 9's ablation, ``layers.ConvMixMlp``): it then needs the units' layout.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .layers import MlpBlock, UnitLayout, units_to_map


class PatchSplit(nn.Module):
    """LN, bias-free Linear to ``4 * out_dim``, then each sub-token becomes 2x2 sub-tokens."""

    def __init__(self, dim: int, out_dim: int, norm_layer: type[nn.Module]):
        super().__init__()
        self.out_dim = out_dim
        self.norm = norm_layer(dim)
        self.reduction = nn.Linear(dim, out_dim * 4, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, units, size, _, _ = x.shape
        x = self.reduction(self.norm(x)).reshape(batch, units, size, size, 2, 2, self.out_dim)
        return x.permute(0, 1, 2, 4, 3, 5, 6).reshape(batch, units, 2 * size, 2 * size, self.out_dim)


class FeaturePyramid(nn.Module):
    """Pyramid over the three HiViT stages; outputs ``fpn_dim`` channels at strides 16, 8, 4.

    Attribute names follow the released checkpoints, so their pyramid weights load by name.
    ``conv=True``: convolutional blocks instead of C-MLP (Table 9, rows marked *).
    """

    def __init__(self, dims: tuple[int, int, int], fpn_dim: int = 256, depth: int = 1, mlp_ratio: float = 4.0,
                 norm_layer: type[nn.Module] = nn.LayerNorm, conv: bool = False):
        super().__init__()
        dim4, dim8, dim16 = dims
        self.fpn_dim = fpn_dim

        def blocks(count: int) -> nn.ModuleList:
            return nn.ModuleList([MlpBlock(fpn_dim, mlp_ratio, norm_layer, conv=conv) for _ in range(count)])

        self.align_dim_16tofpn = nn.Linear(dim16, fpn_dim) if dim16 != fpn_dim else nn.Identity()
        self.split_16to8 = PatchSplit(dim16, fpn_dim, norm_layer)
        self.align_dim_16to8 = nn.Linear(dim8, fpn_dim, bias=False)
        self.block_16to8 = blocks(depth)
        self.split_8to4 = PatchSplit(fpn_dim, fpn_dim, norm_layer)
        self.align_dim_8to4 = nn.Linear(dim4, fpn_dim, bias=False)
        self.block_8to4 = blocks(depth)
        self.fpn_modules = blocks(3)

    def forward(self, stage1: torch.Tensor, stage2: torch.Tensor, stage3: torch.Tensor,
                layout: Optional[UnitLayout] = None) -> list[torch.Tensor]:
        """Units ``(B, L, 4, 4, C/4)``, ``(B, L, 2, 2, C/2)``, ``(B, L, C)`` -> units at strides 16, 8, 4.
        ``layout`` (``BackboneOutput.layout``) places the units; only convolutional blocks need it."""
        x16 = stage3[:, :, None, None, :]
        x8 = self.split_16to8(x16) + self.align_dim_16to8(stage2)
        for block in self.block_16to8:
            x8 = block(x8, layout)
        x4 = self.split_8to4(x8) + self.align_dim_8to4(stage1)
        for block in self.block_8to4:
            x4 = block(x4, layout)
        levels = [self.align_dim_16tofpn(x16), x8, x4]
        return [module(level, layout) for module, level in zip(self.fpn_modules, levels)]

    @staticmethod
    def to_maps(levels: list[torch.Tensor], grid: tuple[int, int], extra_levels: int = 0) -> dict[str, torch.Tensor]:
        """Unit levels (strides 16, 8, 4) -> NCHW maps named ``s4 .. s64``; extra levels (strides 32
        and 64, for detection) are 2x2 average pools of the coarsest map."""
        maps = {f"s{stride}": units_to_map(level, grid) for stride, level in zip((16, 8, 4), levels)}
        coarsest: Optional[torch.Tensor] = maps["s16"]
        for stride in (32, 64)[:extra_levels]:
            coarsest = F.avg_pool2d(coarsest, kernel_size=2, stride=2)
            maps[f"s{stride}"] = coarsest
        return {name: maps[name] for name in sorted(maps, key=lambda key: int(key[1:]))}
