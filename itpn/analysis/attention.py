"""Attention maps of one query token (the paper's Figure 6).

Figure 6 of Fast-iTPN (Tian et al.) compares, for iTPN, the variant without integral pre-training and
the MIM baseline, "the attention map between the query and other tokens at the corresponding
transformer block", the query drawn as a red block, on 224x224 inputs (512x512 for COCO). Here that
is the softmax row of the query token in one stage-3 block of a HiViT / iTPN / Fast-iTPN encoder,
averaged over heads (our choice: the paper does not say how its maps combine heads), drawn over the
image with the query cell outlined in red.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from itpn.models.acceleration import get_acceleration
from itpn.models.hivit import PATCH_SIZE

# The colour the paper marks the query with (Figure 6: "the red block indicates the query token").
QUERY_COLOUR = (255, 0, 0)


@dataclass(frozen=True)
class QueryAttention:
    """The attention of one query token over the token grid.

    ``probs``: ``(heads, H, W)`` softmax weights of the query row (each head sums to 1 over the grid);
    ``mean``: ``(H, W)`` their mean over heads; ``query``: the query's ``(row, column)`` in tokens;
    ``block``: the stage-3 block index (0-based, as ``model.blocks``)."""

    probs: torch.Tensor
    query: tuple[int, int]
    block: int

    @property
    def mean(self) -> torch.Tensor:
        return self.probs.mean(0)


def query_token(query_xy: tuple[int, int], image_size: tuple[int, int]) -> tuple[int, int]:
    """The stage-3 token ``(row, column)`` holding pixel ``(x, y)`` of an ``(H, W)`` input (16-pixel
    tokens). Raises ``ValueError`` naming the image size when the pixel lies outside it."""
    x, y = query_xy
    height, width = image_size
    if not (0 <= x < width and 0 <= y < height):
        raise ValueError(f"query pixel x={x}, y={y} lies outside the {width}x{height} input (x in 0..{width - 1}, "
                         f"y in 0..{height - 1}, in pixels of the resized image)")
    return y // PATCH_SIZE, x // PATCH_SIZE


@torch.no_grad()
def query_attention(model: nn.Module, image: torch.Tensor, block: int, query_xy: tuple[int, int]) -> QueryAttention:
    """Attention weights of the token at pixel ``query_xy`` in stage-3 block ``block``.

    ``image``: ``(1, 3, H, W)``, normalised as the model expects, H and W multiples of 16. The block's
    input is captured with a forward pre-hook during a normal forward; its queries and keys are then
    projected by the block's own ``norm1`` and ``attn.project_qkv``, scaled by ``head_dim ** -0.5``
    (``scaled_dot_product_attention``'s default, the one the model runs with) and the relative position
    bias added before the softmax, exactly as the block attends.

    Raises ``ValueError`` for a batch of more than one image, a block index outside the model's stage-3
    blocks, a query outside the image, or a model running an acceleration variant (windows, migration
    and gathering change which tokens a query sees: switch to ``baseline`` first).
    """
    if image.dim() != 4 or image.shape[0] != 1:
        raise ValueError(f"expected one image as a (1, 3, H, W) tensor, got shape {tuple(image.shape)}")
    blocks = getattr(model, "blocks", None)
    if blocks is None:
        raise TypeError(f"{type(model).__name__} has no stage-3 blocks: use a HiViT, iTPN or Fast-iTPN model")
    if not 0 <= block < len(blocks):
        raise ValueError(f"block {block} does not exist: the model has {len(blocks)} stage-3 blocks (0..{len(blocks) - 1})")
    variant = get_acceleration(model)
    if not variant.is_baseline:
        raise ValueError(f"the model runs the acceleration variant {variant.name!r}, whose attention is not one "
                         f"softmax over the whole grid: set_acceleration(model, 'baseline') first")
    grid = (image.shape[-2] // PATCH_SIZE, image.shape[-1] // PATCH_SIZE)
    row, column = query_token(query_xy, tuple(image.shape[-2:]))
    captured: dict[str, torch.Tensor | None] = {}

    def capture(_module: nn.Module, args: tuple) -> None:
        captured["x"] = args[0]
        captured["bias"] = args[1] if len(args) > 1 else None

    target = blocks[block]
    handle = target.register_forward_pre_hook(capture)
    try:
        model.eval()
        model.forward_backbone(image)
    finally:
        handle.remove()
    q, k, _ = target.attn.project_qkv(target.norm1(captured["x"]))
    index = row * grid[1] + column
    scores = (q[0, :, index, None] @ k[0].transpose(-1, -2))[:, 0] * q.shape[-1] ** -0.5  # (heads, N)
    bias = captured["bias"]
    if bias is not None:
        scores = scores + bias.reshape(-1, *bias.shape[-2:])[:, index].to(scores.dtype)
    probs = scores.softmax(-1).reshape(-1, *grid)
    return QueryAttention(probs=probs.float().cpu(), query=(row, column), block=block)


def draw_attention(image: Image.Image, attention: QueryAttention, alpha: float = 0.5) -> Image.Image:
    """``image`` (the resized input, RGB) with ``attention.mean`` as a heat map over it, min-max scaled to
    [0, 1] and coloured with matplotlib's ``jet`` (the colour map of the paper's Figure 6), and the query
    token outlined in red. Returns an RGB image of the input's size."""
    from matplotlib import colormaps

    heat = attention.mean.numpy()
    span = float(heat.max() - heat.min())
    heat = (heat - heat.min()) / span if span > 0 else np.zeros_like(heat)
    coloured = (colormaps["jet"](heat)[..., :3] * 255).astype(np.uint8)
    overlay = Image.fromarray(coloured).resize(image.size, Image.Resampling.NEAREST)
    out = Image.blend(image.convert("RGB"), overlay, alpha)
    pixels = np.asarray(out).copy()
    row, column = attention.query
    top, left = row * PATCH_SIZE, column * PATCH_SIZE
    bottom, right = top + PATCH_SIZE - 1, left + PATCH_SIZE - 1
    pixels[top:bottom + 1, [left, left + 1, right - 1, right]] = QUERY_COLOUR
    pixels[[top, top + 1, bottom - 1, bottom], left:right + 1] = QUERY_COLOUR
    return Image.fromarray(pixels)


