"""The integral pre-training objective: MIM through the feature pyramid, plus multi-stage MFM.

Paper, sections 3.2-3.4 (equation 4): the backbone and the pyramid run on the visible units only;
the pyramid outputs ``V^s`` (strides 16, 8, 4) are projected to the decoder width, summed per unit,
the masked units are filled with a mask token, and a transformer decoder reconstructs the
per-patch-normalised pixels of the masked units (MIM). MFM adds ``lambda * sum_s ||x^s - h^s(V^s)||``.

Choices made here (the paper is silent or ambiguous; the released code has no MFM):

* **EMA teacher targets.** Section 3.3 feeds the EMA teacher "only the masked patches (x ⊙ M, not
  the entire image)", where section 3.2 defines ``x ⊙ M`` as the student's masked input, whose
  backbone outputs "do not contain the tokens with indices in M". So the teacher sees the same
  visible units as the student, and ``x^s`` is the teacher's last feature of stage s at those
  units: stage-1 units (stride 4) for ``V^3``, stage-2 units (stride 8) for ``V^2``, stage-3
  tokens (stride 16) for ``V^1``. Section 3.4 says ``x^s`` has the resolution of ``V^s`` and
  ``h^s`` is "a linear projection working on each token individually"; that is exactly this.
  Targets are layer-normalised without affine parameters (scale-free, as in data2vec/BEiT-v2)
  and compared with MSE by default.
* **CLIP teacher targets.** CLIP sees the entire (un-masked) image (BEiT practice, as the paper
  says), resized so that its patch grid equals the student's unit grid (224 for ViT-B/16, 196
  for ViT-L/14 at 224 student input), normalised with CLIP's own mean/std from the raw [0, 1]
  image. The target is CLIP's last layer: ``ln_post(patch tokens) @ proj``, layer-normalised
  without affine (as the released iTPN-CLIP code). Each pyramid level is down-sampled to the
  stride-16 grid by space-to-depth inside its unit (a learned linear map of the flattened
  ``k x k`` sub-tokens, so nothing is averaged away), the three are summed, and the sum is
  compared at the visible units with smooth-L1 (iTPN) or cosine (Fast-iTPN).
* The decoder follows the released pixel iTPN: per-level LayerNorm + Linear to ``dim / k^2``
  per sub-token (512/128/32 for a 512-wide decoder), fixed 2-D sin-cos positions, 8 blocks of
  width 512 with 16 heads, a linear layer to 16x16x3 pixels, MSE on the masked units.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional, Sequence

import torch
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import build_sincos2d_pos_embed, trunc_normal_
from timm.models.vision_transformer import Block as DecoderBlock
from torch import nn

from itpn.models import HiViT
from itpn.models.hivit import PATCH_SIZE
from itpn.models.layers import gather_units

from .masking import Mask

MfmMode = Literal["stages", "clip", "none"]
FeatureLoss = Literal["mse", "smooth_l1", "cosine"]
LEVEL_NAMES = ("s16", "s8", "s4")  # order of FeaturePyramid's outputs
LEVEL_SIZES = (1, 2, 4)  # sub-tokens per unit side at each level


def normalize(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """``(B, 3, H, W)`` images in [0, 1] -> ``(images - mean) / std`` per channel."""
    mean_t = torch.as_tensor(mean, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
    std_t = torch.as_tensor(std, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
    return (images - mean_t) / std_t


def patchify(images: torch.Tensor, patch: int = PATCH_SIZE) -> torch.Tensor:
    """``(B, C, H, W)`` -> ``(B, L, patch * patch * C)`` in row-major unit order."""
    batch, channels, height, width = images.shape
    x = images.reshape(batch, channels, height // patch, patch, width // patch, patch)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(batch, (height // patch) * (width // patch), patch * patch * channels)


def feature_loss(prediction: torch.Tensor, target: torch.Tensor, kind: FeatureLoss) -> torch.Tensor:
    """Mean loss between predicted and target features (last dimension = channels)."""
    prediction, target = prediction.float(), target.float()
    if kind == "mse":
        return F.mse_loss(prediction, target)
    if kind == "smooth_l1":
        return F.smooth_l1_loss(prediction, target)
    if kind == "cosine":
        return (1.0 - F.cosine_similarity(prediction, target, dim=-1)).mean()
    raise ValueError(f"unknown MFM loss {kind!r}; use 'mse', 'smooth_l1' or 'cosine'")


def standardize(features: torch.Tensor) -> torch.Tensor:
    """Layer norm without affine parameters: the scale-free form teacher features are compared in."""
    return F.layer_norm(features.float(), features.shape[-1:])


class PixelDecoder(nn.Module):
    """MIM head: pyramid levels -> summed unit tokens -> mask-token fill -> transformer -> pixels."""

    def __init__(self, fpn_dim: int, dim: int = 512, depth: int = 8, num_heads: int = 16,
                 mlp_ratio: float = 4.0, patch: int = PATCH_SIZE, in_chans: int = 3,
                 level_sizes: Sequence[int] = LEVEL_SIZES):
        """``fpn_dim``: channels of every level; ``level_sizes``: sub-tokens per unit side of each level
        (``(1,)`` for the stage-3 tokens alone, when pre-training without the pyramid)."""
        super().__init__()
        if dim % max(level_sizes) ** 2:
            raise ValueError(f"decoder_dim must be a multiple of {max(level_sizes) ** 2} (the finest level has that "
                             f"many sub-tokens per unit), got {dim}")
        self.dim = dim
        self.level_proj = nn.ModuleList([
            nn.Sequential(nn.LayerNorm(fpn_dim), nn.Linear(fpn_dim, dim // (size * size))) for size in level_sizes
        ])
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.blocks = nn.ModuleList([DecoderBlock(dim, num_heads, mlp_ratio, qkv_bias=True) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.pred = nn.Linear(dim, patch * patch * in_chans)
        trunc_normal_(self.mask_token, std=0.02)

    def forward(self, levels: list[torch.Tensor], mask: Mask, grid: tuple[int, int]) -> torch.Tensor:
        """Levels ``(B, L_keep, k, k, F)`` -> pixel predictions ``(B, L, patch*patch*C)`` for every unit."""
        visible = sum(proj(level).flatten(2) for proj, level in zip(self.level_proj, levels))
        batch, num_units = mask.masked.shape
        tokens = self.mask_token.to(visible.dtype).expand(batch, num_units, -1)
        tokens = tokens.scatter(1, mask.ids_keep[:, :, None].expand(-1, -1, self.dim), visible)
        pos = build_sincos2d_pos_embed(list(grid), self.dim, device=tokens.device, dtype=tokens.dtype)
        x = tokens + pos[None]
        for block in self.blocks:
            x = block(x)
        return self.pred(self.norm(x))


class StageFeatureHeads(nn.Module):
    """MFM heads for the EMA teacher: ``h^s`` maps each sub-token of ``V^s`` to the teacher's
    stage feature at the same position (stride 16 <- stage 3, 8 <- stage 2, 4 <- stage 1)."""

    def __init__(self, fpn_dim: int, target_dims: Sequence[int]):
        super().__init__()
        self.heads = nn.ModuleList([nn.Linear(fpn_dim, dim) for dim in target_dims])

    def forward(self, levels: list[torch.Tensor]) -> list[torch.Tensor]:
        return [head(level) for head, level in zip(self.heads, levels)]


class ClipFeatureHead(nn.Module):
    """MFM head for a CLIP teacher: every level down-sampled to the unit grid by a linear map of
    its flattened ``k x k`` sub-tokens, summed, normalised and projected to CLIP's width."""

    def __init__(self, fpn_dim: int, clip_dim: int):
        super().__init__()
        self.level_proj = nn.ModuleList([nn.Linear(fpn_dim * size * size, clip_dim) for size in LEVEL_SIZES])
        self.norm = nn.LayerNorm(clip_dim)
        self.proj = nn.Linear(clip_dim, clip_dim)

    def forward(self, levels: list[torch.Tensor]) -> torch.Tensor:
        summed = sum(proj(level.flatten(2)) for proj, level in zip(self.level_proj, levels))
        return self.proj(self.norm(summed))


