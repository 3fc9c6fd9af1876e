"""The pre-training objectives: integral pixel MIM with multi-stage MFM, and released iTPN-CLIP.

``IntegralPretrainModel`` (paper, sections 3.2-3.4, equation 4): the backbone and the pyramid run
on the visible units only; the pyramid outputs ``V^s`` (strides 16, 8, 4) are projected to the
decoder width, summed per unit, the masked units are filled with a mask token, and a transformer
decoder reconstructs the per-patch-normalised pixels of the masked units (MIM). MFM adds
``lambda * sum_s ||x^s - h^s(.)||``. The decoder follows the released pixel iTPN
(``itpn_pixel/models/models_itpn_mim.py``): per-level LayerNorm + Linear to ``dim / k^2`` per
sub-token (512/128/32 for a 512-wide decoder), fixed 2-D sin-cos positions, 8 blocks of width 512
with 16 heads, a linear layer to 16x16x3 pixels, MSE on the masked units.

``ClipDistillModel`` is the released iTPN-CLIP method (``itpn_clip/modeling_pretrain.py``,
``iTPNClipDistill.forward_features_for_pretraining`` and ``forward``; loss in
``engine_for_pretraining.py``, ``train_one_epoch``): no pixel decoder; the stem runs on the whole
image, the masked units are replaced by a learned mask token at the input of stage 3, the pyramid
levels are projected (LN + Linear to D, D/4, D/16 per sub-token), summed per unit, normalised and
mapped by ``lm_head`` to the CLIP width; an auxiliary head (two extra stage-3 blocks on the hidden
state after block ``int(0.75 * depth)``, then LN and ``lm_cls_head``) regresses the same targets;
loss ``L(head) + L(aux)`` over all tokens (the released default), smooth-L1 for iTPN-CLIP, cosine for
Fast-iTPN with CLIP-L (paper section 5.1).

Choices made here (the paper is silent or ambiguous; the released code has no MFM):

* **Position embedding of a masked image.** The released pixel model (``models_itpn.py``,
  ``interpolate_pos_encoding``) compares the number of *visible* tokens with the grid, so every masked
  forward bicubically resamples the position embedding at scale (Hp + 0.1) / Hp before gathering the
  visible positions; here the embedding is gathered as it is (a 3e-5 relative change of the tiny
  fixture's loss; ``tests/pretrain/test_pretrain_recipes.py`` compares without the resampling).

* **Where the EMA-teacher MFM targets are taken** (``mfm_targets``). Section 3.3 feeds the EMA
  teacher "only the masked patches (x ⊙ M, not the entire image)", where section 3.2 defines
  ``x ⊙ M`` as the student's masked input, whose backbone outputs "do not contain the tokens with
  indices in M"; the same section names the term *masked* feature modeling ("the goal is to
  recover the masked features"). Both readings are here:

  - ``masked`` (ours, ``PretrainConfig``'s plain default): the teacher backbone runs on the masked
    units and ``x^s`` is its stage feature there; the student has no feature at a masked unit before
    the decoder fills it, so ``h^s`` maps the decoder's output token of that unit to the ``k x k``
    sub-tokens of level s (ours;
    the released framework figure shows one decoder shared by all levels). Not trivial (MFM
    terms 0.45-0.55 after training).
  - ``visible`` (the paper's, and the ``itpn_pixel`` recipe's: section 3.2's ``x ⊙ M`` is the
    student's masked input, i.e. its visible units): the teacher sees the student's visible units
    and ``x^s`` is its last feature of stage s there (stage-3 tokens for stride 16, stage-2 units
    for 8, stage-1 units for 4; section 3.4); ``h^s`` is a per-token linear map of ``V^s``, as
    section 3.4 says. The target is nearly a copy of what the student has: a least-squares map from
    the student's own stage feature reaches a lower MSE (0.001-0.004) than the trained heads
    (0.03-0.06, against 1.0 for predicting zero), since the stride-8/4 levels hold a linear lateral
    of the student's own stage-1/2 features and the EMA teacher nearly repeats them.

  ``masked`` is the plain default because the visible target undid what MIM learns at demo scale (the
  paper's own MFM gain, under a point in Table 9, cannot show there). Measured on the
  generated data (Fast-iTPN-T, depths 1-1-4, 64 px; 1,000 updates of batch 16 at lr 2e-4 on 1,000
  unlabelled images; fine-tuned 30 epochs on 5 labelled images per class, 200 validation images;
  two pre-training seeds x three fine-tuning seeds): top-1 without pre-training 47.5 % (mean),
  MIM alone 60.5 %, MIM + masked MFM 59.8 %, MIM + visible MFM 50.4 %, below MIM in all six pairs.
  Matching a moving average of itself on the same units rewards features that change little, which
  fits a student that keeps less of what MIM taught it. Masked targets ask for something the
  student cannot copy, as "masked feature modeling" says ("the goal is to recover the masked
  features", section 3.3). Neither target lifts MIM at this scale (the paper's MFM gain is under a
  point: Table 9).

  Targets are layer-normalised without affine parameters (data2vec/BEiT-v2 practice), MSE by default.
* **CLIP teacher.** CLIP sees the entire image (BEiT practice, as the paper says), resized so that
  its patch grid equals the student's unit grid (224 for ViT-B/16, 196 for ViT-L/14 at 224 student
  input, as ``second_input_size`` in the released recipe), normalised with CLIP's own mean/std from
  the [0, 1] image (the released ``ScalingLayerForClip`` assumed [-1, 1] input and fed CLIP
  [0.5, 1]). The target is ``LN_no_affine(ln_post(patch tokens) @ proj)`` (``itpn_clip/clip/
  create_clip.py``, ``clip_distill.get_target``).
* ``clip_visible_distill`` (ours, not the released method): pixel MIM plus ``mfm_weight`` x CLIP
  distillation at the visible units, each level down-sampled to the stride-16 grid by a learned
  linear map of its flattened ``k x k`` sub-tokens, summed, normalised and projected.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import partial
from typing import Literal, Optional, Sequence

import torch
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import trunc_normal_
from timm.models.vision_transformer import Block as DecoderBlock
from torch import nn

from itpn.models import HiViT
from itpn.models.hivit import PATCH_SIZE
from itpn.models.layers import ConvPatchMerge, UnitLayout, gather_units

from .masking import Mask

MfmMode = Literal["stages", "clip_visible", "none"]
MfmTargets = Literal["masked", "visible"]
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
    """Mean loss between predicted and target features (last dimension = channels): ``mse``,
    ``smooth_l1`` (beta 1, as ``nn.SmoothL1Loss()`` in the released iTPN-CLIP engine) averaged over
    every element, or ``cosine``: ``1 - cos`` averaged over tokens."""
    prediction, target = prediction.float(), target.float()
    if kind == "mse":
        return F.mse_loss(prediction, target)
    if kind == "smooth_l1":
        return F.smooth_l1_loss(prediction, target)
    if kind == "cosine":
        return (1.0 - F.cosine_similarity(prediction, target, dim=-1)).mean()
    raise ValueError(f"unknown feature loss {kind!r}; use 'mse', 'smooth_l1' or 'cosine'")


def standardize(features: torch.Tensor) -> torch.Tensor:
    """Layer norm without affine parameters: the scale-free form teacher features are compared in."""
    return F.layer_norm(features.float(), features.shape[-1:])


def mae_sincos_pos_embed(grid: tuple[int, int], dim: int) -> torch.Tensor:
    """``(H*W, dim)`` fixed 2-D sin-cos positions laid out as MAE's ``get_2d_sincos_pos_embed``
    (``itpn_pixel/util/pos_embed.py``): the first half encodes the column, the second the row, each as
    ``[sin(p * w_k), cos(p * w_k)]`` with ``w_k = 10000 ** (-k / (dim / 4))``; computed in float64 as
    there. (timm's ``build_sincos2d_pos_embed`` interleaves the halves differently.)"""
    if dim % 4:
        raise ValueError(f"a 2-D sin-cos position embedding needs a width divisible by 4, got {dim}")
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim / 4))
    rows, cols = torch.meshgrid(torch.arange(grid[0], dtype=torch.float64),
                                torch.arange(grid[1], dtype=torch.float64), indexing="ij")

    def encode(position: torch.Tensor) -> torch.Tensor:
        angles = position.reshape(-1, 1) * omega[None]
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    return torch.cat([encode(cols), encode(rows)], dim=1).float()