def attention_figure(model: nn.Module, image_path: str | Path, block: int, query_xy: tuple[int, int],
                     size: int = 224, mean: tuple[float, ...] = (0.485, 0.456, 0.406),
                     std: tuple[float, ...] = (0.229, 0.224, 0.225)) -> tuple[Image.Image, QueryAttention]:
    """Read ``image_path``, resize it to ``size`` x ``size`` (bicubic), normalise with ``mean``/``std``
    (ImageNet's by default, as the models' ``default_cfg``), and return the drawn map and the weights.
    ``query_xy`` is in pixels of the resized image. Raises ``FileNotFoundError`` / ``ValueError`` naming
    the file when it is missing or not an image, and ``ValueError`` for a size that is not a multiple of 16."""
    path = Path(image_path)
    if size % PATCH_SIZE:
        raise ValueError(f"size {size} is not a multiple of {PATCH_SIZE} (the models' token size): use "
                         f"{-(-size // PATCH_SIZE) * PATCH_SIZE}")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such image file")
    try:
        with Image.open(path) as opened:
            picture = opened.convert("RGB").resize((size, size), Image.Resampling.BICUBIC)
    except (OSError, SyntaxError) as exc:
        raise ValueError(f"{path}: not an image PIL can read ({exc})") from exc
    pixels = torch.from_numpy(np.asarray(picture, dtype=np.float32) / 255.0).permute(2, 0, 1)
    pixels = (pixels - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]
    parameter = next(model.parameters())
    attention = query_attention(model, pixels[None].to(parameter.device, parameter.dtype), block, query_xy)
    return draw_attention(picture, attention), attention