@dataclass
class TeacherTargets:
    """What a teacher hands the objective: per-stage features of the visible units (``stages``:
    stride-16 tokens (B, L_keep, C), stride-8 (B, L_keep, 2, 2, C/2), stride-4 (B, L_keep, 4, 4, C/4))
    or CLIP's last layer on the full grid (``clip``: (B, L, D))."""

    stages: Optional[list[torch.Tensor]] = None
    clip: Optional[torch.Tensor] = None


class IntegralPretrainModel(nn.Module):
    """A ``HiViT`` with ``pyramid=True`` (``encoder``, exported unchanged for fine-tuning), the MIM
    pixel decoder and the MFM heads. ``forward`` returns the named loss terms.

    An encoder without the pyramid is the paper's "without integral pre-training" ablation (Table 8,
    first row; Figure 7's HiViT curve): MAE on HiViT, the decoder reading the stage-3 tokens alone
    (``V = U^S``), pixel MIM only."""

    def __init__(self, encoder: HiViT, mfm: MfmMode = "stages", *, clip_dim: Optional[int] = None,
                 mfm_weight: float = 0.3, mfm_loss: FeatureLoss = "mse", decoder_dim: int = 512,
                 decoder_depth: int = 8, decoder_heads: int = 16, norm_pix_loss: bool = True):
        super().__init__()
        if encoder.pyramid is None and mfm != "none":
            raise ValueError("an encoder without the feature pyramid (integral=False: HiViT pre-trained alone, as the "
                             "paper's Table 8 first row) has no pyramid levels for MFM: use teacher='none', or build "
                             "the encoder with pyramid=True")
        if mfm not in ("stages", "clip", "none"):
            raise ValueError(f"mfm must be 'stages', 'clip' or 'none', got {mfm!r}")
        if mfm == "clip" and not clip_dim:
            raise ValueError("mfm='clip' needs clip_dim, the width of the CLIP teacher's output")
        self.encoder = encoder
        self.mfm = mfm
        self.mfm_weight = mfm_weight
        self.mfm_loss = mfm_loss
        self.norm_pix_loss = norm_pix_loss
        if encoder.pyramid is not None:
            fpn_dim = encoder.pyramid.fpn_dim
            self.decoder = PixelDecoder(fpn_dim, decoder_dim, decoder_depth, decoder_heads, in_chans=encoder.in_chans)
        else:  # MAE on HiViT: the decoder reads the stage-3 tokens alone
            self.decoder = PixelDecoder(encoder.embed_dim, decoder_dim, decoder_depth, decoder_heads,
                                        in_chans=encoder.in_chans, level_sizes=(1,))
        dims = (encoder.embed_dim, encoder.embed_dim // 2, encoder.embed_dim // 4)
        self.stage_heads = StageFeatureHeads(fpn_dim, dims) if mfm == "stages" else None
        self.clip_head = ClipFeatureHead(fpn_dim, clip_dim) if mfm == "clip" else None
        for module in (self.decoder, self.stage_heads, self.clip_head):
            if module is not None:
                module.apply(_init_head_weights)

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return {f"encoder.{name}" for name in self.encoder.no_weight_decay()} | {"decoder.mask_token"}

    def forward(self, images: torch.Tensor, mask: Mask, targets: Optional[TeacherTargets] = None
                ) -> dict[str, torch.Tensor]:
        """``images`` in [0, 1]; returns ``loss`` (what is minimised), ``mim`` and one ``mfm_*`` per term."""
        normalized = normalize(images, IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD)
        out = self.encoder.forward_backbone(normalized, mask.ids_keep)
        levels = self.encoder.pyramid(out.stage1, out.stage2, out.tokens, out.layout) \
            if self.encoder.pyramid is not None else [out.tokens[:, :, None, None, :]]
        prediction = self.decoder(levels, mask, out.grid)
        losses = {"mim": self.pixel_loss(prediction, normalized, mask)}
        if self.mfm != "none":
            if targets is None:
                raise ValueError(f"mfm={self.mfm!r} needs teacher targets")
            losses.update(self.feature_losses(levels, mask, targets))
        mfm_terms = [value for name, value in losses.items() if name.startswith("mfm_")]
        losses["loss"] = losses["mim"] + self.mfm_weight * sum(mfm_terms) if mfm_terms else losses["mim"]
        return losses

    def pixel_loss(self, prediction: torch.Tensor, normalized: torch.Tensor, mask: Mask) -> torch.Tensor:
        target = patchify(normalized).float()
        if self.norm_pix_loss:
            mean = target.mean(dim=-1, keepdim=True)
            var = target.var(dim=-1, keepdim=True)
            target = (target - mean) / (var + 1e-6).sqrt()
        per_unit = (prediction.float() - target).pow(2).mean(dim=-1)
        weights = mask.masked.to(per_unit.dtype)
        return (per_unit * weights).sum() / weights.sum()

    def feature_losses(self, levels: list[torch.Tensor], mask: Mask, targets: TeacherTargets
                       ) -> dict[str, torch.Tensor]:
        if self.stage_heads is not None:
            if targets.stages is None:
                raise ValueError("the EMA-teacher MFM heads need per-stage teacher features (targets.stages)")
            predictions = self.stage_heads(levels)
            stage_targets = [targets.stages[0][:, :, None, None, :], *targets.stages[1:]]
            return {f"mfm_{name}": feature_loss(pred, standardize(target), self.mfm_loss)
                    for name, pred, target in zip(LEVEL_NAMES, predictions, stage_targets)}
        if targets.clip is None:
            raise ValueError("the CLIP MFM head needs CLIP teacher features (targets.clip)")
        target = gather_units(targets.clip, mask.ids_keep)
        return {"mfm_clip": feature_loss(self.clip_head(levels), standardize(target), self.mfm_loss)}


def _init_head_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
