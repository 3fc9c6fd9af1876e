"""The effective layout of an acceleration variant at an input size: what a measured point really ran.

A variant's name says what it may do; at a given input size it may do less. Windows of 16 x 16 tokens
over the 4 x 4 token grid of a 64 px image are one window covering the grid (global attention, see
``token_gathering.WindowLayout``), and 10 % migration of a 4-token window drops no token. A result is
therefore recorded with its ``TokenLayout`` (the results store keeps its fields as columns), the
dashboard pairs an accuracy with a speed-up only when their layouts match, and a configuration whose
variant changes nothing at its size is refused (``check_active``).

``effective_layout`` is the one place that computes the layout; it uses the same ``WindowLayout`` and
``migration_counts`` the accelerated forward pass uses, so the record is what ran.

Window size. The paper does not state its window size; its speed numbers (Fig. 5, Table 7) are at
detection inputs of 1024² (a 64 x 64 token grid), where our default of 16 x 16 tokens
(``acceleration.DEFAULT_WINDOW_SIZE``, ours) gives 4 x 4 windows. ``window_size_for`` scales a window to
another grid the same way (4 windows per side: ours, following that relation), e.g. 8 tokens at 512²
and 7 at 224² (14 x 14 grid, ImageNet), where the named 16 would cover the whole grid.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Mapping, Optional

from itpn.records import TokenLayout

from .acceleration import AccelerationConfig, get_variant
from .hivit import PATCH_SIZE
from .token_gathering import WindowLayout, as_pair

WINDOWS_PER_SIDE = 4  # 16-token windows over the 64-token side of a 1024² input (see the module docstring)




def resolve_variant(variant: str | AccelerationConfig, window_size: Optional[int | tuple[int, int]] = None
                    ) -> AccelerationConfig:
    """The acceleration ``variant`` (a name of ``VARIANTS`` or a config) with its windows set to
    ``window_size`` tokens per side when it has windows and a size is given; other variants as they are.
    An unknown name raises ``ValueError`` listing the valid ones."""
    config = get_variant(variant) if isinstance(variant, str) else variant
    if window_size and config.window_size is not None:
        return config.replace(window_size=window_size)
    return config


def window_size_for(input_size: int | tuple[int, int], patch_size: int = PATCH_SIZE) -> int:
    """The window (tokens per side) that splits the grid of ``input_size`` px into ``WINDOWS_PER_SIDE``
    windows along its shorter side, as 16-token windows split a 1024² input (ours; at least 1)."""
    height, width = as_pair(input_size)
    return max(1, min(height, width) // patch_size // WINDOWS_PER_SIDE)


def effective_layout(variant: str | AccelerationConfig, input_size: int | tuple[int, int], depth: int, *,
                     window_size: Optional[int | tuple[int, int]] = None, patch_size: int = PATCH_SIZE
                     ) -> TokenLayout:
    """The ``TokenLayout`` of ``variant`` (with ``window_size`` as in ``resolve_variant``) on an input of
    ``input_size`` px (an int for a square, or (H, W)) through ``depth`` stage-3 layers of a model with
    ``patch_size`` px tokens (16 for every model here). Raises ``ValueError`` for an unknown variant, a
    size that is not a positive multiple of ``patch_size``, or a migration ratio the windows cannot hold."""
    height, width = as_pair(input_size)
    if min(height, width) < patch_size or height % patch_size or width % patch_size:
        raise ValueError(f"input size {height}×{width} px is not a positive multiple of the {patch_size} px tokens")
    config = resolve_variant(variant, window_size)
    grid = (height // patch_size, width // patch_size)
    windows = WindowLayout.for_grid(grid, config.window_size)
    counts = config.migration_counts(grid, depth)
    migrated = ",".join(str(counts.get(layer, 0)) for layer in range(depth)) if counts else ""
    return TokenLayout(
        input_h=height, input_w=width, grid_h=grid[0], grid_w=grid[1],
        windows_h=windows.windows[0], windows_w=windows.windows[1],
        window_h=windows.window[0], window_w=windows.window[1],
        gathering_tokens=windows.num_windows if config.gathering else 0, migrated_per_layer=migrated,
        tokens_left=1.0 - sum(counts.values()) / windows.tokens_per_window,
    )


@dataclass(frozen=True)
class Inactive:
    """A part of ``variant`` that acts on nothing at an input size: ``setting`` (``window_size`` or
    ``migration``) names what to change, ``problem`` says what happens (naming the token grid), ``fix``
    the setting that would make it act."""

    variant: str
    setting: str
    problem: str
    fix: str

    def __str__(self) -> str:
        return f"{self.variant}: {self.problem}; {self.fix}"


class InactiveVariantError(ValueError):
    """Variants that would run as something else than their name says; one ``Inactive`` per variant."""

    def __init__(self, inactive: list[Inactive]) -> None:
        super().__init__("\n".join(map(str, inactive)))
        self.inactive = inactive


def inactive_reason(variant: str | AccelerationConfig, input_size: int | tuple[int, int], depth: int, *,
                    window_size: Optional[int | tuple[int, int]] = None, patch_size: int = PATCH_SIZE
                    ) -> Optional[Inactive]:
    """Why ``variant`` changes less than its name says at ``input_size`` (None when every part of it acts):
    its windows cover the whole token grid (one window is global attention, and gathering tokens and the
    window bias then act on nothing new), or its migration drops no token. Raises ``ValueError`` as
    ``effective_layout`` does."""
    config = resolve_variant(variant, window_size)
    layout = effective_layout(config, input_size, depth, patch_size=patch_size)
    where = f"at {layout.size} px (a {layout.grid_h}×{layout.grid_w} token grid)"
    if config.window_size is not None and (layout.windows_h, layout.windows_w) == (1, 1):
        window = "×".join(map(str, as_pair(config.window_size)))
        largest = max(1, -(-min(layout.grid_h, layout.grid_w) // 2))
        return Inactive(config.name, "window_size", f"windows of {window} tokens cover the whole grid {where}, so "
                        f"it runs as global attention",
                        f"set window_size to at most {largest} (2 windows per side; "
                        f"{window_size_for((layout.input_h, layout.input_w), patch_size)} gives the paper's "
                        f"{WINDOWS_PER_SIDE} per side), or evaluate at "
                        f"{(max(as_pair(config.window_size)) + 1) * patch_size} px or more")
    if config.migration and not layout.migrated_per_layer:
        tokens = layout.window_h * layout.window_w
        return Inactive(config.name, "migration", f"migration drops no token of the {tokens} per window {where}",
                        f"use a migration ratio of at least {0.5 / tokens:.2f} (or migration_r: 1), or a larger "
                        f"input or window")
    return None


def check_active(variants: list[str | AccelerationConfig], input_size: int | tuple[int, int], depth: int, *,
                 window_size: Optional[int | tuple[int, int]] = None) -> None:
    """Refuse a configuration that would record a variant that does not act: raises
    ``InactiveVariantError`` listing every such variant of ``variants`` at ``input_size`` px."""
    found = [reason for variant in variants
             if (reason := inactive_reason(variant, input_size, depth, window_size=window_size)) is not None]
    if found:
        raise InactiveVariantError(found)


def stage3_depth(model_name: str, model_kwargs: Optional[Mapping[str, Any]] = None) -> int:
    """The number of stage-3 layers of ``model_name`` built with ``model_kwargs`` (counted once per process on
    the meta device: no weights are made)."""
    return _stage3_depth(model_name, json.dumps(dict(model_kwargs or {}), sort_keys=True))


@lru_cache(maxsize=None)
def _stage3_depth(model_name: str, model_kwargs: str) -> int:
    import torch

    from . import create_model

    with torch.device("meta"):
        return len(create_model(model_name, **json.loads(model_kwargs)).blocks)
