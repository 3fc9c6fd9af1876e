"""HiViT: a hierarchical ViT whose first two stages are MLP-only and whose last stage is a ViT.

HiViT (Zhang et al., 2022) is the backbone of iTPN and Fast-iTPN; this class carries all three:
iTPN adds the feature pyramid (``pyramid=True``), Fast-iTPN also switches the stem to ConvMLP
blocks and conv merges (``conv_stem=True``) and stage 3 to SwiGLU with sub-LN and LayerScale.
The released iTPN/Fast-iTPN factories live in ``itpn.py`` / ``fast_itpn.py``.
``init_values`` puts LayerScale in every stage-3 block, ``stem_init_values`` in every stem block (the
released iTPN-CLIP scripts pass ``--layer_scale_init_value 0.1`` to both; Fast-iTPN's stem has none).
``cmlp=False`` is the paper's Table 9 ablation (rows marked *): a 3x3 depthwise convolution in every
stem and pyramid block instead of the channel-only C-MLP (``layers.ConvMixMlp``).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial
from typing import Any, Mapping, Optional

import torch
import torch.utils.checkpoint
from torch import nn
from timm.layers import resample_abs_pos_embed, trunc_normal_
from timm.models import generate_default_cfgs, register_model

from .layers import (
    Block,
    ConvPatchMerge,
    MlpBlock,
    MlpStage,
    PatchEmbed,
    PatchMerge,
    UnitLayout,
    gather_units,
    relative_position_index,
    units_to_map,
)
from .pyramid import FeaturePyramid
from ._registry import create_backbone, default_cfg
from .checkpoint import is_official_layout, load_state_dict_checked

log = logging.getLogger(__name__)

PATCH_SIZE = 16


@dataclass
class BackboneOutput:
    """What the backbone hands to the pyramid and the heads.

    ``stage1``/``stage2`` are unit tensors ``(B, L, 4, 4, C/4)`` / ``(B, L, 2, 2, C/2)``,
    ``tokens`` the stage-3 output ``(B, L, C)``; ``L`` counts all units of the ``grid``
    or, for a masked forward, the visible units ``ids_keep``. ``stayed`` ``(B, L)`` marks the
    tokens that went through every stage-3 block when token migration is on (None otherwise).
    """

    stage1: torch.Tensor
    stage2: torch.Tensor
    tokens: torch.Tensor
    grid: tuple[int, int]
    ids_keep: Optional[torch.Tensor] = None
    stayed: Optional[torch.Tensor] = None

    @property
    def layout(self) -> UnitLayout:
        """Where the units sit (what the pyramid's convolutional blocks need)."""
        return UnitLayout(self.grid, self.ids_keep)


GLOBAL_POOLS = ("avg", "avg_stayed")


class HiViT(nn.Module):
    def __init__(
        self,
        img_size: int | tuple[int, int] = 224,
        in_chans: int = 3,
        num_classes: int = 1000,
        embed_dim: int = 512,
        depths: tuple[int, int, int] = (2, 2, 20),
        num_heads: int = 8,
        stem_mlp_ratio: float = 3.0,
        mlp_ratio: float = 4.0,
        qkv_bias: str = "qkv",
        patch_norm: bool = True,
        conv_stem: bool = False,
        swiglu: bool = False,
        sub_ln: bool = False,
        init_values: Optional[float] = None,
        stem_init_values: Optional[float] = None,
        rpe: bool = False,
        final_norm: str = "post_pool",
        global_pool: str = "avg",
        pyramid: bool = False,
        cmlp: bool = True,
        fpn_dim: int = 256,
        fpn_depth: int = 1,
        pyramid_extra_levels: int = 0,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        head_init_scale: float = 0.001,
        norm_eps: float = 1e-6,
        **unused: Any,
    ):
        super().__init__()
        if unused:
            raise TypeError(f"unknown model arguments: {sorted(unused)}")
        if final_norm not in ("pre_pool", "post_pool"):
            raise ValueError(f"final_norm must be 'pre_pool' or 'post_pool', got {final_norm!r}")
        if global_pool not in GLOBAL_POOLS:
            raise ValueError(f"global_pool must be one of {GLOBAL_POOLS}, got {global_pool!r}")
        if pyramid and num_classes:
            raise ValueError("a model with the feature pyramid is a dense-prediction backbone: "
                             f"build it with num_classes=0 (got num_classes={num_classes})")
        img_size = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
        norm_layer = partial(nn.LayerNorm, eps=norm_eps)
        self.in_chans = in_chans
        self.num_classes = num_classes
        self.embed_dim = self.num_features = embed_dim
        self.depths = tuple(depths)
        self.final_norm = final_norm
        self.global_pool = global_pool
        self.pyramid_extra_levels = pyramid_extra_levels
        self.pos_grid = (img_size[0] // PATCH_SIZE, img_size[1] // PATCH_SIZE)
        self.grad_checkpointing = False
        dims = (embed_dim // 4, embed_dim // 2, embed_dim)
        drop_path = iter(drop_path_rate * i / max(sum(depths) - 1, 1) for i in range(sum(depths)))

        self.patch_embed = PatchEmbed(in_chans, dims[0], PATCH_SIZE, norm_layer=norm_layer if patch_norm else None)
        merge_cls = ConvPatchMerge if conv_stem else PatchMerge
        self.stages = nn.ModuleList([
            MlpStage([MlpBlock(dim, stem_mlp_ratio, norm_layer, next(drop_path), sub_ln=conv_stem and sub_ln,
                               conv=not cmlp, init_values=stem_init_values)
                      for _ in range(depth)], merge_cls(dim, norm_layer))
            for dim, depth in zip(dims[:2], depths[:2])
        ])
        self.pos_embed = nn.Parameter(torch.zeros(1, self.pos_grid[0] * self.pos_grid[1], embed_dim))
        self.pos_drop = nn.Dropout(drop_rate)
        self.blocks = nn.ModuleList([
            Block(embed_dim, num_heads, mlp_ratio, norm_layer, qkv_bias=qkv_bias, swiglu=swiglu, sub_ln=sub_ln,
                  init_values=init_values, drop_path=next(drop_path), rpe_grid=self.pos_grid if rpe else None)
            for _ in range(depths[2])
        ])
        self.pyramid = FeaturePyramid(dims, fpn_dim, fpn_depth, norm_layer=norm_layer, conv=not cmlp) \
            if pyramid else None
        # Token migration / gathering of stage 3 (itpn.models.acceleration.set_acceleration); None runs it plainly.
        self.register_module("acceleration", None)
        self.norm = norm_layer(embed_dim) if final_norm == "pre_pool" and num_classes else nn.Identity()
        self.fc_norm = norm_layer(embed_dim) if final_norm == "post_pool" and num_classes else nn.Identity()
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(embed_dim, num_classes) if num_classes else nn.Identity()

        trunc_normal_(self.pos_embed, std=0.02)
        self.apply(self._init_weights)
        if isinstance(self.head, nn.Linear):
            self.head.weight.data.mul_(head_init_scale)
            self.head.bias.data.mul_(head_init_scale)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    # --- timm model interface -------------------------------------------------------------
    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return {"pos_embed"} | {name for name, _ in self.named_parameters()
                                if "relative_position_bias_table" in name or name.startswith("acceleration.")}

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        """timm's layer grouping, as the released Fast-iTPN fine-tuning numbers layers
        (``fast_itpn/run_class_finetuning.py`` with ``optim_factory.get_num_layer_for_vit``): the patch
        and position embeddings are layer 0, then every stem block, every merge and every stage-3
        block is a layer of its own in the order the released flat ``blocks`` list holds them
        (``get_num_layers() = len(blocks)`` counts the merges), and everything after the blocks (norm,
        head, the pyramid) is the top layer. ``timm.optim.param_groups_layer_decay`` then scales layer
        ``i`` of ``L + 2`` by ``decay ** (L + 1 - i)``, the released rule. The iTPN fine-tuning scripts
        number layers differently (``itpn.finetune.optim``). The merge's suffix only has to sort after
        any block index of its stage and differ from timm's ``MATCH_PREV_GROUP`` (99999)."""
        return dict(
            stem=r"^pos_embed|^patch_embed",
            stages=[(r"^stages\.(\d+)\.blocks\.(\d+)", None), (r"^stages\.(\d+)\.merge", (99998,))],
            blocks=r"^blocks\.(\d+)",
        )

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        if num_classes and self.pyramid is not None:
            raise ValueError("a model with the feature pyramid takes no classifier")
        if global_pool is not None:
            if global_pool not in GLOBAL_POOLS:
                raise ValueError(f"global_pool must be one of {GLOBAL_POOLS}, got {global_pool!r}")
            self.global_pool = global_pool
        norm_layer = partial(nn.LayerNorm, eps=self.blocks[0].norm1.eps)
        if num_classes and not self.num_classes:
            self.norm = norm_layer(self.embed_dim) if self.final_norm == "pre_pool" else nn.Identity()
            self.fc_norm = norm_layer(self.embed_dim) if self.final_norm == "post_pool" else nn.Identity()
        self.num_classes = num_classes
        self.head = nn.Linear(self.embed_dim, num_classes) if num_classes else nn.Identity()

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False):
        """``nn.Module.load_state_dict``, except that a released checkpoint's layout, or (``strict``) any
        state dict that does not fit exactly, goes through :func:`itpn.models.load_checkpoint`'s rules:
        conversion, pre-training keys dropped, position tables resampled, errors that name the fix.
        ``timm.create_model(name, checkpoint_path=...)`` lands here (timm loads the file and calls this)."""
        target = self.state_dict()
        exact = set(state_dict) == set(target) and all(
            getattr(state_dict[k], "shape", None) == v.shape for k, v in target.items())
        if not is_official_layout(dict(state_dict)) and (exact or not strict):
            return super().load_state_dict(state_dict, strict=strict, assign=assign)
        report = load_state_dict_checked(self, dict(state_dict), "state dict", strict=strict)
        log.info("%s", report.summary())
        return nn.modules.module._IncompatibleKeys(report.initialised, [])

    # --- forward ----------------------------------------------------------------------------
    def check_input(self, x: torch.Tensor) -> tuple[int, int]:
        if x.dim() != 4:
            raise ValueError(f"expected an image batch (B, C, H, W), got a tensor of shape {tuple(x.shape)}")
        if x.shape[1] != self.in_chans:
            raise ValueError(f"the model takes {self.in_chans}-channel images, got {x.shape[1]} channels "
                             f"(input shape {tuple(x.shape)}); build it with in_chans={x.shape[1]} to change that")
        height, width = x.shape[-2:]
        if height % PATCH_SIZE or width % PATCH_SIZE:
            raise ValueError(f"image size {height}x{width} is not a multiple of {PATCH_SIZE}: resize or pad it to "
                             f"{-(-height // PATCH_SIZE) * PATCH_SIZE}x{-(-width // PATCH_SIZE) * PATCH_SIZE}")
        return height // PATCH_SIZE, width // PATCH_SIZE

    def position_embedding(self, grid: tuple[int, int]) -> torch.Tensor:
        """Absolute position embedding for ``grid``, bicubically resampled from the trained grid."""
        if tuple(grid) == self.pos_grid:
            return self.pos_embed
        return resample_abs_pos_embed(self.pos_embed, new_size=list(grid), old_size=list(self.pos_grid),
                                      num_prefix_tokens=0)

    def _run(self, module: nn.Module, *args: Any) -> torch.Tensor:
        if self.grad_checkpointing and torch.is_grad_enabled():
            return torch.utils.checkpoint.checkpoint(module, *args, use_reentrant=False)
        return module(*args)

    def forward_stem(self, x: torch.Tensor, ids_keep: Optional[torch.Tensor] = None
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Patch embedding and both MLP stages; returns stage-1 and stage-2 units and stage-3 input tokens."""
        units = self.patch_embed(x)
        layout = UnitLayout((x.shape[-2] // PATCH_SIZE, x.shape[-1] // PATCH_SIZE), ids_keep)
        if ids_keep is not None:
            units = gather_units(units, ids_keep)
        return self.forward_stages(units, layout)

    def forward_stages(self, units: torch.Tensor, layout: UnitLayout
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Both MLP stages on embedded units ``(B, L, 4, 4, C/4)`` placed by ``layout``: stage-1 and stage-2
        units and the stage-3 input tokens ``(B, L, C)``."""
        stage_outputs = []
        for stage in self.stages:
            for block in stage.blocks:
                units = self._run(block, units, layout)
            stage_outputs.append(units)
            units = stage.merge(units)
        return stage_outputs[0], stage_outputs[1], units[:, :, 0, 0, :]

    def attention_biases(self, grid: tuple[int, int], ids_keep: Optional[torch.Tensor] = None
                         ) -> list[Optional[torch.Tensor]]:
        """Per-block relative position bias (None where a block has none)."""
        if all(block.attn.relative_position_bias_table is None for block in self.blocks):
            return [None] * len(self.blocks)
        index = relative_position_index(grid, self.pos_embed.device)  # once, shared by every block
        if ids_keep is not None:
            index = index[ids_keep[:, :, None], ids_keep[:, None, :]]
        return [block.attn.position_bias(grid, index) for block in self.blocks]

    def forward_stage3(self, tokens: torch.Tensor, grid: tuple[int, int],
                       ids_keep: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Stage-3 blocks on ``(B, L, C)`` tokens of ``grid``; the full grid comes back (migrated
        tokens replenished, see ``itpn.models.acceleration``)."""
        return self._stage3(tokens, grid, ids_keep)[0]

    def _stage3(self, tokens: torch.Tensor, grid: tuple[int, int], ids_keep: Optional[torch.Tensor] = None
                ) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Stage-3 output and the mask of the tokens that stayed (None without token migration)."""
        pos = self.position_embedding(grid)
        if ids_keep is not None:
            pos = gather_units(pos.expand(tokens.shape[0], -1, -1), ids_keep)
        x = self.pos_drop(tokens + pos)
        if self.acceleration is not None:
            if ids_keep is not None:
                raise ValueError("token migration and gathering accelerate fine-tuning and inference, not masked "
                                 "pre-training: call itpn.models.set_acceleration(model, 'baseline') first")
            return self.acceleration(self, x, grid)
        for block, bias in zip(self.blocks, self.attention_biases(grid, ids_keep)):
            x = self._run(block, x, bias)
        return x, None

    def forward_backbone(self, x: torch.Tensor, ids_keep: Optional[torch.Tensor] = None) -> BackboneOutput:
        """The three stages. ``ids_keep`` (B, L_keep) keeps only those 16x16 units (masked pre-training)."""
        grid = self.check_input(x)
        stage1, stage2, tokens = self.forward_stem(x, ids_keep)
        tokens, stayed = self._stage3(tokens, grid, ids_keep)
        return BackboneOutput(stage1, stage2, tokens, grid, ids_keep, stayed)

    def forward_features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Multi-scale NCHW maps named by stride: the pyramid's outputs (``s4, s8, s16`` and, with
        ``pyramid_extra_levels``, ``s32, s64``) or, without a pyramid, the three backbone stages."""
        out = self.forward_backbone(x)
        if self.pyramid is not None:
            levels = self.pyramid(out.stage1, out.stage2, out.tokens, out.layout)
            return FeaturePyramid.to_maps(levels, out.grid, self.pyramid_extra_levels)
        return {
            "s4": units_to_map(out.stage1, out.grid),
            "s8": units_to_map(out.stage2, out.grid),
            "s16": units_to_map(out.tokens[:, :, None, None, :], out.grid),
        }

    def forward_head(self, features: dict[str, torch.Tensor] | torch.Tensor, pre_logits: bool = False,
                     stayed: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Class logits from the stage-3 map ``features['s16']`` (or stage-3 tokens ``(B, L, C)``).

        ``global_pool="avg_stayed"`` averages the tokens marked in ``stayed`` ``(B, L)`` (those that
        went through every stage-3 block under token migration), ``"avg"`` every position of the
        replenished grid, where migrated tokens hold the state they had when they left. Without
        ``stayed`` (no migration) both average every token. The released Fast-iTPN mean-pools all
        tokens (it has no migration); which pooling to use under migration is ours to choose, and
        ``avg`` measured better on the demo classifier fine-tuned without migration (top-1 and
        agreement with the unaccelerated model, README "Performance"), so it is the default.
        """
        tokens = features["s16"].flatten(2).transpose(1, 2) if isinstance(features, dict) else features
        tokens = self.norm(tokens)
        if stayed is not None and self.global_pool == "avg_stayed":
            weights = stayed.to(tokens.dtype)[..., None]
            pooled = (tokens * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)
        else:
            pooled = tokens.mean(dim=1)
        pooled = self.head_drop(self.fc_norm(pooled))
        return pooled if pre_logits else self.head(pooled)

    def forward(self, x: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        if self.pyramid is not None:
            return self.forward_features(x)
        out = self.forward_backbone(x)
        return self.forward_head(out.tokens, stayed=out.stayed)


default_cfgs = generate_default_cfgs({
    name: default_cfg(name)
    for name in ("hivit_tiny_patch16_224", "hivit_small_patch16_224", "hivit_base_patch16_224")
})

_HIVIT = dict(stem_mlp_ratio=3.0, mlp_ratio=4.0, qkv_bias="qkv", patch_norm=True, rpe=True, final_norm="post_pool")


@register_model
def hivit_tiny_patch16_224(pretrained: bool = False, **kwargs: Any) -> HiViT:
    model_args = dict(embed_dim=384, depths=(2, 2, 10), num_heads=6, **_HIVIT)
    return create_backbone(HiViT, "hivit_tiny_patch16_224", pretrained, model_args, kwargs)


@register_model
def hivit_small_patch16_224(pretrained: bool = False, **kwargs: Any) -> HiViT:
    model_args = dict(embed_dim=384, depths=(4, 4, 20), num_heads=6, **_HIVIT)
    return create_backbone(HiViT, "hivit_small_patch16_224", pretrained, model_args, kwargs)


@register_model
def hivit_base_patch16_224(pretrained: bool = False, **kwargs: Any) -> HiViT:
    model_args = dict(embed_dim=512, depths=(4, 4, 20), num_heads=8, **_HIVIT)
    return create_backbone(HiViT, "hivit_base_patch16_224", pretrained, model_args, kwargs)
