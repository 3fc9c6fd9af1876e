"""The fine-tuning recipes against the released scripts (issue 19): every parameter's lr scale and weight
decay (fixture (c)), and the augmentation's parameters (fixture (d)); fixtures written by
tools/released_fixtures.py from sunsmarterjie/iTPN."""
import json
from pathlib import Path

import pytest
import timm
import torch

from itpn.data.transforms import build_classification_transform, transform_params
from itpn.finetune import ClassificationConfig
from itpn.finetune.optim import lr_scales_and_decays, param_groups
from itpn.models.checkpoint import convert_official

FIXTURES = Path(__file__).parents[1] / "models" / "fixtures"
PARAM_GROUPS = json.loads((FIXTURES / "released_param_groups.json").read_text())
TRANSFORMS = json.loads((FIXTURES / "released_transforms.json").read_text())


def _released_in_our_names(released: dict, depths: tuple[int, int, int]) -> dict[str, tuple[float, float]]:
    """The released (lr_scale, weight_decay) per parameter under our names (the checkpoint converter's map;
    the released q/k/v projections, one tensor here, must agree)."""
    values = {name: torch.tensor(pair, dtype=torch.float64) for name, pair in released.items()}
    ours = {}
    for name, value in convert_official(values, depths).items():
        pairs = value.reshape(-1, 2)
        assert (pairs == pairs[0]).all(), f"{name}: the released parts it merges disagree: {pairs.tolist()}"
        ours[name] = (pairs[0, 0].item(), pairs[0, 1].item())
    return ours


@pytest.mark.parametrize("family,size,model", [
    ("fast_itpn", "tiny", "fast_itpn_tiny_patch16_224"), ("fast_itpn", "small", "fast_itpn_small_patch16_224"),
    ("fast_itpn", "base", "fast_itpn_base_patch16_224"), ("fast_itpn", "large", "fast_itpn_large_patch16_224"),
    ("itpn_clip", "base", "itpn_base_patch16_224"), ("itpn_clip", "large", "itpn_large_patch16_224"),
])
def test_every_parameters_lr_scale_and_weight_decay_equal_the_released(family, size, model):
    released = PARAM_GROUPS[family][size]
    config = ClassificationConfig(model=model, recipe=family, data_url="x")
    assert config.layer_decay == released["layer_decay"] and config.weight_decay == released["weight_decay"]
    with torch.device("meta"):
        network = timm.create_model(model, num_classes=1000, **config.model_kwargs)
    assert network.final_norm == "post_pool"  # the released fine-tuning averages, then normalises (use_mean_pooling)
    ours = lr_scales_and_decays(network, param_groups(network, config.weight_decay, config.layer_decay,
                                                      config.layer_decay_rule))
    expected = _released_in_our_names(released["params"], network.depths)
    assert sorted(ours) == sorted(expected)
    differ = {name: (ours[name], expected[name]) for name in ours if ours[name] != expected[name]}
    assert not differ, f"{len(differ)} of {len(ours)} parameters differ, e.g. {list(differ.items())[:3]}"


@pytest.mark.parametrize("recipe,model", [("fast_itpn", "fast_itpn_base_patch16_224"),
                                          ("itpn_clip", "itpn_base_patch16_224")])
def test_augmentation_parameters_equal_the_released(recipe, model):
    """fast_itpn/datasets.py and itpn_clip/datasets.py ``build_transform`` with the README's arguments:
    crop scale/ratio, interpolation, RandAugment, erasing, and the statistics (ImageNet for Fast-iTPN through
    --imagenet_default_mean_and_std, Inception 0.5 for iTPN-CLIP)."""
    config = ClassificationConfig(model=model, recipe=recipe, data_url="x")
    for is_train, split in ((True, "train"), (False, "eval")):
        ours = build_classification_transform(is_train, config.img_size, auto_augment=config.auto_augment,
                                              re_prob=config.reprob, color_jitter=config.color_jitter,
                                              crop_pct=config.crop_pct, mean=config.mean, std=config.std)
        assert transform_params(ours) == TRANSFORMS[recipe][split], split


def test_itpn_models_fine_tune_with_the_itpn_recipes():
    """Paper 5.2 for iTPN (not Fast-iTPN's table), the released itpn_clip README's as a named recipe."""
    paper = ClassificationConfig(model="itpn_base_patch16_224", data_url="x")
    assert (paper.recipe, paper.lr, paper.epochs, paper.warmup_epochs, paper.layer_decay, paper.layer_decay_rule) == (
        "itpn", 5e-4, 100, 5, 0.65, "itpn")
    large = ClassificationConfig(model="itpn_large_patch16_224", data_url="x")
    assert (large.lr, large.epochs, large.layer_decay) == (1e-3, 50, 0.70)
    clip = ClassificationConfig(model="itpn_base_patch16_224", recipe="itpn_clip", data_url="x")
    assert (clip.lr, clip.warmup_epochs, clip.layer_decay, clip.drop_path, clip.mean) == (
        5e-4, 20, 0.60, 0.1, (0.5, 0.5, 0.5))
    assert clip.model_kwargs == {"init_values": 0.1, "stem_init_values": 0.1}
    with pytest.raises(ValueError, match="recipe 'itpn' has no settings for small models"):
        ClassificationConfig(model="hivit_small_patch16_224", data_url="x")
    with pytest.raises(ValueError, match="recipe must be one of fast_itpn, itpn, itpn_clip, itpn_pixel"):
        ClassificationConfig(model="itpn_base_patch16_224", recipe="itpn_clips", data_url="x")
    with pytest.raises(ValueError, match=r"std must be one positive value per channel"):
        ClassificationConfig(model="itpn_base_patch16_224", data_url="x", std=[0.5, 0.5])
