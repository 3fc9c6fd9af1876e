"""Load released iTPN / Fast-iTPN / HiViT checkpoints and the project's own safetensors exports.

Released checkpoints number every stem block, merge and attention block in one ``blocks.N``
list, write Fast-iTPN's stem as convolutions and its attention as separate q/k/v projections;
``convert_official`` maps them onto this project's modules in one place. ``load_checkpoint``
then drops pre-training-only keys (and says which), resamples position tables for another
grid, and fails with the key and both shapes on any real mismatch.
"""
from __future__ import annotations

import io
import json
import re
import struct
from dataclasses import dataclass, field
from typing import Iterable

import fsspec
import torch
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save as save_safetensors_bytes
from timm.layers import resample_abs_pos_embed, resize_rel_pos_bias_table
from torch import nn

from itpn.files import write_atomically

PRETRAIN_ONLY = re.compile(
    r"^(mask_token|decoder_|decoder\.|lm_head\.|lm_cls_head\.|norm_cls\.|cls_pt_layers\.|teacher\.|mfm_|mim_)"
)
CLASSIFIER = re.compile(r"^(head|fc_norm|norm)\.")
# Parameters initialised to a no-op (zero bias tables; the zero-initialised parameters of token
# gathering, see itpn.models.acceleration), so a checkpoint trained without them loads.
NEUTRAL_WHEN_NEW = re.compile(r"relative_position_bias_table$|^acceleration\.")
# LayerScale gammas (ls1: attention, ls2 / ls: MLP), and the layer each scales: a checkpoint's gamma folds into
# that layer's weight and bias when the model has no LayerScale (gamma * (W x + b) = (gamma W) x + gamma b).
LAYER_SCALE = re.compile(r"^(.+)\.(ls1|ls2|ls)\.gamma$")
LAYER_SCALED = {"ls1": "attn.proj", "ls2": "mlp.fc2", "ls": "mlp.fc2"}
ACCELERATION = "acceleration."
PYRAMID_KEYS = ("align_dim_16tofpn", "split_16to8", "align_dim_16to8", "block_16to8", "split_8to4",
                "align_dim_8to4", "block_8to4", "fpn_modules")
WRAPPER_KEYS = ("model", "state_dict", "module", "model_ema")
WRAPPER_PREFIXES = ("module.", "backbone.", "_orig_mod.")
GRID_KEY = "pos_grid"  # safetensors metadata: the token grid the weights were trained on, "HxW"


@dataclass
class LoadReport:
    """What ``load_checkpoint`` did with every key."""

    source: str
    loaded: list[str] = field(default_factory=list)
    dropped: dict[str, str] = field(default_factory=dict)  # checkpoint key -> why it was not used
    resized: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = field(default_factory=dict)
    initialised: list[str] = field(default_factory=list)  # model keys left at their initial values

    def summary(self) -> str:
        lines = [f"{self.source}: loaded {len(self.loaded)} tensors"]
        reasons: dict[str, list[str]] = {}
        for key, why in self.dropped.items():
            reasons.setdefault(why, []).append(key)
        for why, keys in reasons.items():
            lines.append(f"  dropped {len(keys)} ({why}): {_abbreviate(keys)}")
        for key, (old, new) in self.resized.items():
            lines.append(f"  resized {key}: {old} -> {new}")
        if self.initialised:
            lines.append(f"  left at initialisation: {_abbreviate(self.initialised)}")
        return "\n".join(lines)


class CheckpointMismatchError(ValueError):
    """A checkpoint that does not fit the model; the message names every key and both shapes."""


def _abbreviate(keys: list[str], limit: int = 6) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... (+{len(keys) - limit} more)" if len(keys) > limit else "")


