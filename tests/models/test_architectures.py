"""Every registered size: parameter counts of the released code, output shapes at the paper's
input sizes, timm creation and the errors a user sees for bad input."""
import shutil
from pathlib import Path

import pytest
import timm
import torch

from itpn.models import MODEL_NAMES, create_model

# Parameter counts of the released code with a 1000-class head, in millions.
RELEASED_PARAMS = {
    "fast_itpn_tiny_patch16_224": 24.2,
    "fast_itpn_small_patch16_224": 39.9,
    "fast_itpn_base_patch16_224": 84.8,
    "fast_itpn_large_patch16_224": 312.0,
    "itpn_base_patch16_224": 78.6,
    "itpn_large_patch16_224": 288.5,
    "hivit_tiny_patch16_224": 19.2,
    "hivit_small_patch16_224": 37.5,
    "hivit_base_patch16_224": 66.4,
}
EMBED_DIM = {"tiny": 384, "small": 384, "base": 512, "large": 768}
SIZES = [(224, 224), (512, 512), (800, 1344), (1024, 1024)]


def _meta_model(name, **kwargs):
    with torch.device("meta"):
        return timm.create_model(name, **kwargs)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_parameter_count_matches_released_code(name):
    model = _meta_model(name, num_classes=1000)
    millions = sum(p.numel() for p in model.parameters()) / 1e6
    assert abs(millions - RELEASED_PARAMS[name]) < 0.1, f"{name}: {millions:.3f}M"


@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_backbone_maps_and_logits_shapes(name, size):
    dim = EMBED_DIM[name.split("_")[-3]]
    model = _meta_model(name, num_classes=7)
    with torch.device("meta"):
        image = torch.empty(2, 3, *size)
        maps = model.forward_features(image)
        logits = model.forward_head(maps)
    height, width = size
    assert {k: tuple(v.shape) for k, v in maps.items()} == {
        "s4": (2, dim // 4, height // 4, width // 4),
        "s8": (2, dim // 2, height // 8, width // 8),
        "s16": (2, dim, height // 16, width // 16),
    }
    assert tuple(logits.shape) == (2, 7)


@pytest.mark.parametrize("name", [n for n in MODEL_NAMES if not n.startswith("hivit")])
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_pyramid_outputs_strides_4_to_64(name, size):
    model = _meta_model(name, pyramid=True, pyramid_extra_levels=2)
    with torch.device("meta"):
        maps = model(torch.empty(1, 3, *size))
    height, width = size
    assert list(maps) == ["s4", "s8", "s16", "s32", "s64"]
    for stride, feature_map in zip((4, 8, 16, 32, 64), maps.values()):
        assert tuple(feature_map.shape) == (1, 256, height // stride, width // stride)


def test_real_forward_values_are_finite_and_depend_on_input():
    model = timm.create_model("fast_itpn_tiny_patch16_224", num_classes=5).eval()
    with torch.no_grad():
        first = model(torch.randn(2, 3, 224, 224))
        second = model(torch.randn(2, 3, 224, 224))
    assert first.shape == (2, 5) and torch.isfinite(first).all()
    assert not torch.allclose(first, second)


def test_non_square_input_interpolates_position_embedding():
    model = timm.create_model("itpn_base_patch16_224", num_classes=0, pyramid=True, depths=(1, 1, 1)).eval()
    with torch.no_grad():
        maps = model(torch.randn(1, 3, 160, 96))
    assert maps["s4"].shape == (1, 256, 40, 24)
    resampled = model.position_embedding((10, 6))
    assert resampled.shape == (1, 60, 512)


def test_timm_create_model_sets_classes_and_loads_the_local_pretrained_file(tmp_path, monkeypatch):
    """``pretrained=True`` loads ``$ITPN_CHECKPOINT_DIR/<name>.pth``, the variable read when loading (set here
    after ``import itpn.models``): the released model's logits; another class count keeps the backbone."""
    fixture_file = Path(__file__).parent / "fixtures" / "released_fast_itpn_micro.pth"
    fixture = torch.load(fixture_file, weights_only=True)
    shutil.copy(fixture_file, tmp_path / "fast_itpn_tiny_patch16_224.pth")
    monkeypatch.setenv("ITPN_CHECKPOINT_DIR", str(tmp_path))
    micro = dict(img_size=64, embed_dim=64, depths=(1, 1, 2), num_heads=2)
    model = timm.create_model("fast_itpn_tiny_patch16_224", pretrained=True, num_classes=10, **micro).eval()
    assert model.pretrained_cfg.get("hf_hub_id") is None and not model.pretrained_cfg.get("url")
    with torch.no_grad():
        logits = model(fixture["input"])
    assert ((logits - fixture["logits"]).norm() / fixture["logits"].norm()) <= 1e-5
    other = timm.create_model("fast_itpn_tiny_patch16_224", pretrained=True, num_classes=37, **micro)
    assert other.head.out_features == 37
    assert torch.equal(other.blocks[1].attn.qkv.weight, model.blocks[1].attn.qkv.weight)


def test_pretrained_without_local_file_names_the_path(tmp_path, monkeypatch):
    missing = tmp_path / "nowhere.pth"
    with pytest.raises(FileNotFoundError, match="nowhere.pth.*nothing is downloaded"):
        timm.create_model("fast_itpn_tiny_patch16_224", pretrained=True,
                          pretrained_cfg_overlay=dict(file=str(missing)))


def test_unknown_model_name_lists_the_models():
    with pytest.raises(ValueError, match="unknown model 'fast_itpn_huge'.*fast_itpn_base_patch16_224"):
        create_model("fast_itpn_huge")


def test_wrong_channel_count_is_named():
    model = timm.create_model("hivit_tiny_patch16_224", depths=(1, 1, 1))
    with pytest.raises(ValueError, match="3-channel images, got 1 channels"):
        model(torch.randn(1, 1, 64, 64))


def test_size_not_multiple_of_16_suggests_a_size():
    model = timm.create_model("hivit_tiny_patch16_224", depths=(1, 1, 1))
    with pytest.raises(ValueError, match="100x64 is not a multiple of 16.*112x64"):
        model(torch.randn(1, 3, 100, 64))


def test_pyramid_model_refuses_a_classifier():
    with pytest.raises(ValueError, match="num_classes=0"):
        timm.create_model("fast_itpn_tiny_patch16_224", pyramid=True, num_classes=10)


def test_unknown_model_argument_is_named():
    with pytest.raises(TypeError, match="pyramid_dim"):
        timm.create_model("fast_itpn_tiny_patch16_224", pyramid_dim=128)
