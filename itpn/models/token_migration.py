"""Token migration (Fast-iTPN, section 4.1, Fig. 3a/3c): drop redundant stage-3 tokens, replenish them later.

In a migration layer the tokens of every window (the whole image under global attention) are
split into two sets, A and B; each A token is scored by its highest cosine similarity to a B
token, measured on the layer's attention keys averaged over heads; the ``r`` best-scoring A
tokens leave the backbone. Their features (the state they had when dropped) and grid positions
go to a store; the following layers run on the rest. Before the feature pyramid,
``replenish`` writes every stored token back at its own position, so the pyramid and the
heads see the full grid.

Choices where the paper is silent (they are ours, not the authors'):

- A/B split: alternate tokens in the window's current order (A = even, B = odd), as ToMe does;
  the kept tokens stay in their spatial order, so the split of the next layer alternates again.
- The drop happens inside the layer, after its q/k/v projection and before its attention, so
  the keys that score the tokens are the layer's own and the layer's attention and MLP already
  run on the kept tokens. The stored state of a dropped token is the layer's input.
- ``r`` is a ratio of the tokens of a window, counted over all the migration layers together,
  and spread over them as evenly as integers allow (see ``migration_counts``).
- Padding tokens (windows that overhang the grid) count as the most redundant: they are dropped
  before any real token, and no real token is matched to them.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from .layers import gather_units


def migration_counts(ratio: float, layers: Sequence[int], tokens_per_window: int, depth: int) -> dict[int, int]:
    """How many tokens each migration layer drops from every window.

    ``ratio`` of the ``tokens_per_window`` leave in total; the layers of ``layers`` that exist in a
    stage 3 of ``depth`` blocks share them as evenly as integers allow (cumulative rounding).
    """
    active = sorted({layer for layer in layers if 0 <= layer < depth})
    if not ratio:
        return {}
    if not active:
        raise ValueError(f"token migration layers {tuple(layers)} do not exist in a stage 3 of {depth} blocks; "
                         f"use indices 0..{depth - 1}")
    total = round(ratio * tokens_per_window)
    cumulative = [round(total * (step + 1) / len(active)) for step in range(len(active))]
    counts = {layer: done - previous for layer, done, previous in zip(active, cumulative, [0] + cumulative[:-1])}
    remaining = tokens_per_window
    for layer, count in counts.items():
        if count > (remaining + 1) // 2:
            raise ValueError(
                f"token migration would drop {count} of {remaining} tokens per window in layer {layer}, more than "
                f"set A holds ({(remaining + 1) // 2}); lower the ratio ({ratio}) or spread it over more layers")
        remaining -= count
    return {layer: count for layer, count in counts.items() if count}


def select_migrated(keys: torch.Tensor, valid: Optional[torch.Tensor], count: int
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Split each row of ``keys`` (G, n, d) into kept and migrated token indices.

    ``valid`` (G, n) marks real tokens (None: all are). Returns ``keep`` (G, n - count), in the
    tokens' original order, and ``drop`` (G, count), the A tokens most similar to some B token.
    """
    with torch.no_grad():
        metric = F.normalize(keys.float(), dim=-1)
        set_a, set_b = metric[:, 0::2], metric[:, 1::2]
        similarity = set_a @ set_b.transpose(1, 2)  # (G, |A|, |B|)
        if valid is not None:
            similarity = similarity.masked_fill(~valid[:, None, 1::2], float("-inf"))
        score = similarity.amax(dim=-1) if set_b.shape[1] else similarity.new_full(set_a.shape[:2], float("-inf"))
        if valid is not None:
            score = score.masked_fill(~valid[:, 0::2], float("inf"))
        drop = score.topk(count, dim=-1).indices * 2  # positions of the chosen A tokens in the row
        dropped = torch.zeros(keys.shape[:2], dtype=torch.int8, device=keys.device).scatter(1, drop, 1)
        keep = torch.argsort(dropped, dim=1, stable=True)[:, : keys.shape[1] - count]
    return keep, drop


def take_tokens(tensor: torch.Tensor, index: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """Gather ``index`` (G, m) along ``dim`` of ``tensor`` (G, ..., n, ...): tokens or per-head q/k/v."""
    if dim == 1:
        return gather_units(tensor, index)
    shape = [index.shape[0]] + [1] * (tensor.dim() - 1)
    shape[dim] = index.shape[1]
    expanded = index.reshape(shape).expand(*tensor.shape[:dim], index.shape[1], *tensor.shape[dim + 1:])
    return torch.gather(tensor, dim, expanded)


def replenish(tokens: torch.Tensor, positions: torch.Tensor, num_positions: int) -> torch.Tensor:
    """Write ``tokens`` (B, m, C) at their grid ``positions`` (B, m) into a (B, num_positions, C) grid.

    Kept and stored tokens together cover every position once; a position equal to
    ``num_positions`` marks a padding token, which is discarded.
    """
    batch, _, channels = tokens.shape
    grid = tokens.new_zeros(batch, num_positions + 1, channels)
    grid = grid.scatter(1, positions[:, :, None].expand(-1, -1, channels), tokens)
    return grid[:, :num_positions]
