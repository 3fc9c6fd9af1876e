"""Token gathering (Fast-iTPN, section 4.2, Fig. 4, Table 7): window attention plus gathering tokens.

Stage 3 attends inside windows; each window carries one gathering token that takes part in its
window's attention. A cross-attention step then lets the gathering tokens collect from all
tokens of the image and every token read back from all gathering tokens, so information crosses
windows at a cost of O(N K) (N tokens, K windows) instead of the O(N^2) of global attention.

Choices where the paper is silent (they are ours, not the authors'):

- Window size: 16 x 16 tokens by default (256 px; it divides the 512 and 1024 px grids of
  segmentation and detection). A grid that the window does not divide is cut into
  ceil(side / window) windows per side whose sides differ by at most one token and never exceed
  the window size (``WindowLayout``): COCO's 800 x 1344 (50 x 84 tokens) becomes 4 x 6 windows of
  12-13 x 14 tokens. Every window sits in a slot of the largest window's size, so a batch stays
  rectangular; the few spare slots (at most one row and one column per window: 4.0 % more tokens
  at 800 x 1344, where padding the grid to whole 16 x 16 windows would add 46 %) are padding,
  masked out as a key everywhere (a padding query may see itself, so no softmax row is empty).
  A window larger than the grid shrinks to the grid, so such a "window" is global attention.
- Gathering tokens: one learned embedding shared by all windows (zero at first) added to the
  mean of the window's tokens, so every window has its own token at any input size and a new
  token starts inside the distribution the pre-trained weights know. They run through every
  stage-3 block (attention and MLP) and are discarded after the last one.
- The cross-attention reuses the block's own q/k/v and output projections (no new projection
  weights): the gathering tokens collect with a query of their updated state over the keys and
  values the block computed for its tokens; the tokens read back with their own query over the
  keys and values of the updated gathering tokens. Only the K gathering tokens are projected
  again, and a token's read-back is added to its window-attention output before the one output
  projection, so the step adds O(N K) and no N x C^2 work. The read-back is scaled by a
  per-channel gate that starts at zero, so a checkpoint trained without gathering starts from
  window attention with one extra, familiar-looking token per window (the gathering tokens
  still carry what they collected into the next block's window attention).
- RPE (Table 7): a Swin-style (2w-1)^2 table per block for window attention ("hrpe", and part of
  "rpe"); for the cross-attention ("rpe" only) a table over the offset, in windows, between a
  token's window and a gathering token's window, clipped to +-(extent - 1). Both start at zero.
  Pairs with a gathering token get no window bias. A model with its own relative position
  bias (HiViT, iTPN) keeps it inside the windows: each pair gets the entry of its offset.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn


def as_pair(size: int | tuple[int, int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def _split_side(side: int, count: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Grid coordinate of every slot of ``count`` near-equal windows along a side of ``side`` tokens:
    ``(count, slot)`` coordinates and the mask of the slots that hold a token (the rest is padding).
    Made on ``device`` with ``//`` and ``%`` (not ``divmod``), so ``torch.compile`` traces it whole."""
    slot = -(-side // count)
    base, extra = side // count, side % count
    index = torch.arange(count, device=device)
    sizes = base + (index < extra).long()
    starts = index * base + index.clamp(max=extra)
    offsets = torch.arange(slot, device=device)
    return starts[:, None] + offsets[None, :], offsets[None, :] < sizes[:, None]


@dataclass(frozen=True)
class WindowLayout:
    """How a grid of ``Hp x Wp`` tokens splits into ``windows`` (per side) of near-equal size.

    ``for_grid`` takes ceil(side / window size) windows per side (one window covering the grid when
    ``window_size`` is None or exceeds the grid); the rows and columns are shared out as evenly as
    integers allow, so window sides differ by at most one token and never exceed the window size.
    Each window is held in a slot of ``window`` (the largest window's size); slots of smaller
    windows are padded. Token positions are flat grid indices; ``num_positions`` (= Hp*Wp) marks a
    padding slot. Padding is at most one row per window row and one column per window column:
    ``num_slots <= (Hp + windows_h - 1) * (Wp + windows_w - 1)`` (our choice; the paper does not say
    how a grid that the window does not divide is split).
    """

    grid: tuple[int, int]
    windows: tuple[int, int]

    @classmethod
    def for_grid(cls, grid: tuple[int, int], window_size: Optional[int | tuple[int, int]]) -> "WindowLayout":
        height, width = int(grid[0]), int(grid[1])
        if window_size is None:
            return cls((height, width), (1, 1))
        window_h, window_w = as_pair(window_size)
        return cls((height, width), (-(-height // window_h), -(-width // window_w)))

    @property
    def window(self) -> tuple[int, int]:
        """The slot every window is held in: the largest window's size."""
        return -(-self.grid[0] // self.windows[0]), -(-self.grid[1] // self.windows[1])

    @property
    def num_windows(self) -> int:
        return self.windows[0] * self.windows[1]

    @property
    def tokens_per_window(self) -> int:
        return self.window[0] * self.window[1]

    @property
    def num_positions(self) -> int:
        return self.grid[0] * self.grid[1]

    @property
    def num_slots(self) -> int:
        """Tokens per image through the windowed blocks, padding included."""
        return self.num_windows * self.tokens_per_window

    @property
    def has_padding(self) -> bool:
        return self.grid[0] % self.windows[0] != 0 or self.grid[1] % self.windows[1] != 0

    def positions(self, device: torch.device) -> torch.Tensor:
        """``(windows, tokens per window)`` flat grid index of every slot, ``num_positions`` for padding.
        Windows run row by row over the grid, and so do the slots inside a window."""
        rows, rows_real = _split_side(self.grid[0], self.windows[0], device)
        cols, cols_real = _split_side(self.grid[1], self.windows[1], device)
        index = rows[:, None, :, None] * self.grid[1] + cols[None, :, None, :]  # (Kh, Kw, h, w)
        real = rows_real[:, None, :, None] & cols_real[None, :, None, :]
        index = torch.where(real, index, self.num_positions)
        return index.reshape(self.num_windows, self.tokens_per_window)

    def partition(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(B, Hp*Wp, C)`` tokens -> ``(B, windows, tokens per window, C)``, zero tokens as padding."""
        batch, _, channels = tokens.shape
        if self.has_padding:
            tokens = torch.cat([tokens, tokens.new_zeros(batch, 1, channels)], dim=1)
        index = self.positions(tokens.device).flatten()
        return tokens.index_select(1, index).reshape(batch, self.num_windows, self.tokens_per_window, channels)


def pair_index(positions: torch.Tensor, grid_width: int, extent: tuple[int, int]) -> torch.Tensor:
    """Index into a ``(2h-1)(2w-1)`` relative-position table for every pair of ``positions`` (..., n).

    Offsets are clipped to the table's ``extent`` (h, w); only pairs with a padding token reach
    the clip, and those are masked.
    """
    rows, cols = positions // grid_width, positions % grid_width
    extent_h, extent_w = extent
    d_row = (rows[..., :, None] - rows[..., None, :]).clamp(-(extent_h - 1), extent_h - 1)
    d_col = (cols[..., :, None] - cols[..., None, :]).clamp(-(extent_w - 1), extent_w - 1)
    return (d_row + extent_h - 1) * (2 * extent_w - 1) + d_col + extent_w - 1


def window_attention_bias(model_attention: nn.Module, window_table: Optional[torch.Tensor],
                          table_window: tuple[int, int], positions: torch.Tensor, layout: WindowLayout,
                          with_gathering: bool) -> Optional[torch.Tensor]:
    """Mask and bias of window attention for windows of ``positions`` (G, n), shape (G, heads or 1, n', n').

    Adds the model's own relative position bias (if it has one) and the window table (made for
    windows of ``table_window``, which may exceed the layout's window on a small grid); masks
    padding keys; appends a zero-bias, always-visible gathering token when ``with_gathering``.
    Returns None when no bias and no mask are needed (the fused kernels then run unmasked).
    """
    width = layout.grid[1]
    bias = None
    if getattr(model_attention, "relative_position_bias_table", None) is not None:
        bias = model_attention.position_bias(layout.grid, pair_index(positions, width, layout.grid))
    if window_table is not None:
        window_bias = window_table[pair_index(positions, width, table_window)].movedim(-1, -3)
        bias = window_bias if bias is None else bias + window_bias
    if with_gathering and bias is not None:
        bias = F.pad(bias, (0, 1, 0, 1))
    mask = None
    if layout.has_padding:
        valid = positions < layout.num_positions
        if with_gathering:
            valid = F.pad(valid, (0, 1), value=True)
        eye = torch.eye(valid.shape[-1], dtype=torch.bool, device=positions.device)
        mask = valid[:, None, None, :] | eye
    if bias is None:
        return mask
    return bias if mask is None else bias.masked_fill(~mask, float("-inf"))


def cross_attention_biases(table: torch.Tensor, layout: WindowLayout, tokens_per_window: int, extent: int
                           ) -> tuple[torch.Tensor, torch.Tensor]:
    """Biases of the collect step (heads, K, K*n) and of the read-back step (heads, K*n, K).

    The offset is between the query's window and the key's window, clipped to +-(extent - 1).
    """
    windows_w = layout.windows[1]
    index = torch.arange(layout.num_windows, device=table.device)
    by_window = table[pair_index(index, windows_w, (extent, extent))].permute(2, 0, 1)  # (heads, Kq, Kk)
    heads, count = by_window.shape[0], layout.num_windows
    collect = by_window[:, :, :, None].expand(heads, count, count, tokens_per_window).reshape(heads, count, -1)
    read_back = by_window[:, :, None, :].expand(heads, count, tokens_per_window, count).reshape(heads, -1, count)
    return collect, read_back


class GatheringTokens(nn.Module):
    """The gathering token of every window: the window's mean token plus a learned embedding (zero at first)."""

    def __init__(self, dim: int):
        super().__init__()
        self.embedding = nn.Parameter(torch.zeros(dim))

    def forward(self, windows: torch.Tensor, valid: Optional[torch.Tensor]) -> torch.Tensor:
        """``windows`` (B, K, n, C), ``valid`` (B, K, n) or None -> gathering tokens (B, K, C)."""
        if valid is None:
            mean = windows.mean(dim=2)
        else:
            weights = valid.to(windows.dtype)[..., None]
            mean = (windows * weights).sum(dim=2) / weights.sum(dim=2).clamp_min(1.0)
        return mean + self.embedding


def split_heads_by_image(tensor: torch.Tensor, batch: int) -> torch.Tensor:
    """``(B*K, heads, n, d)`` per-window q/k/v -> ``(B, heads, K*n, d)`` per image."""
    windows_total, heads, tokens, dim = tensor.shape
    windows = windows_total // batch
    return tensor.reshape(batch, windows, heads, tokens, dim).transpose(1, 2).reshape(batch, heads, -1, dim)


def _attention(queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
               bias: Optional[torch.Tensor]) -> torch.Tensor:
    """Per-head attention output, heads not merged; a float bias is cast to the queries' dtype."""
    if bias is not None and bias.dtype != torch.bool:
        bias = bias.to(queries.dtype)
    return F.scaled_dot_product_attention(queries, keys, values, attn_mask=bias)


def window_attention(queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                     bias: Optional[torch.Tensor], batch: int) -> torch.Tensor:
    """Attention inside windows: q/k/v ``(B*K, heads, n, d)``, per-head output of the same shape.

    ``bias`` (additive, or a boolean mask) is ``(B*K, heads or 1, n, n)``, or ``(K, heads or 1, n, n)``
    when every image has the same windows (no token has migrated yet). The latter is not copied
    per image: the windows are folded into the heads dimension, ``(B, K*heads, n, d)``, and
    ``scaled_dot_product_attention`` broadcasts one ``(1, K*heads, n, n)`` bias over the images
    (attention is independent per window and head, so the result is the same).
    """
    windows_total, heads, tokens, dim = queries.shape
    if bias is None or bias.shape[0] == windows_total:
        return _attention(queries, keys, values, bias)
    windows = windows_total // batch
    if bias.shape[0] != windows:
        raise ValueError(f"window attention bias for {bias.shape[0]} windows, expected {windows} (shared by the "
                         f"batch) or {windows_total} (one per window of every image)")
    shared = bias.expand(windows, heads, tokens, tokens).reshape(1, windows * heads, tokens, tokens)

    def fold(tensor: torch.Tensor) -> torch.Tensor:
        return tensor.reshape(batch, windows * heads, tokens, tensor.shape[-1])

    out = _attention(fold(queries), fold(keys), fold(values), shared)
    return out.reshape(windows_total, heads, tokens, out.shape[-1])


def _merge_heads(tensor: torch.Tensor) -> torch.Tensor:
    """``(B, heads, N, d)`` -> ``(B, N, heads * d)``."""
    return tensor.transpose(1, 2).flatten(2)


def attention_with_gathering(block: nn.Module, sequences: torch.Tensor, queries: torch.Tensor, keys: torch.Tensor,
                             values: torch.Tensor, window_bias: Optional[torch.Tensor], gate: torch.Tensor,
                             batch: int, key_mask: Optional[torch.Tensor],
                             cross_biases: Optional[tuple[torch.Tensor, torch.Tensor]],
                             drop_path: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """The attention half of a stage-3 block with gathering tokens (Fig. 4), residual included.

    ``sequences`` (B*K, n + 1, C): each window's tokens, its gathering token last; ``queries``,
    ``keys``, ``values`` (B*K, heads, n + 1, d) the block's projections of them. Window attention
    first (Fig. 4, top); then the gathering tokens collect from all tokens of their image and
    every token reads back from all gathering tokens (Fig. 4, bottom), both O(N K). A token's
    window output and its gated read-back are summed before the block's output projection, so
    the read-back costs no extra N x C^2 projection. ``key_mask`` (B or 1, 1, 1, K*n) hides
    padding from the collect step; ``cross_biases`` come from ``cross_attention_biases``.
    ``drop_path`` is the block's stochastic depth for this residual branch, drawn once per image:
    the tokens of all windows and the gathering tokens keep or lose the update together.
    """
    attention = block.attn
    windows_total, length, channels = sequences.shape
    count, windows = length - 1, windows_total // batch
    heads_out = window_attention(queries, keys, values, window_bias, batch)
    tokens, gathering = sequences[:, :count], sequences[:, count].reshape(batch, windows, channels)
    window_out = heads_out[:, :, count].reshape(batch, windows, channels)
    gathering = gathering + drop_path(block.ls1(attention.proj(window_out)))

    collect_bias = read_back_bias = None
    if cross_biases is not None:
        collect_bias, read_back_bias = cross_biases
    if key_mask is not None:
        collect_bias = key_mask if collect_bias is None else collect_bias.masked_fill(~key_mask, float("-inf"))
    token_keys, token_values = (split_heads_by_image(t[:, :, :count], batch) for t in (keys, values))
    gathering_query, _, _ = attention.project_qkv(block.norm1(gathering))
    gathering = gathering + drop_path(block.ls1(attention.attend(gathering_query, token_keys, token_values,
                                                                 collect_bias)))
    _, gathering_keys, gathering_values = attention.project_qkv(block.norm1(gathering))
    read_back = _attention(split_heads_by_image(queries[:, :, :count], batch), gathering_keys, gathering_values,
                           read_back_bias)
    mixed = _merge_heads(heads_out[:, :, :count]) + gate * _merge_heads(read_back).reshape(windows_total, count,
                                                                                          channels)
    tokens = tokens + drop_path(block.ls1(attention.proj(mixed)))
    return torch.cat([tokens, gathering.reshape(windows_total, 1, channels)], dim=1)
