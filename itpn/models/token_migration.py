"""Token migration (Fast-iTPN, section 4.1, Fig. 3a/3c): drop redundant stage-3 tokens, replenish them later.

Equation 6 of the paper: "for l-th layer of the third stage, there is an input M(u_l) from the
former layer" -- every stage-3 layer, from the first one on, takes the migration function of its
input and drops "the top-r tokens of the largest similarity within set A" (r "an experimentally
determined hyper-parameter"), as ToMe's r per layer does (Bolya et al., 2023, ref. [69]). In a
migration layer the tokens of every window (the whole image under global attention) are split into
two sets, A and B; each A token is scored by its highest cosine similarity to a B token, measured
on the layer's attention keys averaged over heads ("the mean of the attention map's K-matrix");
the ``r`` best-scoring A tokens leave the backbone. Their features (the state they had when
dropped) and grid positions go to a store; the following layers run on the rest. Before the
feature pyramid, ``replenish`` writes every stored token back at its own position, so the pyramid
and the heads see the full grid (section 4.1, "Token Replenishing"; Fig. 3c).

Schedules (``migration_counts``):

- ``per_layer`` (the default, eq. 6): every stage-3 layer drops its share. The knob is either
  ``r`` itself (tokens per window and layer, as in ToMe) or the share of a window's tokens that
  has migrated by the end of stage 3 (the "10 %, 20 %, 30 %, 40 % token migration ratios" of
  section 5.4.1), spread over all layers as evenly as integers allow. Tokens migrate gradually, so
  the FLOPs saved are about half the ratio's share of stage 3: 30 % gives 1.23x fewer FLOPs for
  Fast-iTPN-B at 1024^2, in line with the +23 % speed the paper reports for 30 % (Fig. 5).
- ``front_loaded`` (our earlier choice, kept as a named option): the whole share leaves in the
  first three layers, so almost all of stage 3 runs on the reduced set (1.50x fewer FLOPs at 30 %).

Choices where the paper is silent (they are ours, not the authors'):

- A/B split: alternate tokens in the window's current order (A = even, B = odd), as ToMe does;
  the kept tokens stay in their spatial order, so the split of the next layer alternates again.
- The drop happens inside the layer, after its q/k/v projection and before its attention, so
  the keys that score the tokens are the layer's own and the layer's attention and MLP already
  run on the kept tokens. The stored state of a dropped token is the layer's input.
- Padding tokens (windows smaller than their slot) count as the most redundant: they are dropped
  before any real token, and no real token is matched to them.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from .layers import gather_units


MIGRATION_SCHEDULES = ("per_layer", "front_loaded")
FRONT_LOADED_LAYERS = 3


def migration_counts(tokens_per_window: int, depth: int, *, ratio: float = 0.0, r: Optional[int] = None,
                     schedule: str = "per_layer") -> dict[int, int]:
    """How many tokens each stage-3 layer (index: count) drops from every window.

    ``r``: tokens per window and layer (eq. 6; ToMe's r), in every layer while at least half of a
    window's tokens remain (a layer never drops more than half, as in ToMe). ``ratio``: the share
    of the ``tokens_per_window`` that has left by the end of stage 3; ``per_layer`` spreads it over
    all ``depth`` layers, ``front_loaded`` over the first three, as evenly as integers allow
    (cumulative rounding). Layers that drop nothing are left out. Raises ValueError for an
    unknown schedule or a ratio that a layer's set A cannot hold.
    """
    if schedule not in MIGRATION_SCHEDULES:
        raise ValueError(f"migration schedule must be one of {MIGRATION_SCHEDULES}, got {schedule!r}")
    layers = list(range(depth if schedule == "per_layer" else min(FRONT_LOADED_LAYERS, depth)))
    counts: dict[int, int] = {}
    remaining = tokens_per_window
    if r is not None:
        for layer in layers:
            counts[layer] = min(r, remaining // 2)
            remaining -= counts[layer]
        return {layer: count for layer, count in counts.items() if count}
    if not ratio or not layers:
        return {}
    total = round(ratio * tokens_per_window)
    cumulative = [round(total * (step + 1) / len(layers)) for step in range(len(layers))]
    for layer, done, previous in zip(layers, cumulative, [0] + cumulative[:-1]):
        count = done - previous
        if count > (remaining + 1) // 2:
            raise ValueError(
                f"token migration would drop {count} of {remaining} tokens per window in layer {layer}, more than "
                f"set A holds ({(remaining + 1) // 2}); lower the ratio ({ratio}) or use the per_layer schedule")
        counts[layer] = count
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
