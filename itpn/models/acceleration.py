"""The "Fast" of Fast-iTPN: token migration and token gathering in stage 3, switchable by name.

``AccelerationConfig`` describes one acceleration; ``VARIANTS`` names every row of the paper's
Figure 5 and Table 7; ``set_acceleration(model, "window_gathering_hrpe")`` switches a HiViT /
iTPN / Fast-iTPN model (classification or pyramid) at fine-tuning or inference time, and
``set_acceleration(model, "baseline")`` switches it back to the untouched network. The base
model only hands its stage-3 input to ``model.acceleration`` when one is set; everything before
stage 3, the pyramid and the heads stay as they are, because stage 3 returns the full grid:
tokens that migrated out are replenished at their positions with the state they had when
dropped (see ``token_migration``; ``token_gathering`` describes the window attention).

Source: the paper (sections 4.1, 4.2 and 5.4, Figs. 3-5, Table 7). The released code
(sunsmarterjie/iTPN, ``fast_itpn/``) has neither migration nor gathering: its author says the
released Fast-iTPN "uses no acceleration operations" (issue #17), so nothing here follows code.

Choices where the paper is silent (see also the two modules' docstrings):

- Migration runs in the windows of the attention (the whole image under global attention), so
  every window keeps the same number of tokens and a batch stays rectangular. By default every
  stage-3 layer drops its share (eq. 6, ``migration_schedule="per_layer"``); ``migration_r`` sets
  the paper's r (tokens per window and layer) directly; ``migration_30_front_loaded`` is the
  schedule that drops everything in layers 0-2 (see ``token_migration``).
- Stochastic depth is drawn per image (``per_image_drop_path``): windows and gathering tokens of
  one image keep or lose a block's update together, as the unaccelerated block does.
- The classifier pools the tokens that stayed in stage 3 or the whole replenished grid
  (``HiViT(global_pool=...)``); the pyramid always sees the whole grid.
- ``migration_30_gathering`` is the paper's full speed-up ("token migration and gathering tokens,
  further using relative position embedding", Fig. 5): 30 % migration, window attention with
  gathering tokens and HRPE (the "W/ Speedup" row of Table 7).
- Acceleration applies to fine-tuning and inference (section 4): a masked pre-training forward
  with it switched on is refused.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import partial
from typing import Callable, Optional

import torch
import torch.utils.checkpoint
from torch import nn

from .token_gathering import (
    GatheringTokens,
    WindowLayout,
    as_pair,
    attention_with_gathering,
    cross_attention_biases,
    window_attention,
    window_attention_bias,
)
from .token_migration import MIGRATION_SCHEDULES, migration_counts, replenish, select_migrated, take_tokens

POSITION_BIASES = ("none", "hrpe", "rpe")
DEFAULT_WINDOW_SIZE = 16


@dataclass(frozen=True)
class AccelerationConfig:
    """One acceleration of stage 3.

    ``migration_ratio``: fraction of each window's tokens migrated out of the backbone by the end
    of stage 3 (Fig. 5's 10-40 %); ``migration_r``: instead, r tokens per window dropped in every
    layer (eq. 6); ``migration_schedule``: ``"per_layer"`` (eq. 6) or ``"front_loaded"`` (the whole
    ratio in stage-3 layers 0-2), see ``token_migration.migration_counts``.
    ``window_size``: tokens per window side (int or (h, w)); None is global attention.
    ``gathering``: one gathering token per window and the O(N K) cross-attention step.
    ``position_bias``: ``"hrpe"`` a relative position bias for window attention, ``"rpe"`` for
    window attention and the cross-attention (Table 7), ``"none"``.
    ``cross_bias_extent``: window offsets the cross-attention table tells apart, per side.
    """

    name: str = "custom"
    migration_ratio: float = 0.0
    migration_r: Optional[int] = None
    migration_schedule: str = "per_layer"
    window_size: Optional[int | tuple[int, int]] = None
    gathering: bool = False
    position_bias: str = "none"
    cross_bias_extent: int = 8
    description: str = ""

    def __post_init__(self) -> None:
        problems = []
        if not 0.0 <= self.migration_ratio < 1.0:
            problems.append(f"migration_ratio must be in [0, 1), got {self.migration_ratio}")
        if self.migration_r is not None and (self.migration_r < 1 or self.migration_ratio):
            problems.append(f"migration_r is the tokens per window and layer (at least 1) and replaces "
                            f"migration_ratio: got migration_r={self.migration_r}, migration_ratio={self.migration_ratio}")
        if self.migration_schedule not in MIGRATION_SCHEDULES:
            problems.append(f"migration_schedule must be one of {MIGRATION_SCHEDULES}, got {self.migration_schedule!r}")
        if self.window_size is not None and min(as_pair(self.window_size)) < 1:
            problems.append(f"window_size must be positive, got {self.window_size}")
        if self.gathering and self.window_size is None:
            problems.append("gathering tokens need window attention: set window_size")
        if self.position_bias not in POSITION_BIASES:
            problems.append(f"position_bias must be one of {POSITION_BIASES}, got {self.position_bias!r}")
        elif self.position_bias != "none" and self.window_size is None:
            problems.append(f"position_bias={self.position_bias!r} is a bias of window attention: set window_size")
        elif self.position_bias == "rpe" and not self.gathering:
            problems.append("position_bias='rpe' also biases the cross-attention of gathering tokens: set "
                            "gathering=True, or use 'hrpe' for window attention alone")
        if self.cross_bias_extent < 1:
            problems.append(f"cross_bias_extent must be at least 1, got {self.cross_bias_extent}")
        if problems:
            raise ValueError(f"acceleration {self.name!r}: " + "; ".join(problems))

    @property
    def is_baseline(self) -> bool:
        """True when nothing is accelerated: the model runs its own, untouched stage 3."""
        return not self.migration and self.window_size is None

    @property
    def migration(self) -> bool:
        """True when tokens migrate out of stage 3."""
        return bool(self.migration_ratio or self.migration_r)

    def migration_counts(self, grid: tuple[int, int], depth: int) -> dict[int, int]:
        """Tokens each stage-3 layer (of ``depth``) drops from every window of a ``grid`` (Hp, Wp)."""
        tokens = WindowLayout.for_grid(grid, self.window_size).tokens_per_window
        return migration_counts(tokens, depth, ratio=self.migration_ratio, r=self.migration_r,
                                schedule=self.migration_schedule)

    def describe_migration(self, grid: tuple[int, int], depth: int) -> str:
        """The schedule in the paper's terms for a ``grid``: r per layer and the share that leaves,
        e.g. ``"r = 3-4 per window in 24 of 24 layers: 77 of 256 tokens (30.1 %)"``."""
        counts = self.migration_counts(grid, depth)
        if not counts:
            return "no migration"
        tokens = WindowLayout.for_grid(grid, self.window_size).tokens_per_window
        low, high, total = min(counts.values()), max(counts.values()), sum(counts.values())
        r = str(low) if low == high else f"{low}-{high}"
        return (f"r = {r} per window in {len(counts)} of {depth} layers: {total} of {tokens} tokens "
                f"({100 * total / tokens:.1f} %)")

    def replace(self, **changes: object) -> "AccelerationConfig":
        """A copy with ``changes`` (e.g. another ``window_size``), validated again."""
        return dataclasses.replace(self, **changes)


def _variants() -> dict[str, AccelerationConfig]:
    window = dict(window_size=DEFAULT_WINDOW_SIZE)
    configs = [
        AccelerationConfig("baseline", description="no acceleration (Fig. 5 and Table 7, first row)"),
        *[AccelerationConfig(f"migration_{percent}", migration_ratio=percent / 100,
                             description=f"token migration of {percent}% of the tokens, r per layer (Fig. 5, eq. 6)")
          for percent in (10, 20, 30, 40)],
        AccelerationConfig("migration_30_front_loaded", migration_ratio=0.3, migration_schedule="front_loaded",
                           description="token migration of 30% of the tokens, all in stage-3 layers 0-2 (ours)"),
        AccelerationConfig("window", **window, description="window attention (Fig. 5; Table 7, WMSA)"),
        AccelerationConfig("window_hrpe", **window, position_bias="hrpe",
                           description="window attention with its relative position bias (Table 7, WMSA + HRPE)"),
        AccelerationConfig("window_gathering", **window, gathering=True,
                           description="window attention and gathering tokens (Fig. 5; Table 7, GT + WMSA)"),
        AccelerationConfig("window_gathering_rpe", **window, gathering=True, position_bias="rpe",
                           description="gathering tokens, bias for window and cross-attention (Table 7, + RPE)"),
        AccelerationConfig("window_gathering_hrpe", **window, gathering=True, position_bias="hrpe",
                           description="gathering tokens, bias for window attention only (Table 7, + HRPE)"),
        AccelerationConfig("migration_30_gathering", migration_ratio=0.3, **window, gathering=True,
                           position_bias="hrpe",
                           description="30% migration, gathering tokens and HRPE: the full speed-up (Fig. 5)"),
    ]
    return {config.name: config for config in configs}


VARIANTS: dict[str, AccelerationConfig] = _variants()


def get_variant(name: str) -> AccelerationConfig:
    """The named acceleration; an unknown name raises a ValueError that lists the valid ones."""
    try:
        return VARIANTS[name]
    except KeyError:
        raise ValueError(f"unknown acceleration variant {name!r}; the variants are: {', '.join(VARIANTS)}") from None


class AcceleratedLayer(nn.Module):
    """What one stage-3 block gains: window and cross-attention bias tables and the read-back gate.
    All start at zero (see ``token_gathering``), so a checkpoint without them loads and runs."""

    def __init__(self, dim: int, num_heads: int, config: AccelerationConfig):
        super().__init__()
        self.window_bias_table = self.cross_bias_table = self.readback_gate = None
        if config.position_bias in ("hrpe", "rpe"):
            window_h, window_w = as_pair(config.window_size)
            self.window_bias_table = nn.Parameter(torch.zeros((2 * window_h - 1) * (2 * window_w - 1), num_heads))
        if config.position_bias == "rpe":
            self.cross_bias_table = nn.Parameter(torch.zeros((2 * config.cross_bias_extent - 1) ** 2, num_heads))
        if config.gathering:
            self.readback_gate = nn.Parameter(torch.zeros(dim))


def per_image_drop_path(drop_path: nn.Module, batch: int, reference: torch.Tensor
                        ) -> Callable[[torch.Tensor], torch.Tensor]:
    """Stochastic depth of one residual branch, drawn once per image of a windowed batch.

    ``drop_path`` is the block's timm ``DropPath`` (or Identity). timm draws one keep/drop per
    row of the tensor it gets, i.e. per window of a ``(B*K, n, C)`` batch; the unaccelerated block
    draws per image. The returned function scales any update whose rows are grouped by image
    (``(B*K, n, C)`` windows, ``(B, K, C)`` gathering tokens) with the same per-image draw, so every
    window and gathering token of an image keeps or loses the branch together. Same keep
    probability and ``scale_by_keep`` as timm's ``drop_path``; identity in eval mode.
    """
    probability = getattr(drop_path, "drop_prob", 0.0)
    if not drop_path.training or not probability:
        return lambda update: update
    keep = 1.0 - probability
    scale = reference.new_empty(batch).bernoulli_(keep)
    if keep > 0.0 and getattr(drop_path, "scale_by_keep", True):
        scale.div_(keep)

    def apply(update: torch.Tensor) -> torch.Tensor:
        return (update.reshape(batch, -1, update.shape[-1]) * scale[:, None, None]).reshape(update.shape)

    return apply


class Stage3Accelerator(nn.Module):
    """Runs a model's stage-3 blocks with migration and/or window attention and gathering tokens.

    Holds only the new parameters; the blocks stay the model's own, so the pre-trained weights
    are used as they are. Called by ``HiViT`` as ``accelerator(model, tokens, grid)``; returns the
    full ``(B, Hp*Wp, C)`` grid and, when tokens migrated, the ``(B, Hp*Wp)`` mask of the positions
    whose tokens stayed through every block (None otherwise).
    """

    def __init__(self, config: AccelerationConfig, dim: int, num_heads: int, depth: int):
        super().__init__()
        self.config = config
        self.gathering = GatheringTokens(dim) if config.gathering else None
        has_layer_parameters = config.gathering or config.position_bias != "none"
        self.layers = (nn.ModuleList([AcceleratedLayer(dim, num_heads, config) for _ in range(depth)])
                       if has_layer_parameters else None)

    def extra_repr(self) -> str:
        return f"variant={self.config.name!r}"

    def forward(self, model: nn.Module, tokens: torch.Tensor, grid: tuple[int, int]
                ) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        batch, num_positions, channels = tokens.shape
        layout = WindowLayout.for_grid(grid, self.config.window_size)
        windows = layout.partition(tokens)  # (B, K, n, C)
        positions = layout.positions(tokens.device)  # (K, n): shared by the batch until a token migrates
        sequences = windows.reshape(batch * layout.num_windows, layout.tokens_per_window, channels)
        if self.gathering is not None:
            valid = (positions < num_positions).expand(batch, -1, -1) if layout.has_padding else None
            gathering = self.gathering(windows, valid).reshape(-1, 1, channels)
            sequences = torch.cat([sequences, gathering], dim=1)
        counts = self.config.migration_counts(grid, len(model.blocks))
        stored_tokens, stored_positions = [], []
        for index, block in enumerate(model.blocks):
            step = partial(self._run_block, index, block, layout, counts.get(index, 0), batch)
            if model.grad_checkpointing and torch.is_grad_enabled():
                sequences, positions, dropped = torch.utils.checkpoint.checkpoint(
                    step, sequences, positions, use_reentrant=False)
            else:
                sequences, positions, dropped = step(sequences, positions)
            if dropped is not None:
                stored_tokens.append(dropped[0].reshape(batch, -1, channels))
                stored_positions.append(dropped[1].reshape(batch, -1))
        kept = sequences.shape[1] - (self.gathering is not None)
        if positions.shape[0] != sequences.shape[0]:
            positions = positions.repeat(batch, 1)
        stayed_positions = positions.reshape(batch, -1)
        all_tokens = torch.cat([sequences[:, :kept].reshape(batch, -1, channels), *stored_tokens], dim=1)
        all_positions = torch.cat([stayed_positions, *stored_positions], dim=1)
        grid_tokens = replenish(all_tokens, all_positions, num_positions)
        if not stored_tokens:
            return grid_tokens, None
        stayed = torch.zeros(batch, num_positions + 1, dtype=torch.bool, device=tokens.device)
        stayed = stayed.scatter(1, stayed_positions, True)[:, :num_positions]
        return grid_tokens, stayed

    def _run_block(self, index: int, block: nn.Module, layout: WindowLayout, drop_count: int, batch: int,
                   sequences: torch.Tensor, positions: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor, Optional[tuple[torch.Tensor, torch.Tensor]]]:
        """One pre-trained block on windows ``sequences`` (B*K, n (+1 gathering token), C) whose
        tokens sit at ``positions`` ((K or B*K), n); returns them and the tokens it migrated."""
        layer = self.layers[index] if self.layers is not None else None
        with_gathering = self.gathering is not None
        count = sequences.shape[1] - with_gathering
        attention = block.attn
        queries, keys, values = attention.project_qkv(block.norm1(sequences))
        dropped = None
        if drop_count:
            if positions.shape[0] != sequences.shape[0]:
                positions = positions.repeat(batch, 1)
            valid = positions < layout.num_positions if layout.has_padding else None
            keep, drop = select_migrated(keys[:, :, :count].mean(dim=1), valid, drop_count)
            dropped = (take_tokens(sequences, drop), take_tokens(positions, drop))
            positions = take_tokens(positions, keep)
            if with_gathering:
                keep = torch.cat([keep, keep.new_full((keep.shape[0], 1), count)], dim=1)
            sequences = take_tokens(sequences, keep)
            queries, keys, values = (take_tokens(t, keep, dim=2) for t in (queries, keys, values))
            count -= drop_count
        window_table = layer.window_bias_table if layer is not None else None
        table_window = as_pair(self.config.window_size) if window_table is not None else layout.window
        bias = window_attention_bias(attention, window_table, table_window, positions, layout, with_gathering)
        attention_drop = per_image_drop_path(block.drop_path, batch, sequences)
        if with_gathering:
            key_mask = None
            if layout.has_padding:
                key_mask = (positions < layout.num_positions).reshape(-1, layout.num_windows * count)[:, None, None]
            cross_biases = None
            if layer.cross_bias_table is not None:
                cross_biases = cross_attention_biases(layer.cross_bias_table, layout, count,
                                                      self.config.cross_bias_extent)
            sequences = attention_with_gathering(block, sequences, queries, keys, values, bias, layer.readback_gate,
                                                 batch, key_mask, cross_biases, attention_drop)
        else:
            heads_out = window_attention(queries, keys, values, bias, batch)
            sequences = sequences + attention_drop(block.ls1(attention.proj(heads_out.transpose(1, 2).flatten(2))))
        mlp_drop = per_image_drop_path(block.drop_path, batch, sequences)
        sequences = sequences + mlp_drop(block.ls2(block.mlp(block.norm2(sequences))))
        return sequences, positions, dropped


def get_acceleration(model: nn.Module) -> AccelerationConfig:
    """The acceleration a model runs with (``baseline`` when none is set)."""
    accelerator = getattr(model, "acceleration", None)
    return VARIANTS["baseline"] if accelerator is None else accelerator.config


def set_acceleration(model: nn.Module, variant: str | AccelerationConfig) -> AccelerationConfig:
    """Switch ``model``'s stage-3 acceleration to ``variant`` (a name of ``VARIANTS`` or a config).

    New parameters start at their neutral values, on the model's device and dtype; parameters the
    previous variant already had under the same name and shape (a fine-tuned gathering token, bias
    tables) are kept. Switch before building the optimizer, and before loading a checkpoint that
    was fine-tuned with the variant. Returns the config now in use.
    """
    config = get_variant(variant) if isinstance(variant, str) else variant
    if not isinstance(config, AccelerationConfig):
        raise TypeError(f"variant must be a name or an AccelerationConfig, got {type(variant).__name__}")
    if not (hasattr(model, "acceleration") and hasattr(model, "blocks") and hasattr(model, "embed_dim")):
        raise TypeError(f"{type(model).__name__} has no stage 3 to accelerate: use a HiViT, iTPN or Fast-iTPN model "
                        f"from itpn.models")
    previous = model.acceleration
    if config.is_baseline:
        model.acceleration = None
        return config
    reference = model.pos_embed
    accelerator = Stage3Accelerator(config, model.embed_dim, model.blocks[0].attn.num_heads, len(model.blocks))
    accelerator = accelerator.to(device=reference.device, dtype=reference.dtype).train(model.training)
    if previous is not None:
        kept = previous.state_dict()
        own = accelerator.state_dict()
        accelerator.load_state_dict({key: value for key, value in kept.items()
                                     if key in own and own[key].shape == value.shape}, strict=False)
    model.acceleration = accelerator
    return config
