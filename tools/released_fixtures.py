"""Write the released-code fixtures the recipe tests compare against (issue 19).

    python tools/released_fixtures.py /path/to/sunsmarterjie-iTPN [--commit SHA]

Runs the released training code (a checkout of sunsmarterjie/iTPN, never copied into this repository)
in subprocesses whose working directory is the released folder, as its scripts expect, and writes
small JSON files under ``tests/models/fixtures/`` carrying the commit they were read from:

* ``released_param_groups.json``: every parameter's lr scale and weight decay, fixture (c), from
  ``fast_itpn/run_class_finetuning.py`` (+ ``optim_factory.py``) for Fast-iTPN T/S/B/L at their
  README layer decays, and from ``itpn_clip/run_itpn_finetuning.py`` (+ ``utils/lr_decay.py``) for
  iTPN-B/L at theirs;
* ``released_transforms.json``: the augmentation pipelines' parameters, fixture (d)
  (``itpn.data.transforms.transform_params`` of what the released ``build_transform`` /
  ``DataAugmentationForiTPN`` build from the README's arguments);
* ``released_pixel_mim.json``: fixture (b), the pixel-MIM loss and every parameter's gradient norm of
  ``itpn_pixel/models/models_itpn_mim.py`` on a fixed batch and mask, its weights those our tiny
  ``itpn_pixel`` model starts from under a fixed seed (mapped to the released names and loaded strictly);
  the released masked forward's resampling of its position embedding is left out (``itpn_pixel``);
* ``released_clip_distill.json``: fixture (a), the iTPN-CLIP loss (``modeling_pretrain.py`` + the engine's
  smooth-L1 + ``clip/create_clip.py``'s teacher) and every gradient norm, with our tiny ``itpn_clip_b16``
  model's weights and a tiny random CLIP in OpenAI's layout (built by open_clip; the released ``clip.load``
  reads its state dict); the teacher fed ``2x - 1`` so that its [-1, 1] scaling sees the [0, 1] image.

The released code was written for timm 0.3-0.5 and torch 1.x: the few modules it imports but these
computations never use (tensorboardX, optimisers timm renamed, ``torch._six``, ``pkg_resources``) are
stood in for by empty modules (``_stand_ins``).
"""
from __future__ import annotations

import argparse
import importlib
import json
import math
import re
import subprocess
import sys
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "models" / "fixtures"
# Layer decay per model: the released READMEs' commands (fast_itpn/README.md, itpn_clip/README.md).
FAST_ITPN = {"tiny": ("fast_itpn_tiny_1112_patch16_224", 0.80), "small": ("fast_itpn_small_2220_patch16_224", 0.90),
             "base": ("fast_itpn_base_3324_patch16_224", 0.90), "large": ("fast_itpn_large_2240_patch16_256", 0.95)}
ITPN_CLIP = {"base": ("itpn_base_3324_patch16_224", 0.60), "large": ("itpn_large_2240_patch16_224", 0.55)}
WEIGHT_DECAY = 0.05


def _stand_ins() -> None:
    """Empty modules for imports the released scripts make and these computations never use."""
    six = types.ModuleType("torch._six")
    six.inf, six.string_classes = math.inf, (str,)
    sys.modules["torch._six"] = six
    for name in ("tensorboardX", "deepspeed", "apex", "apex.optimizers", "sh", "pkg_resources"):
        try:
            importlib.import_module(name)
        except ImportError:
            module = types.ModuleType(name)
            module.SummaryWriter = object
            if name == "pkg_resources":
                import packaging.version  # noqa: F401  (clip.py reads pkg_resources.packaging.version)

                module.packaging = sys.modules["packaging"]
            sys.modules[name] = module
    for name in ("nadam.Nadam", "nvnovograd.NvNovoGrad", "adahessian.Adahessian", "adamp.AdamP", "sgdp.SGDP",
                 "radam.RAdam", "rmsprop_tf.RMSpropTF", "lookahead.Lookahead", "adafactor.Adafactor"):
        module_name, attribute = name.split(".")
        try:
            module = importlib.import_module(f"timm.optim.{module_name}")
        except ImportError:
            module = sys.modules.setdefault(f"timm.optim.{module_name}", types.ModuleType(module_name))
        if not hasattr(module, attribute):
            setattr(module, attribute, object)


def _args(script: str, argv: list[str]) -> argparse.Namespace:
    """The released script's own argument parser on ``argv``."""
    sys.argv = [script, *argv]
    parsed = importlib.import_module(script).get_args()
    return parsed[0] if isinstance(parsed, tuple) else parsed