def read_state_dict(path_or_url: str) -> dict[str, torch.Tensor]:
    """Read a ``.pt``/``.pth`` (any of the usual wrappers) or ``.safetensors`` file from any fsspec URL."""
    try:
        with fsspec.open(path_or_url, "rb") as handle:
            payload = handle.read()
    except FileNotFoundError as error:
        raise FileNotFoundError(f"checkpoint not found: {path_or_url} (check the path or URL; nothing is "
                                f"downloaded, released weights must be placed there by hand)") from error
    if str(path_or_url).endswith(".safetensors"):
        return load_safetensors_bytes(payload)
    try:
        checkpoint = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for a corrupt or foreign file
        raise ValueError(f"{path_or_url} is not a readable PyTorch checkpoint ({type(error).__name__}: {error}); "
                         f"re-download or re-export it") from error
    for wrapper in WRAPPER_KEYS:
        if isinstance(checkpoint, dict) and isinstance(checkpoint.get(wrapper), dict):
            checkpoint = checkpoint[wrapper]
            break
    if not isinstance(checkpoint, dict) or not all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        raise ValueError(f"{path_or_url} holds no state dict (expected a mapping of names to tensors, "
                         f"possibly under one of {WRAPPER_KEYS})")
    state_dict = {}
    for key, value in checkpoint.items():
        for prefix in WRAPPER_PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix):]
        state_dict[key] = value
    return state_dict


def grid_metadata(model: nn.Module) -> dict[str, str]:
    """``{"pos_grid": "HxW"}``: the model's token grid, for the metadata of an export (our choice of key)."""
    height, width = model.pos_grid
    return {GRID_KEY: f"{height}x{width}"}