def level_projections(fpn_dim: int, dim: int, eps: float = 1e-6,
                      level_sizes: Sequence[int] = LEVEL_SIZES) -> nn.ModuleList:
    """Per pyramid level (strides 16, 8, 4): LayerNorm + Linear to ``dim / k^2`` per sub-token, so the
    ``k x k`` sub-tokens of a unit flatten to ``dim`` (``decoder_embed`` of the released code).
    ``level_sizes`` (``k`` per level): ``(1,)`` for the stage-3 tokens alone (no pyramid)."""
    finest = max(level_sizes) ** 2
    if dim % finest:
        raise ValueError(f"the merged width must be a multiple of {finest} (the finest level has {finest} sub-tokens "
                         f"per unit), got {dim}")
    return nn.ModuleList([nn.Sequential(nn.LayerNorm(fpn_dim, eps=eps), nn.Linear(fpn_dim, dim // (size * size)))
                          for size in level_sizes])


def merge_levels(projections: nn.ModuleList, levels: list[torch.Tensor]) -> torch.Tensor:
    """Levels ``(B, L, k, k, F)`` -> ``(B, L, dim)``: each projected, its sub-tokens flattened in
    row-major order, the three summed (``V = sum_s V^s``, paper section 3.2)."""
    return sum(proj(level).flatten(2) for proj, level in zip(projections, levels))


class PixelDecoder(nn.Module):
    """MIM head: pyramid levels -> summed unit tokens -> mask-token fill -> transformer -> pixels."""

    def __init__(self, fpn_dim: int, dim: int = 512, depth: int = 8, num_heads: int = 16,
                 mlp_ratio: float = 4.0, patch: int = PATCH_SIZE, in_chans: int = 3,
                 level_sizes: Sequence[int] = LEVEL_SIZES):
        """``fpn_dim``: channels of every level; ``level_sizes``: sub-tokens per unit side of each level
        (``(1,)`` for the stage-3 tokens alone, when pre-training without the pyramid)."""
        super().__init__()
        self.dim = dim
        self.level_proj = level_projections(fpn_dim, dim, level_sizes=level_sizes)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        norm_layer = partial(nn.LayerNorm, eps=1e-6)  # as the released decoder (itpn_base_dec512d8b)
        self.blocks = nn.ModuleList([DecoderBlock(dim, num_heads, mlp_ratio, qkv_bias=True, norm_layer=norm_layer)
                                     for _ in range(depth)])
        self.norm = norm_layer(dim)
        self.pred = nn.Linear(dim, patch * patch * in_chans)
        trunc_normal_(self.mask_token, std=0.02)

    def forward(self, levels: list[torch.Tensor], mask: Mask, grid: tuple[int, int]
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Levels ``(B, L_keep, k, k, F)`` -> pixel predictions ``(B, L, patch*patch*C)`` and the
        normalised decoder output ``(B, L, dim)`` of every unit."""
        visible = merge_levels(self.level_proj, levels)
        batch, num_units = mask.masked.shape
        tokens = self.mask_token.to(visible.dtype).expand(batch, num_units, -1)
        tokens = tokens.scatter(1, mask.ids_keep[:, :, None].expand(-1, -1, self.dim), visible)
        x = tokens + mae_sincos_pos_embed(grid, self.dim).to(tokens)[None]
        for block in self.blocks:
            x = block(x)
        x = self.norm(x)
        return self.pred(x), x


class StageFeatureHeads(nn.Module):
    """MFM heads ``h^s`` for the EMA teacher, one per level (stride 16 <- stage 3, 8 <- stage 2,
    4 <- stage 1).

    ``targets="masked"``: a linear map of the decoder's output token of each masked unit to the
    ``k x k`` sub-tokens of the teacher's stage feature there: ``(B, L_m, dim)`` -> ``(B, L_m, k, k, C_s)``.
    ``targets="visible"``: a per-sub-token linear map of ``V^s`` at the visible units:
    ``(B, L_keep, k, k, fpn_dim)`` -> ``(B, L_keep, k, k, C_s)``.
    """

    def __init__(self, in_dim: int, target_dims: Sequence[int], targets: MfmTargets = "masked"):
        super().__init__()
        self.targets = targets
        self.target_dims = tuple(target_dims)
        widths = [dim * size * size if targets == "masked" else dim for dim, size in zip(target_dims, LEVEL_SIZES)]
        self.heads = nn.ModuleList([nn.Linear(in_dim, width) for width in widths])

    def forward(self, inputs: torch.Tensor | list[torch.Tensor]) -> list[torch.Tensor]:
        if self.targets == "visible":
            return [head(level) for head, level in zip(self.heads, inputs)]
        batch, units, _ = inputs.shape
        return [head(inputs).reshape(batch, units, size, size, dim)
                for head, size, dim in zip(self.heads, LEVEL_SIZES, self.target_dims)]


class ClipVisibleHead(nn.Module):
    """Head of ``clip_visible_distill`` (ours): every level down-sampled to the unit grid by a linear
    map of its flattened ``k x k`` sub-tokens, summed, normalised and projected to CLIP's width."""

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
    """What a teacher hands the objective: per-stage features of the units it saw (``stages``:
    stride-16 tokens (B, n, C), stride-8 (B, n, 2, 2, C/2), stride-4 (B, n, 4, 4, C/4); ``n`` is
    L_masked or L_keep by ``mfm_targets``) or CLIP's last layer on the full grid (``clip``: (B, L, D))."""

    stages: Optional[list[torch.Tensor]] = None
    clip: Optional[torch.Tensor] = None


def _init_head_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def _require_pyramid(encoder: HiViT) -> None:
    if encoder.pyramid is None:
        raise ValueError("integral pre-training trains the backbone and the feature pyramid together: build "
                         "the encoder with pyramid=True")


class IntegralPretrainModel(nn.Module):
    """A ``HiViT`` with ``pyramid=True`` (``encoder``, exported unchanged for fine-tuning), the MIM
    pixel decoder and the MFM heads. ``forward`` returns the named loss terms.

    ``mfm``: ``stages`` (EMA teacher, targets at ``mfm_targets`` units), ``clip_visible`` (ours:
    CLIP distillation at the visible units, needs ``clip_dim``) or ``none`` (MIM alone).

    An encoder without the pyramid is the paper's "without integral pre-training" ablation (Table 8,
    first row; Figure 7's HiViT curve): MAE on HiViT, the decoder reading the stage-3 tokens alone
    (``V = U^S``), pixel MIM only. ``sincos_pos_embed`` starts the encoder's position embedding from
    ``mae_sincos_pos_embed`` (``itpn_pixel/models/models_itpn_mim.py``; it stays trainable there too)."""

    def __init__(self, encoder: HiViT, mfm: MfmMode = "stages", *, clip_dim: Optional[int] = None,
                 mfm_weight: float = 0.3, mfm_loss: FeatureLoss = "mse", mfm_targets: MfmTargets = "masked",
                 decoder_dim: int = 512, decoder_depth: int = 8, decoder_heads: int = 16,
                 norm_pix_loss: bool = True, sincos_pos_embed: bool = False):
        super().__init__()
        if encoder.pyramid is None and mfm != "none":
            raise ValueError("an encoder without the feature pyramid (integral=False: HiViT pre-trained alone, as the "
                             "paper's Table 8 first row) has no pyramid levels for MFM: use teacher='none', or build "
                             "the encoder with pyramid=True")
        if mfm not in ("stages", "clip_visible", "none"):
            raise ValueError(f"mfm must be 'stages', 'clip_visible' or 'none', got {mfm!r}")
        if mfm_targets not in ("masked", "visible"):
            raise ValueError(f"mfm_targets must be 'masked' or 'visible', got {mfm_targets!r}")
        if mfm == "clip_visible" and not clip_dim:
            raise ValueError("mfm='clip_visible' needs clip_dim, the width of the CLIP teacher's output")
        self.encoder = encoder
        self.mfm = mfm
        self.mfm_weight = mfm_weight
        self.mfm_loss = mfm_loss
        self.mfm_targets = mfm_targets
        self.norm_pix_loss = norm_pix_loss
        # Without the pyramid (MAE on HiViT) the decoder reads the stage-3 tokens alone.
        fpn_dim = encoder.pyramid.fpn_dim if encoder.pyramid is not None else encoder.embed_dim
        self.decoder = PixelDecoder(fpn_dim, decoder_dim, decoder_depth, decoder_heads, in_chans=encoder.in_chans,
                                    level_sizes=LEVEL_SIZES if encoder.pyramid is not None else (1,))
        dims = (encoder.embed_dim, encoder.embed_dim // 2, encoder.embed_dim // 4)
        head_in = decoder_dim if mfm_targets == "masked" else fpn_dim
        self.stage_heads = StageFeatureHeads(head_in, dims, mfm_targets) if mfm == "stages" else None
        self.clip_head = ClipVisibleHead(fpn_dim, clip_dim) if mfm == "clip_visible" else None
        for module in (self.decoder, self.stage_heads, self.clip_head):
            if module is not None:
                module.apply(_init_head_weights)
        if sincos_pos_embed:  # the released pixel MIM starts the (trainable) encoder positions from sin-cos
            with torch.no_grad():
                encoder.pos_embed.copy_(mae_sincos_pos_embed(encoder.pos_grid, encoder.embed_dim)[None])

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
        prediction, decoded = self.decoder(levels, mask, out.grid)
        losses = {"mim": self.pixel_loss(prediction, normalized, mask)}
        if self.mfm != "none":
            if targets is None:
                raise ValueError(f"mfm={self.mfm!r} needs teacher targets")
            losses.update(self.feature_losses(levels, decoded, mask, targets))
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

    def feature_losses(self, levels: list[torch.Tensor], decoded: torch.Tensor, mask: Mask,
                       targets: TeacherTargets) -> dict[str, torch.Tensor]:
        if self.stage_heads is not None:
            if targets.stages is None:
                raise ValueError("the EMA-teacher MFM heads need per-stage teacher features (targets.stages)")
            if self.mfm_targets == "masked":
                predictions = self.stage_heads(gather_units(decoded, mask.ids_masked))
            else:
                predictions = self.stage_heads(levels)
            stage_targets = [targets.stages[0][:, :, None, None, :], *targets.stages[1:]]
            for prediction, target in zip(predictions, stage_targets):
                if prediction.shape[:2] != target.shape[:2]:
                    raise ValueError(f"MFM targets cover {target.shape[1]} units per image, the heads predict "
                                     f"{prediction.shape[1]} (mfm_targets={self.mfm_targets!r}): feed the teacher "
                                     f"the matching units (EMATeacher(targets=...))")
            return {f"mfm_{name}": feature_loss(pred, standardize(target), self.mfm_loss)
                    for name, pred, target in zip(LEVEL_NAMES, predictions, stage_targets)}
        if targets.clip is None:
            raise ValueError("the CLIP distillation head needs CLIP teacher features (targets.clip)")
        target = gather_units(targets.clip, mask.ids_keep)
        return {"mfm_clip": feature_loss(self.clip_head(levels), standardize(target), self.mfm_loss)}


def aux_block_index(depth: int) -> int:
    """0-based stage-3 block whose output feeds the auxiliary head: ``int(0.75 * depth)``
    (``iTPNClipDistill.forward_features_for_pretraining``: ``if i == int(0.75 * self.depth)``)."""
    return int(0.75 * depth)


class ClipDistillModel(nn.Module):
    """The released iTPN-CLIP pre-training model around a ``HiViT`` with ``pyramid=True``
    (``itpn_clip/modeling_pretrain.py``, ``iTPNClipDistill``); ``encoder`` is exported unchanged.

    ``mask_token`` (1, 1, D) replaces the masked stage-3 input tokens; ``decoder_embed`` projects the
    levels to D, D/4, D/16 per sub-token; ``norm`` + ``lm_head`` map the sum to the CLIP width;
    ``cls_pt_layers`` (two fresh stage-3 blocks, with the drop path of the blocks at
    ``int(0.75 * depth)`` and the next, as ``dpr_cls`` in the released code), ``norm_cls`` and
    ``lm_cls_head`` form the auxiliary head. LayerNorms use eps 1e-6 as the released model, but those of
    ``cls_pt_layers`` PyTorch's 1e-5 (the released ``BlockWithRPE``s there get no ``norm_layer``).

    ``loss``: ``smooth_l1`` (iTPN-CLIP) or ``cosine`` (Fast-iTPN, paper section 5.1); ``targets``:
    ``all`` tokens (the released default) or only the ``masked`` ones (the released alternative, left
    commented out in ``iTPNClipDistill.forward``); ``aux_weight`` scales the auxiliary term (1 released).

    ``mask_at``: where masked units become the mask token. ``stage3`` (iTPN-CLIP, ``modeling_pretrain.py``):
    a (1, 1, D) token replaces the stage-3 input, so the stem and the pyramid's stride-4/8 laterals see every
    pixel. ``embedding`` (Fast-iTPN, ``fast_itpn/modeling_finetune.py``, ``ConvPatchEmbed.forward`` with
    ``bool_masked_pos``): a (1, 1, 16 * D/4) token, laid out as ``unfold`` lays out a 4x4 unit, is blended
    into the patch embedding, so nothing downstream sees a masked unit's pixels. None: ``embedding`` for a
    convolutional (Fast-iTPN) stem, else ``stage3``.
    """

    def __init__(self, encoder: HiViT, clip_dim: int, *, loss: FeatureLoss = "smooth_l1",
                 targets: Literal["all", "masked"] = "all", aux_weight: float = 1.0,
                 mask_at: Optional[Literal["stage3", "embedding"]] = None):
        super().__init__()
        _require_pyramid(encoder)
        if targets not in ("all", "masked"):
            raise ValueError(f"clip_targets must be 'all' or 'masked', got {targets!r}")
        if mask_at not in (None, "stage3", "embedding"):
            raise ValueError(f"mask_at must be 'stage3' or 'embedding', got {mask_at!r}")
        dim = encoder.embed_dim
        conv_stem = isinstance(encoder.stages[0].merge, ConvPatchMerge)
        self.mask_at = mask_at or ("embedding" if conv_stem else "stage3")
        self.encoder = encoder
        self.loss_kind = loss
        self.targets = targets
        self.aux_weight = aux_weight
        self.aux_index = aux_block_index(len(encoder.blocks))
        token_dim = dim if self.mask_at == "stage3" else 16 * (dim // 4)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, token_dim))
        self.decoder_embed = level_projections(encoder.pyramid.fpn_dim, dim, eps=1e-6)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.lm_head = nn.Linear(dim, clip_dim)
        last = len(encoder.blocks) - 1
        self.cls_pt_layers = nn.ModuleList([
            copy.deepcopy(encoder.blocks[min(self.aux_index + offset, last)]) for offset in range(2)])
        self.norm_cls = nn.LayerNorm(dim, eps=1e-6)
        self.lm_cls_head = nn.Linear(dim, clip_dim)
        for module in (self.decoder_embed, self.norm, self.lm_head, self.cls_pt_layers, self.norm_cls,
                       self.lm_cls_head):
            module.apply(encoder._init_weights)  # the copied blocks start afresh, as the released model's
        for module in self.cls_pt_layers.modules():
            if isinstance(module, nn.LayerNorm):
                module.eps = 1e-5  # the released cls_pt_layers are built without the model's norm_layer
        trunc_normal_(self.mask_token, std=0.02)

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return {f"encoder.{name}" for name in self.encoder.no_weight_decay()}

    def forward_features(self, images: torch.Tensor, mask: Mask) -> tuple[torch.Tensor, torch.Tensor]:
        """``images`` in [0, 1] ``(B, 3, H, W)`` -> (head input ``(B, L, D)``: the normalised sum of the
        projected levels; auxiliary input ``(B, L, D)``: the normalised output of ``cls_pt_layers``)."""
        encoder = self.encoder
        if encoder.acceleration is not None:
            raise ValueError("token migration and gathering accelerate fine-tuning and inference, not masked "
                             "pre-training: call itpn.models.set_acceleration(model, 'baseline') first")
        cfg = getattr(encoder, "pretrained_cfg", None) or {}
        normalized = normalize(images, cfg.get("mean", IMAGENET_DEFAULT_MEAN), cfg.get("std", IMAGENET_DEFAULT_STD))
        grid = encoder.check_input(normalized)
        if self.mask_at == "embedding":
            units = encoder.patch_embed(normalized)
            channels = units.shape[-1]  # unfold's order: channel-major over the 4x4 sub-tokens
            token = self.mask_token.to(units.dtype).view(channels, 4, 4).permute(1, 2, 0)
            masked = mask.masked[:, :, None, None, None].to(units.dtype)
            stage1, stage2, tokens = encoder.forward_stages(units * (1 - masked) + token * masked, UnitLayout(grid))
        else:
            stage1, stage2, tokens = encoder.forward_stem(normalized)  # the whole image
            masked = mask.masked[:, :, None].to(tokens.dtype)
            tokens = tokens * (1 - masked) + self.mask_token.to(tokens.dtype) * masked
        x = encoder.pos_drop(tokens + encoder.position_embedding(grid))
        biases = encoder.attention_biases(grid)
        hidden = x
        for index, (block, bias) in enumerate(zip(encoder.blocks, biases)):
            x = encoder._run(block, x, bias)
            if index == self.aux_index:
                hidden = x
        levels = encoder.pyramid(stage1, stage2, x, UnitLayout(grid))
        for block in self.cls_pt_layers:
            hidden = encoder._run(block, hidden, block.attn.position_bias(grid))
        return self.norm(merge_levels(self.decoder_embed, levels)), self.norm_cls(hidden)

    def forward(self, images: torch.Tensor, mask: Mask, targets: Optional[TeacherTargets] = None
                ) -> dict[str, torch.Tensor]:
        """Returns ``loss`` = ``clip`` + ``aux_weight`` x ``clip_aux``; the targets are
        ``LN_no_affine(CLIP tokens)`` of ``targets.clip`` ``(B, L, clip_dim)``."""
        if targets is None or targets.clip is None:
            raise ValueError("the CLIP mode needs CLIP teacher features (targets.clip)")
        features, aux = self.forward_features(images, mask)
        prediction, aux_prediction = self.lm_head(features), self.lm_cls_head(aux)
        target = standardize(targets.clip)
        if self.targets == "masked":
            prediction, aux_prediction, target = (value[mask.masked] for value in (prediction, aux_prediction, target))
        losses = {"clip": feature_loss(prediction, target, self.loss_kind),
                  "clip_aux": feature_loss(aux_prediction, target, self.loss_kind)}
        losses["loss"] = losses["clip"] + self.aux_weight * losses["clip_aux"]
        return losses