def _assignment(model, groups) -> dict[str, list[float]]:
    names = {id(parameter): name for name, parameter in model.named_parameters()}
    return {names[id(p)]: [group["lr_scale"], group["weight_decay"]] for group in groups for p in group["params"]}


def fast_itpn() -> dict:
    """fast_itpn/run_class_finetuning.py: layer decay assignment and the augmentation."""
    from timm.models import create_model

    import datasets
    import modeling_finetune  # noqa: F401  (registers the models)
    from optim_factory import LayerDecayValueAssigner, get_parameter_groups
    from itpn.data.transforms import transform_params

    args = _args("run_class_finetuning", ["--imagenet_default_mean_and_std"])
    groups = {}
    for size, (name, decay) in FAST_ITPN.items():
        model = create_model(name, pretrained=False, num_classes=1000, drop_path_rate=0.1,
                             init_values=args.layer_scale_init_value, use_mean_pooling=args.use_mean_pooling)
        num_layers = model.get_num_layers()  # as run_class_finetuning.py
        assigner = LayerDecayValueAssigner([decay ** (num_layers + 1 - i) for i in range(num_layers + 2)])
        found = get_parameter_groups(model, WEIGHT_DECAY, model.no_weight_decay(), assigner.get_layer_id,
                                     assigner.get_scale)
        groups[size] = {"model": name, "layer_decay": decay, "weight_decay": WEIGHT_DECAY,
                        "params": _assignment(model, found)}
    transforms = {"train": transform_params(datasets.build_transform(True, args)),
                  "eval": transform_params(datasets.build_transform(False, args))}
    return {"param_groups": groups, "transforms": transforms}