def read_safetensors_metadata(path_or_url: str) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors file, read from its header only (empty when there is none)."""
    with fsspec.open(path_or_url, "rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(length))
    return header.get("__metadata__") or {}


def _sorted_metadata(payload: bytes) -> bytes:
    """``payload`` with its ``__metadata__`` entries in sorted key order.

    safetensors' serializer keeps the metadata in a Rust ``HashMap``, whose iteration order changes
    from call to call, so the same tensors and metadata gave different bytes (and DVC saw a changed
    output). The header is rewritten with the same tensors and offsets; its length is padded to a
    multiple of 8 with spaces, as the format asks (safetensors' format description).
    """
    (length,) = struct.unpack("<Q", payload[:8])
    header = json.loads(payload[8 : 8 + length])
    metadata = header.pop("__metadata__", None)
    ordered = {"__metadata__": dict(sorted(metadata.items()))} if metadata else {}
    ordered.update(header)
    text = json.dumps(ordered, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + payload[8 + length :]


def save_safetensors(state_dict: dict[str, torch.Tensor], url: str, metadata: dict[str, str] | None = None) -> None:
    """Write a state dict as safetensors to any fsspec URL, atomically for local paths.

    The bytes depend only on the tensors and the metadata (metadata in sorted key order), so a run
    killed and resumed writes the same file as an uninterrupted one.
    """
    tensors = {key: value.detach().contiguous().cpu() for key, value in state_dict.items()}
    payload = _sorted_metadata(save_safetensors_bytes(tensors, metadata=metadata))
    write_atomically(url, payload)


def is_official_layout(state_dict: dict[str, torch.Tensor]) -> bool:
    """Released checkpoints put stem blocks in ``blocks.N``; this project's have ``stages.``."""
    return not any(key.startswith(("stages.", "pyramid.")) for key in state_dict) and any(
        key.startswith("blocks.") for key in state_dict)


def _stem_index(index: int, depths: tuple[int, int, int]) -> tuple[str, int]:
    """Map a released ``blocks.N`` index to ('stage', s, j) / ('merge', s) / ('main', i)."""
    first, second = depths[0], depths[1]
    if index < first:
        return f"stages.0.blocks.{index}", -1
    if index == first:
        return "stages.0.merge", -1
    if index <= first + second:
        return f"stages.1.blocks.{index - first - 1}", -1
    if index == first + second + 1:
        return "stages.1.merge", -1
    return "blocks", index - first - second - 2


def _convert_stem_block(rest: str, value: torch.Tensor) -> tuple[str, torch.Tensor]:
    rest = rest.replace("norm2.", "norm.").replace("mlp.ffn_ln.", "mlp.norm.").replace("gamma_2", "ls.gamma")
    if value.dim() == 4:  # 1x1 convolution -> Linear
        value = value.flatten(1)
    return rest, value


def _convert_merge(rest: str, value: torch.Tensor) -> tuple[str, torch.Tensor]:
    if rest == "reduction.weight" and value.dim() == 4:  # 2x2/2 convolution -> Linear over (r0c0, r1c0, r0c1, r1c1)
        value = value.permute(0, 3, 2, 1).reshape(value.shape[0], -1)
    return rest, value


_MAIN_RENAMES = (("gamma_1", "ls1.gamma"), ("gamma_2", "ls2.gamma"), ("mlp.w1.", "mlp.fc1_g."),
                 ("mlp.w2.", "mlp.fc1_x."), ("mlp.w3.", "mlp.fc2."), ("mlp.ffn_ln.", "mlp.norm."))


def convert_official(state_dict: dict[str, torch.Tensor], depths: tuple[int, int, int]) -> dict[str, torch.Tensor]:
    """Rename a released state dict (iTPN, Fast-iTPN, HiViT; fine-tuning or pre-training) to this
    project's module names. ``depths`` are the stem and stage-3 depths of the target model."""
    converted: dict[str, torch.Tensor] = {}
    split_qkv: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in state_dict.items():
        if key == "absolute_pos_embed":
            converted["pos_embed"] = value
            continue
        if key.startswith(PYRAMID_KEYS):
            converted["pyramid." + key.replace(".norm2.", ".norm.")] = value
            continue
        match = re.match(r"^blocks\.(\d+)\.(.+)$", key)
        if not match:
            converted[key] = value
            continue
        prefix, main_index = _stem_index(int(match.group(1)), depths)
        rest = match.group(2)
        if main_index < 0:
            convert = _convert_merge if prefix.endswith("merge") else _convert_stem_block
            rest, value = convert(rest, value)
            converted[f"{prefix}.{rest}"] = value
            continue
        projection = re.match(r"^attn\.([qkv])_proj\.weight$", rest)
        if projection:
            split_qkv.setdefault(main_index, {})[projection.group(1)] = value
            continue
        for old, new in _MAIN_RENAMES:
            rest = rest.replace(old, new)
        converted[f"blocks.{main_index}.{rest}"] = value
    for index, parts in split_qkv.items():
        if set(parts) != {"q", "k", "v"}:
            raise CheckpointMismatchError(f"blocks.{index}: the checkpoint has only the {sorted(parts)} projections "
                                          f"of a split q/k/v attention")
        converted[f"blocks.{index}.attn.qkv.weight"] = torch.cat([parts["q"], parts["k"], parts["v"]])
    return converted


def describe(state_dict: dict[str, torch.Tensor]) -> str:
    """A one-line fingerprint of an architecture from its (converted) state dict."""
    main = {int(m.group(1)) for k in state_dict if (m := re.match(r"^blocks\.(\d+)\.", k))}
    dim = state_dict["pos_embed"].shape[-1] if "pos_embed" in state_dict else "?"
    kind = "SwiGLU/LayerScale (Fast-iTPN)" if any(".mlp.fc1_g." in k for k in state_dict) else "GELU-MLP (iTPN/HiViT)"
    stem = [len({m.group(1) for k in state_dict if (m := re.match(rf"^stages\.{s}\.blocks\.(\d+)\.", k))})
            for s in (0, 1)]
    pyramid = "with pyramid" if any(k.startswith("pyramid.") for k in state_dict) else "no pyramid"
    return f"{kind}, embed dim {dim}, stem depths {stem}, {len(main)} attention blocks, {pyramid}"


def parse_grid(value: str | Iterable[int], source: str = "source_grid") -> tuple[int, int]:
    """``(H, W)`` from ``"14x20"``, ``(14, 20)`` or ``[14, 20]``; raises ``ValueError`` naming ``source``."""
    try:
        parts = [int(v) for v in (value.lower().split("x") if isinstance(value, str) else value)]
    except (TypeError, ValueError) as error:
        raise ValueError(f"{source} {value!r} is not a token grid: give (height, width) in tokens, e.g. (14, 20) "
                         f"for 224x320 pixels with 16-pixel patches") from error
    if len(parts) != 2 or min(parts) < 1:
        raise ValueError(f"{source} {value!r} is not a token grid: give (height, width) in tokens, e.g. (14, 20)")
    return parts[0], parts[1]


def _resize(key: str, value: torch.Tensor, target: torch.Tensor, model: nn.Module,
            grid: tuple[int, int] | None) -> torch.Tensor | None:
    """Resample position tables from the source ``grid`` (None: square, inferred from the token count)
    to the model's grid with timm's ``resample_abs_pos_embed`` / ``resize_rel_pos_bias_table``; None if
    ``key`` is no position table or its width differs."""
    new = tuple(model.pos_grid)
    if key == "pos_embed" and value.dim() == 3 and value.shape[-1] == target.shape[-1]:
        old = grid or _square(value.shape[1], key)
        if old[0] * old[1] != value.shape[1]:
            raise CheckpointMismatchError(f"pos_embed holds {value.shape[1]} positions, not the {old[0]}x{old[1]} "
                                          f"source grid given: pass the grid the checkpoint was trained on")
        if old == new:
            return value
        return resample_abs_pos_embed(value, new_size=list(new), old_size=list(old), num_prefix_tokens=0)
    if key.endswith("relative_position_bias_table") and value.dim() == 2 and value.shape[-1] == target.shape[-1]:
        old = grid or tuple((side + 1) // 2 for side in _square(value.shape[0], key))
        if (2 * old[0] - 1) * (2 * old[1] - 1) != value.shape[0]:
            raise CheckpointMismatchError(f"{key} holds {value.shape[0]} offsets, not those of the {old[0]}x{old[1]} "
                                          f"source grid given: pass the grid the checkpoint was trained on")
        if old == new:
            return value
        return resize_rel_pos_bias_table(value, new_window_size=new, new_bias_shape=tuple(target.shape),
                                         old_window_size=old)
    return None


def _square(count: int, key: str) -> tuple[int, int]:
    side = int(round(count ** 0.5))
    if side * side != count:
        raise CheckpointMismatchError(
            f"{key} has {count} positions, which is no square grid, and the checkpoint does not record its grid: "
            f"pass source_grid=(height, width) in tokens (e.g. (14, 20) for 224x320 images) to load_checkpoint")
    return side, side


def _mismatch_hint(key: str, source: torch.Size, target: torch.Size) -> str:
    if key.startswith("pyramid."):
        return f" (the checkpoint's pyramid is {source[0]}-d here; build the model with fpn_dim matching it)"
    if ".ls" in key:
        return " (LayerScale width differs: another model size)"
    return ""


def load_checkpoint(model: nn.Module, path_or_url: str, strict: bool = True,
                    allow_missing: Iterable[str] = (), source_grid: str | Iterable[int] | None = None,
                    skip: Iterable[str] = ()) -> LoadReport:
    """Load released or exported weights into ``model`` and report what happened to every key.

    Pre-training-only keys (mask token, decoders, distillation heads) are dropped and listed; a
    classifier whose class count differs is left at initialisation (fine-tuning to a new label
    set); position embeddings and relative position tables are resampled from the checkpoint's
    token grid to the model's, any grid to any grid (timm's ``resample_abs_pos_embed`` /
    ``resize_rel_pos_bias_table``). The source grid is ``source_grid`` (``(H, W)`` in tokens or
    ``"HxW"``) when given, else the ``pos_grid`` our safetensors exports record, else the square
    grid of the token count (released checkpoints are square); a non-square count without a known
    grid raises naming ``source_grid``. Any other difference raises ``CheckpointMismatchError``
    naming the keys and shapes. Model keys the checkpoint lacks are an error under ``strict``
    unless they start with one of ``allow_missing`` (e.g. ``("pyramid.",)`` to start a pyramid from
    scratch), belong to the classifier, or start as a no-op (relative position tables, zero-initialised).
    Keys starting with one of ``skip`` are not loaded at all (``("pyramid.",)``: the pre-trained pyramid
    left out, as the paper's Table 8 "loaded ✗" column), and the model's own start from initialisation.
    """
    state_dict = read_state_dict(path_or_url)
    if source_grid is None and str(path_or_url).endswith(".safetensors"):
        source_grid = read_safetensors_metadata(path_or_url).get(GRID_KEY)
    return load_state_dict_checked(model, state_dict, str(path_or_url), strict=strict, allow_missing=allow_missing,
                                   source_grid=source_grid, skip=skip)


def _fold_layer_scale(state_dict: dict[str, torch.Tensor], target: dict[str, torch.Tensor],
                      report: LoadReport) -> dict[str, torch.Tensor]:
    """The checkpoint's LayerScale gammas the model lacks, multiplied into the layer they scale
    (``LAYER_SCALED``): the loaded model computes what the checkpoint's did."""
    folded = dict(state_dict)
    for key, gamma in state_dict.items():
        match = LAYER_SCALE.match(key)
        if not match or key in target:
            continue
        layer = f"{match.group(1)}.{LAYER_SCALED[match.group(2)]}"
        if f"{layer}.weight" not in folded:
            continue  # reported as a key the model does not have
        del folded[key]
        folded[f"{layer}.weight"] = folded[f"{layer}.weight"] * gamma[:, None]
        if f"{layer}.bias" in folded:
            folded[f"{layer}.bias"] = folded[f"{layer}.bias"] * gamma
        report.dropped[key] = "LayerScale the model has none of, folded into the layer it scales"
    return folded


def load_state_dict_checked(model: nn.Module, state_dict: dict[str, torch.Tensor], source: str, *, strict: bool = True,
                            allow_missing: Iterable[str] = (), source_grid: str | Iterable[int] | None = None,
                            skip: Iterable[str] = ()) -> LoadReport:
    """:func:`load_checkpoint` on a state dict already read (``source`` names it in messages)."""
    grid = parse_grid(source_grid) if source_grid is not None else None
    if is_official_layout(state_dict):
        state_dict = convert_official(state_dict, model.depths)
    report = LoadReport(source=source)
    target = model.state_dict()
    state_dict = _fold_layer_scale(state_dict, target, report)
    has_pyramid = getattr(model, "pyramid", None) is not None
    to_load: dict[str, torch.Tensor] = {}
    unexpected, mismatched = [], []
    skipped = tuple(skip)
    for key, value in state_dict.items():
        if skipped and key.startswith(skipped):
            report.dropped[key] = "left out on request (skip)"
        elif key.endswith("relative_position_index"):
            report.dropped[key] = "derived buffer, recomputed for every grid"
        elif PRETRAIN_ONLY.match(key):
            report.dropped[key] = "pre-training only"
        elif key.startswith("pyramid.") and not has_pyramid:
            report.dropped[key] = "feature pyramid; build the model with pyramid=True to use it"
        elif key.startswith(ACCELERATION) and key not in target:
            report.dropped[key] = ("parameter of an acceleration variant the model is not running; switch it on "
                                   "with itpn.models.set_acceleration before loading to use it")
        elif key not in target:
            if CLASSIFIER.match(key):
                report.dropped[key] = "classifier, the model has none"
            else:
                unexpected.append(key)
        elif value.shape != target[key].shape or (grid is not None and grid != tuple(model.pos_grid)):
            resized = _resize(key, value, target[key], model, grid)
            if resized is not None:
                if resized is not value:
                    report.resized[key] = (tuple(value.shape), tuple(resized.shape))
                to_load[key] = resized
            elif value.shape == target[key].shape:
                to_load[key] = value
            elif key.startswith("head."):
                report.dropped[key] = f"classifier for {value.shape[0]} classes, the model has {target[key].shape[0]}"
            else:
                mismatched.append(key)
        else:
            to_load[key] = value
    allowed = tuple(allow_missing) + skipped
    missing = [k for k in target if k not in to_load]
    # A model with LayerScale keeps its initial gammas where the checkpoint has none, as the released
    # run_itpn_finetuning.py does (LayerScale 0.1 added by its "Correction" line, weights loaded non-strictly).
    not_allowed = [k for k in missing if k not in mismatched
                   and not (CLASSIFIER.match(k) or NEUTRAL_WHEN_NEW.search(k) or LAYER_SCALE.match(k)
                            or k.startswith(allowed))]
    problems = []
    if mismatched:
        problems.append("shape mismatches:\n    " + "\n    ".join(
            f"{key}: checkpoint {tuple(state_dict[key].shape)} vs model {tuple(target[key].shape)}"
            + _mismatch_hint(key, state_dict[key].shape, target[key].shape) for key in mismatched))
    if unexpected:
        problems.append(f"keys the model does not have: {_abbreviate(unexpected, 10)}")
    if not_allowed and strict:
        hint = ""
        if any(k.startswith("pyramid.") for k in not_allowed):
            hint = (" (the checkpoint has no feature pyramid: pass allow_missing=('pyramid.',) to start it from "
                    "scratch; ITPNBackbone: load_pyramid=False)")
        problems.append(f"model keys missing from the checkpoint: {_abbreviate(not_allowed, 10)}{hint}")
    if problems:
        raise CheckpointMismatchError(
            f"{source} does not fit {type(model).__name__}.\n  checkpoint: {describe(state_dict)}\n"
            f"  model:      {describe(target)}\n  " + "\n  ".join(problems))
    nn.Module.load_state_dict(model, to_load, strict=False)
    report.loaded = sorted(to_load)
    report.initialised = missing
    return report
