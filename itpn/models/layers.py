"""Building blocks shared by HiViT, iTPN and Fast-iTPN.

Tokens of the two MLP stages live in a *unit layout* ``(B, L, s, s, C)``: ``L`` units of
16x16 pixels, each holding an ``s x s`` grid of sub-tokens (s = 4, 2, then 1). No operation
before stage 3 crosses a unit boundary, so the same code runs on all units or on the visible
units of a masked image. The released Fast-iTPN writes its stem as 1x1 and 2x2 convolutions
over NCHW maps; here the same operations are Linear layers over channels-last units (the
checkpoint loader reshapes the convolution kernels), which avoids layout round trips.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn
from timm.layers import DropPath, LayerScale, Mlp, SwiGLU, resize_rel_pos_bias_table


def units_to_map(units: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """``(B, Hp*Wp, s, s, C)`` units -> ``(B, C, Hp*s, Wp*s)`` map."""
    batch, _, size, _, channels = units.shape
    height, width = grid
    return (
        units.reshape(batch, height, width, size, size, channels)
        .permute(0, 5, 1, 3, 2, 4)
        .reshape(batch, channels, height * size, width * size)
    )


def map_to_units(feature_map: torch.Tensor, size: int) -> torch.Tensor:
    """``(B, C, Hp*s, Wp*s)`` map -> ``(B, Hp*Wp, s, s, C)`` units."""
    batch, channels, height, width = feature_map.shape
    return (
        feature_map.reshape(batch, channels, height // size, size, width // size, size)
        .permute(0, 2, 4, 3, 5, 1)
        .reshape(batch, (height // size) * (width // size), size, size, channels)
    )


def gather_units(units: torch.Tensor, ids_keep: torch.Tensor) -> torch.Tensor:
    """Keep the units ``ids_keep`` (B, L_keep) along dimension 1 of any ``(B, L, ...)`` tensor."""
    index = ids_keep.reshape(*ids_keep.shape, *([1] * (units.dim() - 2)))
    return torch.gather(units, 1, index.expand(-1, -1, *units.shape[2:]))


@dataclass(frozen=True)
class UnitLayout:
    """Where the units of a ``(B, L, s, s, C)`` tensor sit: the unit ``grid`` (rows, columns) of the
    whole image and, for a masked image, the visible units ``ids_keep`` (B, L_keep) (None: all units)."""

    grid: tuple[int, int]
    ids_keep: Optional[torch.Tensor] = None


def units_to_full_map(units: torch.Tensor, layout: UnitLayout) -> torch.Tensor:
    """Units -> ``(B, C, Hp*s, Wp*s)`` map of the whole grid; masked units (not in ``ids_keep``) are zeros."""
    if layout.ids_keep is not None:
        batch, _, size, _, channels = units.shape
        full = units.new_zeros(batch, layout.grid[0] * layout.grid[1], size, size, channels)
        index = layout.ids_keep.reshape(*layout.ids_keep.shape, 1, 1, 1).expand(-1, -1, size, size, channels)
        units = full.scatter(1, index, units)
    return units_to_map(units, layout.grid)


def full_map_to_units(feature_map: torch.Tensor, size: int, layout: UnitLayout) -> torch.Tensor:
    """Inverse of ``units_to_full_map``: the units of ``layout`` (the visible ones of a masked image)."""
    units = map_to_units(feature_map, size)
    return units if layout.ids_keep is None else gather_units(units, layout.ids_keep)


class PatchEmbed(nn.Module):
    """4x4/4 convolution to ``dim`` channels, returned as 16x16-pixel units of 4x4 sub-tokens."""

    def __init__(self, in_chans: int, dim: int, patch_size: int = 16, inner_patches: int = 4,
                 norm_layer: Optional[type[nn.Module]] = None):
        super().__init__()
        self.patch_size = patch_size
        self.inner_patches = inner_patches
        stride = patch_size // inner_patches
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=stride, stride=stride)
        self.norm = norm_layer(dim) if norm_layer is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(map_to_units(self.proj(x), self.inner_patches))


class ConvMixMlp(nn.Module):
    """An MLP whose hidden features are mixed across neighbouring sub-tokens by a 3x3 depthwise
    convolution (fc1 -> DWConv3x3 -> GELU [-> sub-LN] -> fc2), run on the whole unit map with masked
    units as zeros (masked convolution, as ConvMAE does, so nothing is read from a hidden unit).

    The convolutional stand-in for C-MLP of the paper's Table 9 (rows marked *: "convolution is used
    (instead of C-MLP) in the backbone and feature pyramid"). The paper names no kernel or placement;
    the 3x3 depthwise convolution after fc1 (PVTv2's ConvFFN) is our choice: it differs from C-MLP only
    in mixing neighbouring positions, which crosses 16x16 unit borders (section 3.4: C-MLP avoids that).
    """

    def __init__(self, dim: int, hidden: int, norm_layer: Optional[type[nn.Module]] = None):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = nn.Conv2d(hidden, hidden, kernel_size=3, padding=1, groups=hidden)
        self.act = nn.GELU()
        self.norm = norm_layer(hidden) if norm_layer is not None else nn.Identity()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor, layout: UnitLayout) -> torch.Tensor:
        """``x`` units ``(B, L, s, s, C)`` placed by ``layout`` -> the same shape."""
        hidden = self.fc1(x)
        mixed = self.dwconv(units_to_full_map(hidden, layout))
        hidden = full_map_to_units(mixed, x.shape[2], layout)
        return self.fc2(self.norm(self.act(hidden)))


class MlpBlock(nn.Module):
    """``x + DropPath(MLP(LN(x)))``: the channel-only block of the MLP stages and the pyramid.

    ``sub_ln`` adds the LayerNorm on the hidden features that Fast-iTPN's ConvMLP uses. ``conv``
    swaps the channel MLP for ``ConvMixMlp`` (Table 9's convolutional ablation); its forward then
    needs the ``UnitLayout`` of ``x``. ``init_values`` scales the MLP's output by LayerScale
    (``gamma_2`` of the released iTPN-CLIP stem blocks, ``itpn_clip/modeling_pretrain.py``).
    """

    def __init__(self, dim: int, mlp_ratio: float, norm_layer: type[nn.Module], drop_path: float = 0.0,
                 sub_ln: bool = False, conv: bool = False, init_values: Optional[float] = None):
        super().__init__()
        self.norm = norm_layer(dim)
        hidden, sub_norm = int(dim * mlp_ratio), norm_layer if sub_ln else None
        self.mlp = ConvMixMlp(dim, hidden, sub_norm) if conv else Mlp(dim, hidden, norm_layer=sub_norm)
        self.ls = LayerScale(dim, init_values) if init_values else nn.Identity()
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, layout: Optional[UnitLayout] = None) -> torch.Tensor:
        if isinstance(self.mlp, ConvMixMlp):
            if layout is None:
                raise ValueError("a convolutional block (cmlp=False) needs the UnitLayout of its input: where the "
                                 "units sit on the image's grid")
            return x + self.drop_path(self.ls(self.mlp(self.norm(x), layout)))
        return x + self.drop_path(self.ls(self.mlp(self.norm(x))))


def _merge_quads(x: torch.Tensor) -> torch.Tensor:
    """Concatenate the 2x2 neighbours inside each unit: (r0,c0), (r1,c0), (r0,c1), (r1,c1)."""
    return torch.cat(
        [x[..., 0::2, 0::2, :], x[..., 1::2, 0::2, :], x[..., 0::2, 1::2, :], x[..., 1::2, 1::2, :]], dim=-1
    )


class PatchMerge(nn.Module):
    """HiViT / iTPN merge: concatenate 2x2 sub-tokens, LN(4d), bias-free Linear to 2d."""

    def __init__(self, dim: int, norm_layer: type[nn.Module]):
        super().__init__()
        self.norm = norm_layer(dim * 4)
        self.reduction = nn.Linear(dim * 4, dim * 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.reduction(self.norm(_merge_quads(x)))


class ConvPatchMerge(nn.Module):
    """Fast-iTPN merge: LN(d) per sub-token, then a 2x2 stride-2 convolution to 2d (as a Linear)."""

    def __init__(self, dim: int, norm_layer: type[nn.Module]):
        super().__init__()
        self.norm = norm_layer(dim)
        self.reduction = nn.Linear(dim * 4, dim * 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.reduction(_merge_quads(self.norm(x)))


class MlpStage(nn.Module):
    """A run of MLP blocks followed by the merge that halves the unit's inner grid."""

    def __init__(self, blocks: list[nn.Module], merge: nn.Module):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.merge = merge


def relative_position_index(grid: tuple[int, int], device: Optional[torch.device] = None) -> torch.Tensor:
    """``(N, N)`` index into a ``(2H-1)(2W-1)`` bias table for every pair of grid positions."""
    height, width = grid
    coords = torch.stack(torch.meshgrid(torch.arange(height, device=device), torch.arange(width, device=device),
                                        indexing="ij")).flatten(1)
    relative = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0)
    return (relative[..., 0] + height - 1) * (2 * width - 1) + relative[..., 1] + width - 1


class Attention(nn.Module):
    """Multi-head self-attention through ``scaled_dot_product_attention``.

    ``qkv_bias``: ``"qkv"`` a bias on all three projections (HiViT, iTPN), ``"qv"`` on query and
    value only (Fast-iTPN, as in BEiT/EVA), ``"none"``. ``rpe_grid`` adds a learned relative
    position bias table for that grid, resized on the fly for other grids.
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: str = "qkv", rpe_grid: Optional[tuple[int, int]] = None):
        super().__init__()
        if qkv_bias not in ("qkv", "qv", "none"):
            raise ValueError(f"qkv_bias must be 'qkv', 'qv' or 'none', got {qkv_bias!r}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias == "qkv")
        if qkv_bias == "qv":
            self.q_bias = nn.Parameter(torch.zeros(dim))
            self.register_buffer("k_bias", torch.zeros(dim), persistent=False)
            self.v_bias = nn.Parameter(torch.zeros(dim))
        else:
            self.q_bias = self.k_bias = self.v_bias = None
        self.proj = nn.Linear(dim, dim)
        self.rpe_grid = rpe_grid
        if rpe_grid is not None:
            table_size = (2 * rpe_grid[0] - 1) * (2 * rpe_grid[1] - 1)
            self.relative_position_bias_table = nn.Parameter(torch.zeros(table_size, num_heads))
        else:
            self.relative_position_bias_table = None

    def project_qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(B, N, C)`` -> q, k, v each ``(B, heads, N, head_dim)``."""
        bias = None
        if self.q_bias is not None:
            bias = torch.cat((self.q_bias, self.k_bias, self.v_bias))
        qkv = F.linear(x, self.qkv.weight, bias if bias is not None else self.qkv.bias)
        qkv = qkv.reshape(x.shape[0], x.shape[1], 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        return qkv.unbind(0)

    def position_bias(self, grid: tuple[int, int], index: Optional[torch.Tensor] = None) -> Optional[torch.Tensor]:
        """``(heads, N, N)`` bias for ``grid`` (or ``(B, heads, n, n)`` for per-sample ``index``)."""
        if self.relative_position_bias_table is None:
            return None
        table = self.relative_position_bias_table
        if tuple(grid) != tuple(self.rpe_grid):
            new_size = (2 * grid[0] - 1) * (2 * grid[1] - 1)
            table = resize_rel_pos_bias_table(table, new_window_size=grid, new_bias_shape=(new_size, self.num_heads),
                                              old_window_size=self.rpe_grid)
        if index is None:
            index = relative_position_index(grid, table.device)
        bias = table[index]  # (..., n, n, heads)
        return bias.movedim(-1, -3)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
               attn_bias: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Attention of projected queries ``(B, heads, Nq, head_dim)`` over keys/values ``(B, heads, Nk,
        head_dim)`` with an additive bias or boolean mask; heads merged and projected: ``(B, Nq, C)``."""
        if attn_bias is not None and attn_bias.dtype != torch.bool:
            attn_bias = attn_bias.to(q.dtype)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_bias)
        return self.proj(out.transpose(1, 2).flatten(2))

    def forward(self, x: torch.Tensor, attn_bias: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.attend(*self.project_qkv(x), attn_bias)


class Block(nn.Module):
    """Pre-norm transformer block of stage 3: attention and an MLP (GELU or SwiGLU with sub-LN),
    each optionally scaled by LayerScale."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, norm_layer: type[nn.Module],
                 qkv_bias: str = "qkv", swiglu: bool = False, sub_ln: bool = False,
                 init_values: Optional[float] = None, drop_path: float = 0.0,
                 rpe_grid: Optional[tuple[int, int]] = None):
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.attn = Attention(dim, num_heads, qkv_bias=qkv_bias, rpe_grid=rpe_grid)
        self.ls1 = LayerScale(dim, init_values) if init_values else nn.Identity()
        self.norm2 = norm_layer(dim)
        hidden = int(dim * mlp_ratio)
        sub_norm = norm_layer if sub_ln else None
        self.mlp = SwiGLU(dim, hidden, norm_layer=sub_norm) if swiglu else Mlp(dim, hidden, norm_layer=sub_norm)
        self.ls2 = LayerScale(dim, init_values) if init_values else nn.Identity()
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, attn_bias: Optional[torch.Tensor] = None) -> torch.Tensor:
        x = x + self.drop_path(self.ls1(self.attn(self.norm1(x), attn_bias)))
        return x + self.drop_path(self.ls2(self.mlp(self.norm2(x))))