def itpn_clip() -> dict:
    """itpn_clip/run_itpn_finetuning.py and run_itpn_pretraining.py: layer decay and the augmentations."""
    from timm.models import create_model

    import datasets
    import modeling_finetune  # noqa: F401  (registers the models)
    from utils import lr_decay
    from itpn.data.transforms import transform_params

    args = _args("run_itpn_finetuning", [])
    groups = {}
    for size, (name, decay) in ITPN_CLIP.items():
        # the model as run_itpn_finetuning.py builds it, LayerScale included
        model = create_model(name, pretrained=False, num_classes=1000, drop_path_rate=0.1, ape=args.abs_pos_emb,
                             rpe=args.rel_pos_bias, use_mean_pooling=args.use_mean_pooling,
                             init_values=args.layer_scale_init_value)
        found = lr_decay.param_groups_lrd(model, WEIGHT_DECAY, no_weight_decay_list=model.no_weight_decay(),
                                          layer_decay=decay)
        groups[size] = {"model": name, "layer_decay": decay, "weight_decay": WEIGHT_DECAY,
                        "layer_scale_init_value": args.layer_scale_init_value, "params": _assignment(model, found)}
    transforms = {"train": transform_params(datasets.build_transform(True, args)),
                  "eval": transform_params(datasets.build_transform(False, args))}
    # The pre-training augmentation of the README's iTPN-B / CLIP-B command (--input_size 224 --second_input_size 224).
    pretrain_args = _args("run_itpn_pretraining", ["--input_size", "224", "--second_input_size", "224"])
    pretrain_args.window_size = (pretrain_args.input_size // 16, pretrain_args.input_size // 16)
    augmentation = datasets.DataAugmentationForiTPN(pretrain_args)
    masks = augmentation.masked_position_generator
    pretrain = {"common": transform_params(augmentation.common_transform),
                "student": transform_params(augmentation.patch_transform),
                "teacher": transform_params(augmentation.visual_token_transform),
                "mask": {"num_masking_patches": masks.num_masking_patches, "min_num_patches": masks.min_num_patches,
                         "max_num_patches": masks.max_num_patches, "log_aspect_ratio": list(masks.log_aspect_ratio)}}
    return {"param_groups": groups, "transforms": transforms, "pretrain_transforms": pretrain}


# The tiny iTPN of fixture (b): our itpn_pixel recipe at a size a CPU test runs in a second; the test builds our
# model from these settings under PIXEL_SEED, this script loads the same weights into the released model.
PIXEL_SETTINGS = dict(teacher="none", img_size=64, decoder_dim=32, decoder_depth=1, decoder_heads=2,
                      model_kwargs={"fpn_depth": 2, "rpe": False, "depths": [1, 1, 2], "embed_dim": 64,
                                    "num_heads": 2, "fpn_dim": 32})
PIXEL_SEED = 0


def _released_decoder_key(key: str) -> str | None:
    """Our name of a released pixel-decoder key (``models_itpn_mim.py``), None for encoder keys."""
    for released, ours in (("decoder_embed.", "decoder.level_proj."), ("decoder_blocks.", "decoder.blocks."),
                           ("decoder_norm.", "decoder.norm."), ("decoder_pred.", "decoder.pred.")):
        if key.startswith(released):
            return ours + key[len(released):]
    return "decoder.mask_token" if key == "mask_token" else None


def itpn_pixel() -> dict:
    """itpn_pixel/models/models_itpn_mim.py: the pixel-MIM loss and every parameter's gradient norm on a fixed
    batch and mask, with our tiny itpn_pixel model's weights; the sin-cos positions of util/pos_embed.py."""
    from functools import partial

    import numpy as np
    import torch
    from torch import nn

    np.float = float  # util/pos_embed.py uses the alias numpy removed
    from models.models_itpn_mim import iTPNMaskedAutoencoder
    from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
    from util.pos_embed import get_2d_sincos_pos_embed
    from itpn.pretrain import MaskGenerator, PretrainConfig
    from itpn.pretrain.objective import normalize
    from itpn.pretrain.trainer import build_objective

    config = PretrainConfig.from_recipe("itpn_pixel", **PIXEL_SETTINGS)
    torch.manual_seed(PIXEL_SEED)
    ours = build_objective(config)
    ours_state = ours.state_dict()
    arch = config.model_kwargs
    depths = tuple(arch["depths"])
    released = iTPNMaskedAutoencoder(
        img_size=config.img_size, embed_dim=arch["embed_dim"], mlp_depth=depths[0], depth=depths[2],
        num_heads=arch["num_heads"], fpn_dim=arch["fpn_dim"], fpn_depth=arch["fpn_depth"], rpe=False,
        decoder_embed_dim=config.decoder_dim, decoder_depth=config.decoder_depth,
        decoder_num_heads=config.decoder_heads, norm_layer=partial(nn.LayerNorm, eps=1e-6))
    names = {}
    for key in released.state_dict():
        if key == "decoder_pos_embed":
            continue  # fixed sin-cos, compared on its own
        names[key] = _released_decoder_key(key) or "encoder." + _backbone_name(key, depths)
    weights = {key: ours_state[name].clone() for key, name in names.items()}
    weights["mask_token"] = weights["mask_token"] / 3  # the released decoder adds the token once per level
    weights["decoder_pos_embed"] = released.decoder_pos_embed.detach().clone()
    released.load_state_dict(weights, strict=True)

    grid = config.img_size // 16
    mask = MaskGenerator((grid, grid), config.mask_ratio)(2, torch.Generator().manual_seed(2))
    ids_shuffle = torch.cat([mask.ids_keep, mask.ids_masked], dim=1)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    released.masking_id = lambda batch, ratio: (mask.ids_keep, ids_restore, mask.masked.float())
    # iTPN.interpolate_pos_encoding compares the visible-token count with the grid, so every masked forward
    # resamples the position embedding bicubically at scale (Hp + 0.1) / Hp; the position embedding is used
    # as it is here (ours, itpn.pretrain.objective), so the fixture compares the method without that resampling.
    released.interpolate_pos_encoding = lambda x, h, w: released.absolute_pos_embed
    images = torch.rand(2, 3, config.img_size, config.img_size, generator=torch.Generator().manual_seed(1))
    released.train()  # fed as main_pretrain.py's Normalize gives it the images
    loss, _, _ = released(normalize(images, IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD), mask_ratio=config.mask_ratio)
    loss.backward()
    gradients = {names[key]: parameter.grad.norm().item() for key, parameter in released.named_parameters()
                 if parameter.grad is not None and key in names}
    gradients["decoder.mask_token"] /= 3  # ours is 3x the released token: d/d(ours) = d/d(released) / 3
    return {"settings": PIXEL_SETTINGS, "seed": PIXEL_SEED, "image_seed": 1, "mask_seed": 2,
            "weights_abs_sum": sum(value.abs().sum().item() for value in ours_state.values()),
            "loss": loss.item(), "grad_norms": gradients,
            "sincos_pos_embed_32x4x4": get_2d_sincos_pos_embed(32, 4).tolist()}


# Fixture (a): our itpn_clip_b16 recipe at a CPU test's size, and a tiny random CLIP in OpenAI's layout (widths
# of 64: the released clip/model.py build_model gives every 64 channels a head). The test rebuilds both from these.
CLIP_TEACHER = {"embed_dim": 32, "quick_gelu": True,
                "vision_cfg": {"image_size": 16, "layers": 1, "width": 64, "head_width": 64, "patch_size": 8},
                "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 64, "heads": 1, "layers": 1}}
CLIP_SETTINGS = dict(img_size=32, drop_path=0.0,
                     model_kwargs={"depths": [1, 1, 5], "embed_dim": 64, "num_heads": 2, "fpn_dim": 32})
CLIP_SEED = 0


def tiny_clip_teacher(folder: Path) -> tuple[str, str]:
    """(model-config JSON, state dict file) of the random CLIP of fixture (a), written to ``folder``."""
    import open_clip
    import torch

    config = folder / "tiny-clip-fixture.json"
    config.write_text(json.dumps(CLIP_TEACHER))
    open_clip.add_model_config(config)
    torch.manual_seed(CLIP_SEED)
    checkpoint = folder / "tiny-clip-fixture.pt"
    # in half precision's values, as OpenAI released CLIP (the released clip.load rounds weights through fp16)
    weights = open_clip.create_model("tiny-clip-fixture").state_dict()
    torch.save({key: value.half().float() for key, value in weights.items()}, checkpoint)
    return str(config), str(checkpoint)


def _backbone_name(key: str, depths: tuple[int, int, int]) -> str:
    """Our name of a released backbone or pyramid key (the checkpoint converter's map)."""
    import torch

    from itpn.models.checkpoint import convert_official

    return next(iter(convert_official({key: torch.zeros(1)}, depths)))


def _ours_of_released(key: str, depths: tuple[int, int, int]) -> str:
    """Our name of a released iTPN-CLIP pre-training key (``modeling_pretrain.py``)."""
    extra = re.match(r"^cls_pt_layers\.(\d+)\.(.+)$", key)
    if extra:  # the auxiliary blocks are named as stage-3 blocks are
        main = _backbone_name(f"blocks.{sum(depths) + 2}.{extra.group(2)}", depths)
        return f"cls_pt_layers.{extra.group(1)}." + main.split(".", 2)[2]
    if key.startswith(("mask_token", "decoder_embed.", "norm.", "lm_head.", "norm_cls.", "lm_cls_head.")):
        return key
    return "encoder." + _backbone_name(key, depths)


def itpn_clip_loss() -> dict:
    """itpn_clip/modeling_pretrain.py (iTPNClipDistill) with engine_for_pretraining.py's loss and
    clip/create_clip.py's teacher: the loss and every parameter's gradient norm on a fixed batch and mask,
    with our tiny itpn_clip_b16 model's weights and a tiny random CLIP."""
    import tempfile
    from functools import partial

    import torch
    from torch import nn

    from clip.create_clip import clip_distill
    from modeling_pretrain import iTPNClipDistill
    from itpn.pretrain import ClipTeacher, MaskGenerator, PretrainConfig
    from itpn.pretrain.trainer import build_objective

    folder = Path(tempfile.mkdtemp())
    clip_config, clip_checkpoint = tiny_clip_teacher(folder)
    config = PretrainConfig.from_recipe("itpn_clip_b16", clip_model=clip_config, clip_checkpoint=clip_checkpoint,
                                        **CLIP_SETTINGS)
    grid = config.img_size // 16
    teacher = ClipTeacher(config.clip_model, clip_checkpoint, (grid, grid))
    torch.manual_seed(CLIP_SEED)
    ours = build_objective(config, clip_dim=teacher.dim)
    ours_state = ours.state_dict()
    arch = config.model_kwargs
    depths = tuple(arch["depths"])
    released = iTPNClipDistill(
        img_size=config.img_size, patch_size=16, embed_dim=arch["embed_dim"], mlp_depth1=depths[0],
        mlp_depth2=depths[1], depth=depths[2], num_heads=arch["num_heads"], bridge_mlp_ratio=3., mlp_ratio=4,
        num_outs=3, fpn_dim=arch["fpn_dim"], fpn_depth=arch["fpn_depth"], norm_layer=partial(nn.LayerNorm, eps=1e-6),
        init_values=arch["init_values"], teacher_dim=teacher.dim)
    names = {key: _ours_of_released(key, depths) for key, _ in released.named_parameters()}
    weights = {key: ours_state[name].clone() for key, name in names.items()}
    missing = released.load_state_dict(weights, strict=False).missing_keys
    assert all(key.endswith("relative_position_index") for key in missing), missing
    released_teacher = clip_distill(model_name=clip_checkpoint)
    # clip_distill sizes its target LayerNorm by the model's name (512, or 768 with an "L" in it): the tiny width
    released_teacher.LN = nn.LayerNorm(teacher.dim, elementwise_affine=False)

    mask = MaskGenerator((grid, grid), 0.5)(2, torch.Generator().manual_seed(2))
    images = torch.rand(2, 3, config.img_size, config.img_size, generator=torch.Generator().manual_seed(1))
    teacher_images = torch.rand(2, 3, *teacher.input_size, generator=torch.Generator().manual_seed(3))
    # The released ScalingLayerForClip reads its input as [-1, 1] (the teacher view is [0, 1]): 2x - 1 feeds it x,
    # the image ours normalises with CLIP's statistics (itpn.pretrain.teachers).
    target = released_teacher(2 * teacher_images - 1)
    released.train()
    outputs = released((images - 0.5) / 0.5, bool_masked_pos=mask.masked)
    loss_fn = nn.SmoothL1Loss()
    loss = loss_fn(input=outputs[0], target=target) + loss_fn(input=outputs[1], target=target)
    loss.backward()
    return {"settings": CLIP_SETTINGS, "teacher": CLIP_TEACHER, "seed": CLIP_SEED, "image_seed": 1,
            "teacher_image_seed": 3, "mask_seed": 2,
            "weights_abs_sum": sum(value.abs().sum().item() for value in ours_state.values()),
            "teacher_abs_sum": sum(value.abs().sum().item() for value in teacher.state_dict().values()),
            "loss": loss.item(), "grad_norms": {names[key]: parameter.grad.norm().item()
                                                for key, parameter in released.named_parameters()}}


PARTS = {"fast_itpn": fast_itpn, "itpn_clip": itpn_clip, "itpn_pixel": itpn_pixel, "itpn_clip_loss": itpn_clip_loss}
PART_FOLDERS = {"itpn_clip_loss": "itpn_clip"}


def run_part(part: str, release: Path) -> dict:
    """One part in a subprocess whose working directory is the released folder (its scripts import their
    siblings by name, and the folders' ``utils`` modules differ)."""
    folder = release / PART_FOLDERS.get(part, part)
    result = subprocess.run([sys.executable, "-W", "ignore", str(Path(__file__).resolve()), "--part", part],
                            cwd=folder, capture_output=True, text=True, check=False,
                            env={"PYTHONPATH": f"{folder}:{REPO}", "PATH": "/usr/bin:/bin"})
    if result.returncode:
        raise RuntimeError(f"the released {part} code failed:\n{result.stderr[-4000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def commit_of(release: Path, given: str | None) -> str:
    if given:
        return given
    found = subprocess.run(["git", "-C", str(release), "rev-parse", "HEAD"], capture_output=True, text=True)
    if found.returncode:
        raise SystemExit(f"{release} is no git checkout: pass --commit, the sunsmarterjie/iTPN commit it holds")
    return found.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("release", nargs="?", type=Path, help="a checkout of sunsmarterjie/iTPN")
    parser.add_argument("--commit", help="the commit the checkout holds (default: git rev-parse HEAD there)")
    parser.add_argument("--part", choices=sorted(PARTS), help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.part:  # inside the released folder
        _stand_ins()
        print(json.dumps(PARTS[options.part]()))
        return
    if options.release is None or not (options.release / "fast_itpn").is_dir():
        raise SystemExit("give the path of a sunsmarterjie/iTPN checkout (the folder holding fast_itpn/)")
    source = {"repository": "sunsmarterjie/iTPN", "commit": commit_of(options.release, options.commit)}
    parts = {part: run_part(part, options.release.resolve()) for part in PARTS}
    outputs = {
        "released_param_groups.json": {**source, "fast_itpn": parts["fast_itpn"]["param_groups"],
                                       "itpn_clip": parts["itpn_clip"]["param_groups"]},
        "released_transforms.json": {**source, "fast_itpn": parts["fast_itpn"]["transforms"],
                                     "itpn_clip": parts["itpn_clip"]["transforms"],
                                     "itpn_clip_pretrain": parts["itpn_clip"]["pretrain_transforms"]},
    }
    outputs["released_pixel_mim.json"] = {**source, **parts["itpn_pixel"]}
    outputs["released_clip_distill.json"] = {**source, **parts["itpn_clip_loss"]}
    for name, payload in outputs.items():
        (FIXTURES / name).write_text(json.dumps(payload, separators=(",", ":")) + "\n")
        print(f"wrote {FIXTURES / name}")


if __name__ == "__main__":
    main()
