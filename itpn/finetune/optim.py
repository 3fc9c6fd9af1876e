"""Layer-wise lr decay and weight decay of a fine-tune, as each released fine-tuning script assigns them.

Two rules, both from sunsmarterjie/iTPN:

* ``fast_itpn``: ``fast_itpn/run_class_finetuning.py`` with ``optim_factory.py`` (EVA-02 / BEiT). The
  released model keeps its stem blocks, both merges and the stage-3 blocks in one flat ``blocks``
  list; with ``L = len(blocks)`` the patch and position embeddings are layer 0, ``blocks.i`` layer
  ``i + 1``, everything else (norm, head) layer ``L + 1``, and layer ``id`` trains at
  ``decay ** (L + 1 - id)``. ``HiViT.group_matcher`` numbers our modules that way and
  ``timm.optim.param_groups_layer_decay`` applies the scale.
* ``itpn``: ``itpn_clip/utils/lr_decay.py`` and ``itpn_pixel/util/lr_decay.py`` (MAE's
  ``param_groups_lrd``, the same file in both), used by ``run_itpn_finetuning.py`` and
  ``main_finetune.py``. Merges are not layers of their own: a merge shares the layer of the block
  before it. With ``n`` stem and stage-3 blocks, ``num_layers = n + 1``; the embeddings are layer 0,
  the ``k``-th block layer ``k``, everything else ``num_layers``; the decay is first normalised to a
  12-block ViT, ``d = decay ** (13 / num_layers)``, and layer ``id`` trains at ``d ** (num_layers - id)``.

Weight decay, both rules: none on 1-D parameters (biases, norms, LayerScale, q/v biases) and on the
model's ``no_weight_decay()`` names (position embedding, relative position tables); the released
scripts skip exactly those (``get_parameter_groups``: ``len(shape) == 1``, ``.bias``, the skip list;
``param_groups_lrd``: ``ndim == 1``, the list, ``relative_position_bias_table``).
"""
from __future__ import annotations

import re
from typing import Any, Literal

from timm.optim import param_groups_layer_decay
from torch import nn

LayerDecayRule = Literal["fast_itpn", "itpn"]
LAYER_DECAY_RULES = ("fast_itpn", "itpn")
VIT_BASE_LAYERS = 13  # param_groups_lrd normalises the decay to a 12-block ViT: decay ** (13 / num_layers)


def _itpn_layer_id(name: str, depths: tuple[int, int, int]) -> int:
    """``get_layer_id`` of the released ``lr_decay.py``, on our module names (stem blocks in
    ``stages.s.blocks.j``, merges in ``stages.s.merge``, stage-3 blocks in ``blocks.i``)."""
    first, second, third = depths
    if name.startswith(("pos_embed", "patch_embed")):
        return 0
    stage = re.match(r"^stages\.(\d+)\.(?:blocks\.(\d+)|merge)", name)
    if stage:
        before = first if int(stage.group(1)) else 0
        depth = second if int(stage.group(1)) else first
        return before + (int(stage.group(2)) + 1 if stage.group(2) is not None else depth)
    block = re.match(r"^blocks\.(\d+)", name)
    if block:
        return first + second + int(block.group(1)) + 1
    return first + second + third + 1


def _itpn_groups(model: nn.Module, weight_decay: float, layer_decay: float) -> list[dict[str, Any]]:
    num_layers = sum(model.depths) + 1
    decay = layer_decay ** (VIT_BASE_LAYERS / num_layers)
    scales = [decay ** (num_layers - layer) for layer in range(num_layers + 1)]
    skip = set(model.no_weight_decay())
    groups: dict[tuple[int, bool], dict[str, Any]] = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        decayed = not (parameter.ndim == 1 or name in skip or name.endswith(".relative_position_bias_table"))
        layer = _itpn_layer_id(name, model.depths)
        group = groups.setdefault((layer, decayed), {
            "params": [], "lr_scale": scales[layer], "weight_decay": weight_decay if decayed else 0.0})
        group["params"].append(parameter)
    return [groups[key] for key in sorted(groups)]


def param_groups(model: nn.Module, weight_decay: float, layer_decay: float,
                 rule: LayerDecayRule = "fast_itpn") -> list[dict[str, Any]]:
    """Optimizer parameter groups of a HiViT-family classifier, each with ``lr_scale`` (timm's schedulers
    multiply the lr by it) and ``weight_decay``, by the released ``rule`` (module docstring).
    Raises ``ValueError`` for an unknown rule or a decay outside (0, 1]."""
    if rule not in LAYER_DECAY_RULES:
        raise ValueError(f"unknown layer-decay rule {rule!r}; the rules are {LAYER_DECAY_RULES}")
    if not 0.0 < layer_decay <= 1.0:
        raise ValueError(f"layer_decay must be in (0, 1], got {layer_decay}")
    if rule == "itpn":
        return _itpn_groups(model, weight_decay, layer_decay)
    return param_groups_layer_decay(model, weight_decay=weight_decay, layer_decay=layer_decay,
                                    no_weight_decay_list=tuple(model.no_weight_decay()))


def lr_scales_and_decays(model: nn.Module, groups: list[dict[str, Any]]) -> dict[str, tuple[float, float]]:
    """``{parameter name: (lr_scale, weight_decay)}`` of ``groups`` built for ``model``."""
    names = {id(parameter): name for name, parameter in model.named_parameters()}
    return {names[id(parameter)]: (group["lr_scale"], group["weight_decay"])
            for group in groups for parameter in group["params"]}
