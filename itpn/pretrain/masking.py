"""Which 16x16 units of an image the student sees.

HiViT mixes nothing across a unit boundary before stage 3, so a masked image is simply the
list of its visible units: ``ids_keep`` goes to ``HiViT.forward_backbone`` and the masked units
never enter the backbone. Every sample of a batch masks the same number of units (the gathers
stay rectangular); block-wise masks are topped up or trimmed at random to that number.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

MaskMode = Literal["random", "block"]


@dataclass
class Mask:
    """``ids_keep`` (B, L_keep) / ``ids_masked`` (B, L_masked) index the flattened unit grid, sorted
    ascending; ``masked`` (B, L) is True where a unit is hidden from the student."""

    ids_keep: torch.Tensor
    ids_masked: torch.Tensor
    masked: torch.Tensor

    def to(self, device: torch.device | str) -> "Mask":
        return Mask(self.ids_keep.to(device), self.ids_masked.to(device), self.masked.to(device))


class MaskGenerator:
    """Masks of ``round(mask_ratio * L)`` units on a ``grid`` of units.

    ``mode="random"`` is MAE's uniform masking; ``mode="block"`` is BEiT's block-wise masking
    (rectangles of at least ``min_block`` units with aspect ratio in [0.3, 1/0.3]).
    Randomness comes only from the ``torch.Generator`` passed in, so a mask is reproducible.
    """

    def __init__(self, grid: tuple[int, int], mask_ratio: float = 0.75, mode: MaskMode = "random",
                 min_block: int = 16):
        if not 0.0 < mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be strictly between 0 and 1, got {mask_ratio}")
        if mode not in ("random", "block"):
            raise ValueError(f"mask mode must be 'random' or 'block', got {mode!r}")
        self.grid = tuple(grid)
        self.num_units = grid[0] * grid[1]
        self.num_masked = int(round(mask_ratio * self.num_units))
        if not 0 < self.num_masked < self.num_units:
            raise ValueError(f"mask_ratio {mask_ratio} on a {grid[0]}x{grid[1]} grid masks {self.num_masked} of "
                             f"{self.num_units} units; at least one must be masked and one visible")
        self.mode = mode
        self.min_block = min(min_block, self.num_masked)

    def __call__(self, batch: int, generator: torch.Generator) -> Mask:
        if self.mode == "random":
            scores = torch.rand(batch, self.num_units, generator=generator)
        else:
            scores = torch.stack([self._block_scores(generator) for _ in range(batch)])
        # The num_masked highest scores are masked; block units score above 1, the rest in [0, 1).
        order = torch.argsort(scores, dim=1, descending=True)
        ids_masked = order[:, :self.num_masked].sort(dim=1).values
        ids_keep = order[:, self.num_masked:].sort(dim=1).values
        masked = torch.zeros(batch, self.num_units, dtype=torch.bool)
        masked.scatter_(1, ids_masked, True)
        return Mask(ids_keep, ids_masked, masked)

    def per_sample(self, seeds: list[int]) -> Mask:
        """One mask per sample, each drawn from its own seed: a sample's mask then depends on its
        position in the data order only, not on how a global batch is split over processes."""
        masks = [self(1, torch.Generator().manual_seed(seed)) for seed in seeds]
        return Mask(*(torch.cat([getattr(mask, name) for mask in masks])
                      for name in ("ids_keep", "ids_masked", "masked")))

    def _block_scores(self, generator: torch.Generator) -> torch.Tensor:
        """Scores whose top ``num_masked`` form BEiT blocks, topped up (or trimmed) at random."""
        height, width = self.grid
        in_block = torch.zeros(height, width, dtype=torch.bool)
        for _attempt in range(100 * self.num_masked):
            remaining = self.num_masked - int(in_block.sum())
            if remaining < self.min_block:
                break
            uniform = torch.rand(3, generator=generator).tolist()
            area = self.min_block + uniform[0] * (remaining - self.min_block)
            log_ratio = math.log(0.3) + uniform[1] * (math.log(1 / 0.3) - math.log(0.3))
            block_h = int(round(math.sqrt(area * math.exp(log_ratio))))
            block_w = int(round(math.sqrt(area / math.exp(log_ratio))))
            if not (0 < block_h <= height and 0 < block_w <= width):
                continue
            top = int(uniform[2] * (height - block_h + 1))
            left = int(torch.randint(0, width - block_w + 1, (1,), generator=generator))
            in_block[top:top + block_h, left:left + block_w] = True
        return in_block.flatten().float() + torch.rand(self.num_units, generator=generator)
