"""Which 16x16 units of an image the student sees.

HiViT mixes nothing across a unit boundary before stage 3, so a masked image is simply the
list of its visible units: ``ids_keep`` goes to ``HiViT.forward_backbone`` and the masked units
never enter the backbone. Every sample of a batch then masks the same number of units (the gathers
stay rectangular); block-wise masks for those objectives are topped up or trimmed at random to that
number (``mode="block"``, ours). The released iTPN-CLIP objective replaces masked tokens by a mask
token instead of dropping them, so its masks may differ in size: ``mode="beit"`` is the released
``MaskingGenerator`` (``itpn_clip/masking_generator.py``), which never exceeds the count and may stop short.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Optional

import torch

MaskMode = Literal["random", "block", "beit"]
MASK_MODES = ("random", "block", "beit")


@dataclass
class Mask:
    """``ids_keep`` (B, L_keep) / ``ids_masked`` (B, L_masked) index the flattened unit grid, sorted
    ascending (None when the samples mask different numbers of units, ``mode="beit"``); ``masked``
    (B, L) is True where a unit is hidden from the student."""

    ids_keep: Optional[torch.Tensor]
    ids_masked: Optional[torch.Tensor]
    masked: torch.Tensor

    def to(self, device: torch.device | str) -> "Mask":
        ids = [None if ids is None else ids.to(device) for ids in (self.ids_keep, self.ids_masked)]
        return Mask(*ids, self.masked.to(device))


class MaskGenerator:
    """Masks of ``round(mask_ratio * L)`` units on a ``grid`` of units.

    ``mode="random"`` is MAE's uniform masking; ``mode="block"`` is BEiT's block-wise masking
    (rectangles of at least ``min_block`` units with aspect ratio in [0.3, 1/0.3]) topped up or
    trimmed to exactly the count (ours, for the objectives that drop masked units); ``mode="beit"``
    the released generator: at most the count, blocks of ``min_block`` to the count's units.
    Randomness comes only from the ``torch.Generator`` passed in, so a mask is reproducible.
    """

    def __init__(self, grid: tuple[int, int], mask_ratio: float = 0.75, mode: MaskMode = "random",
                 min_block: int = 16):
        if not 0.0 < mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be strictly between 0 and 1, got {mask_ratio}")
        if mode not in MASK_MODES:
            raise ValueError(f"mask mode must be one of {MASK_MODES}, got {mode!r}")
        self.grid = tuple(grid)
        self.num_units = grid[0] * grid[1]
        self.num_masked = int(round(mask_ratio * self.num_units))
        if not 0 < self.num_masked < self.num_units:
            raise ValueError(f"mask_ratio {mask_ratio} on a {grid[0]}x{grid[1]} grid masks {self.num_masked} of "
                             f"{self.num_units} units; at least one must be masked and one visible")
        self.mode = mode
        self.min_block = min(min_block, self.num_masked)

    def __call__(self, batch: int, generator: torch.Generator) -> Mask:
        if self.mode == "beit":
            masked = torch.stack([self._beit_mask(generator).flatten() for _ in range(batch)])
            return Mask(None, None, masked)
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
        masked = torch.cat([mask.masked for mask in masks])
        if self.mode == "beit":
            return Mask(None, None, masked)
        return Mask(torch.cat([mask.ids_keep for mask in masks]), torch.cat([mask.ids_masked for mask in masks]),
                    masked)

    def _uniform(self, low: float, high: float, generator: torch.Generator) -> float:
        return low + (high - low) * float(torch.rand((), generator=generator))

    def _beit_mask(self, generator: torch.Generator) -> torch.Tensor:
        """``MaskingGenerator.__call__`` of the released ``masking_generator.py`` (``max_num_patches`` = the
        count): blocks of area uniform in [min_block, what is left], log-uniform aspect in [0.3, 1/0.3],
        each kept only if it adds units without passing the count; up to 10 tries per block, and the
        mask ends when a block adds nothing, so it may stop short of the count."""
        height, width = self.grid
        mask = torch.zeros(height, width, dtype=torch.bool)
        count = 0
        while count < self.num_masked:
            budget = self.num_masked - count
            added = 0
            for _attempt in range(10):
                area = self._uniform(self.min_block, budget, generator)
                aspect = math.exp(self._uniform(math.log(0.3), math.log(1 / 0.3), generator))
                block_h, block_w = int(round(math.sqrt(area * aspect))), int(round(math.sqrt(area / aspect)))
                if block_w < width and block_h < height:
                    top = int(torch.randint(0, height - block_h + 1, (), generator=generator))
                    left = int(torch.randint(0, width - block_w + 1, (), generator=generator))
                    new = block_h * block_w - int(mask[top:top + block_h, left:left + block_w].sum())
                    if 0 < new <= budget:
                        mask[top:top + block_h, left:left + block_w] = True
                        added += new
                if added:
                    break
            if not added:
                break
            count += added
        return mask

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
