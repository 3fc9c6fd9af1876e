"""Layer-wise lr decay for a detector or segmenter whose backbone is ``ITPNBackbone``.

Layer ids come from the backbone's ``group_matcher`` (timm's ``group_parameters``): the stem,
each stem block and merge, then each stage-3 block; the pyramid and anything else the backbone
adds take the top id, and every module outside the backbone (the heads) is at that top id too.
Layer ``i`` of ``n`` trains at ``lr * decay ** (n - 1 - i)``, as BEiT-style fine-tuning does (the
released iTPN detection code's ``LayerDecayOptimizerConstructor``). No weight decay on biases,
norms, position embeddings and relative position tables.
"""
from __future__ import annotations

from typing import Any

from mmengine.optim import DefaultOptimWrapperConstructor, OptimWrapper
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS, OPTIM_WRAPPERS, OPTIMIZERS
from timm.models import group_parameters
from torch import nn

from .backbone import ITPNBackbone


def layer_decay_groups(model: nn.Module, lr: float, weight_decay: float, decay_rate: float) -> list[dict[str, Any]]:
    """Optimizer parameter groups of ``model`` (which has an ``ITPNBackbone`` as ``model.backbone``)."""
    backbone = getattr(model, "backbone", None)
    if not isinstance(backbone, ITPNBackbone):
        raise TypeError(f"layer-wise lr decay needs an ITPNBackbone as model.backbone, found "
                        f"{type(backbone).__name__}; use the default optim_wrapper constructor for other backbones")
    network = backbone.model
    layer_ids = group_parameters(network, network.group_matcher(coarse=False), reverse=True)
    top = max(layer_ids.values())
    no_decay_names = set(network.no_weight_decay())
    groups: dict[tuple[int, bool], dict[str, Any]] = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        inner = name[len("backbone.model."):] if name.startswith("backbone.model.") else None
        layer = layer_ids.get(inner, top) if inner is not None else top
        decay = not (parameter.ndim <= 1 or name.endswith(".bias") or (inner is not None and inner in no_decay_names))
        group = groups.setdefault((layer, decay), {
            "params": [], "lr": lr * decay_rate ** (top - layer), "weight_decay": weight_decay if decay else 0.0,
            "layer_id": layer, "lr_scale": decay_rate ** (top - layer)})
        group["params"].append(parameter)
    return [groups[key] for key in sorted(groups)]


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class LayerDecayOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """``optim_wrapper=dict(constructor='LayerDecayOptimWrapperConstructor', paramwise_cfg=dict(layer_decay_rate=0.9),
    optimizer=dict(type='AdamW', lr=..., weight_decay=0.05))``."""

    def __call__(self, model: nn.Module) -> OptimWrapper:
        model = getattr(model, "module", model)
        decay_rate = float(self.paramwise_cfg.get("layer_decay_rate", 0.9))
        unknown = sorted(set(self.paramwise_cfg) - {"layer_decay_rate"})
        if unknown:
            raise ValueError(f"LayerDecayOptimWrapperConstructor: unknown paramwise_cfg keys {unknown}; it takes "
                             f"layer_decay_rate only")
        if not 0 < decay_rate <= 1:
            raise ValueError(f"layer_decay_rate must be in (0, 1], got {decay_rate}")
        optimizer_cfg = self.optimizer_cfg.copy()
        optimizer_cfg["params"] = layer_decay_groups(model, optimizer_cfg["lr"],
                                                     optimizer_cfg.get("weight_decay", 0.0), decay_rate)
        optimizer = OPTIMIZERS.build(optimizer_cfg)
        return OPTIM_WRAPPERS.build(self.optim_wrapper_cfg.copy(), default_args=dict(optimizer=optimizer))
