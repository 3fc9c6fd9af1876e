"""Loading released checkpoints: exact logits against the released code, every released key
layout under strict checking, and the error messages of real mismatches."""
from pathlib import Path

import pytest
import timm
import torch

import itpn  # noqa: F401
from itpn.models import CheckpointMismatchError, HiViT, load_checkpoint, save_safetensors
from itpn.models.fast_itpn import _FAST_ITPN
from itpn.models.hivit import _HIVIT

FIXTURES = Path(__file__).parent / "fixtures"
KEYS = FIXTURES / "official_keys"
MICRO = dict(img_size=64, embed_dim=64, depths=(1, 1, 2), num_heads=2)

# The released-code fixtures were produced by the released classes (fast_itpn/modeling_finetune.py
# Fast_iTPN, itpn_clip/modeling_finetune.py iTPN, itpn_pixel/models/models_itpn.py iTPN) built
# with the MICRO sizes and random weights; each file holds {"model": state_dict, "input": x, and
# the released model's outputs}.


def _relative_error(ours, reference):
    return ((ours - reference).norm() / reference.norm()).item()


def test_released_fast_itpn_logits_reproduced():
    fixture = torch.load(FIXTURES / "released_fast_itpn_micro.pth", weights_only=True)
    model = HiViT(num_classes=10, **MICRO, **_FAST_ITPN).eval()
    report = load_checkpoint(model, str(FIXTURES / "released_fast_itpn_micro.pth"))
    assert not report.initialised and not report.dropped
    with torch.no_grad():
        logits = model(fixture["input"])
    assert _relative_error(logits, fixture["logits"]) <= 1e-5


def test_released_itpn_logits_reproduced():
    fixture = torch.load(FIXTURES / "released_itpn_micro.pth", weights_only=True)
    model = HiViT(num_classes=10, **MICRO, **_HIVIT).eval()
    report = load_checkpoint(model, str(FIXTURES / "released_itpn_micro.pth"))
    assert list(report.dropped) == ["relative_position_index"]
    with torch.no_grad():
        logits = model(fixture["input"])
    assert _relative_error(logits, fixture["logits"]) <= 1e-5


def test_released_pixel_pretraining_pyramid_reproduced():
    fixture = torch.load(FIXTURES / "released_itpn_pixel_pyramid_micro.pth", weights_only=True)
    model = HiViT(num_classes=0, pyramid=True, fpn_dim=32, fpn_depth=2, **MICRO, **_HIVIT).eval()
    report = load_checkpoint(model, str(FIXTURES / "released_itpn_pixel_pyramid_micro.pth"))
    assert not report.initialised
    with torch.no_grad():
        maps = model(fixture["input"])
    for name, reference in fixture["pyramid"].items():
        assert _relative_error(maps[name], reference) <= 1e-5, name


def _released_state_dict(key_file):
    """A state dict with exactly the released key names and shapes (values random)."""
    state_dict = {}
    for line in (KEYS / key_file).read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, shape = line.split(" ", 1)
        dims = tuple(int(d) for d in shape.strip("()").split(",") if d.strip())
        if name == "relative_position_index":
            state_dict[name] = torch.zeros(dims, dtype=torch.long)
        elif name.startswith(("head.", "split_16to8.")):
            state_dict[name] = torch.randn(dims) * 0.02
        else:
            state_dict[name] = torch.zeros(dims)
    return state_dict


def _uninitialised(name, **kwargs):
    """A full-size model without the cost of random initialisation (its values are overwritten)."""
    with torch.device("meta"):
        model = timm.create_model(name, **kwargs)
    return model.to_empty(device="cpu")


def _save(tmp_path, state_dict, name="released.pth"):
    path = tmp_path / name
    torch.save({"model": state_dict}, path)
    return str(path)


@pytest.mark.parametrize("key_file, model_name", [
    ("fast_itpn_tiny.txt", "fast_itpn_tiny_patch16_224"),
    ("fast_itpn_small.txt", "fast_itpn_small_patch16_224"),
    ("fast_itpn_base.txt", "fast_itpn_base_patch16_224"),
    ("fast_itpn_large.txt", "fast_itpn_large_patch16_224"),
    ("itpn_base_finetune.txt", "itpn_base_patch16_224"),
    ("itpn_large_finetune.txt", "itpn_large_patch16_224"),
])
def test_every_released_classification_layout_loads_strictly(tmp_path, key_file, model_name):
    released = _released_state_dict(key_file)
    model = _uninitialised(model_name)
    report = load_checkpoint(model, _save(tmp_path, released))
    assert not report.initialised
    assert len(report.loaded) == len(model.state_dict())
    assert torch.equal(model.state_dict()["head.weight"], released["head.weight"])


@pytest.mark.parametrize("key_file, fpn_depth", [("itpn_clip_base_pretrain.txt", 1),
                                                 ("itpn_pixel_base_pretrain.txt", 2)])
def test_pretraining_layouts_load_backbone_and_pyramid(tmp_path, key_file, fpn_depth):
    released = _released_state_dict(key_file)
    model = _uninitialised("itpn_base_patch16_224", pyramid=True, fpn_depth=fpn_depth)
    report = load_checkpoint(model, _save(tmp_path, released))
    # pixel pre-training runs without relative position bias: the tables start at zero (no bias)
    assert all(key.endswith("relative_position_bias_table") for key in report.initialised)
    assert bool(report.initialised) == ("pixel" in key_file)
    assert any(key.startswith("pyramid.fpn_modules.2") for key in report.loaded)
    assert torch.equal(model.pyramid.split_16to8.reduction.weight, released["split_16to8.reduction.weight"])
    assert report.dropped["mask_token"] == "pre-training only"
    assert report.dropped["decoder_embed.0.1.weight"] == "pre-training only"
    assert "pre-training only" in report.summary()


def test_pyramid_keys_dropped_with_reason_for_a_classifier(tmp_path):
    released = _released_state_dict("itpn_clip_base_pretrain.txt")
    model = timm.create_model("itpn_base_patch16_224", num_classes=10)
    report = load_checkpoint(model, _save(tmp_path, released))
    assert "pyramid=True" in report.dropped["pyramid.align_dim_16tofpn.weight"]
    assert set(report.initialised) == {"fc_norm.weight", "fc_norm.bias", "head.weight", "head.bias"}


def test_fpn_dim_mismatch_names_key_and_both_shapes(tmp_path):
    released = _released_state_dict("itpn_pixel_base_pretrain.txt")
    model = timm.create_model("itpn_base_patch16_224", pyramid=True, fpn_depth=2, fpn_dim=512)
    with pytest.raises(CheckpointMismatchError, match=r"pyramid\.align_dim_16to8\.weight: checkpoint \(256, 256\) "
                                                      r"vs model \(512, 256\).*fpn_dim"):
        load_checkpoint(model, _save(tmp_path, released))


def test_missing_layerscale_is_explained(tmp_path):
    released = {k: v for k, v in _released_state_dict("fast_itpn_tiny.txt").items() if "gamma" not in k}
    model = timm.create_model("fast_itpn_tiny_patch16_224")
    with pytest.raises(CheckpointMismatchError, match=r"blocks\.0\.ls1\.gamma.*init_values=0"):
        load_checkpoint(model, _save(tmp_path, released))
    model = timm.create_model("fast_itpn_tiny_patch16_224", init_values=0)
    assert not load_checkpoint(model, _save(tmp_path, released)).initialised


def test_checkpoint_of_another_architecture_is_refused(tmp_path):
    released = _released_state_dict("itpn_base_finetune.txt")
    model = timm.create_model("fast_itpn_base_patch16_224")
    with pytest.raises(CheckpointMismatchError) as error:
        load_checkpoint(model, _save(tmp_path, released))
    message = str(error.value)
    assert "GELU-MLP (iTPN/HiViT)" in message and "SwiGLU/LayerScale (Fast-iTPN)" in message
    assert "shape mismatches" in message or "keys the model does not have" in message


def test_position_embedding_resized_for_another_resolution(tmp_path):
    released = _released_state_dict("fast_itpn_tiny.txt")
    model = timm.create_model("fast_itpn_tiny_patch16_224", img_size=512, num_classes=3)
    report = load_checkpoint(model, _save(tmp_path, released))
    assert report.resized["pos_embed"] == ((1, 196, 384), (1, 1024, 384))
    assert "head.weight" in report.dropped and "head.weight" in report.initialised


def test_own_safetensors_export_round_trips(tmp_path):
    model = timm.create_model("fast_itpn_tiny_patch16_224", pyramid=True, depths=(1, 1, 2))
    url = str(tmp_path / "export.safetensors")
    save_safetensors(model.state_dict(), url, metadata={"model": "fast_itpn_tiny_patch16_224"})
    fresh = timm.create_model("fast_itpn_tiny_patch16_224", pyramid=True, depths=(1, 1, 2))
    report = load_checkpoint(fresh, url)
    assert not report.initialised and not report.dropped
    for key, value in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value)


def test_missing_and_corrupt_files_are_named(tmp_path):
    model = timm.create_model("fast_itpn_tiny_patch16_224", depths=(1, 1, 1))
    with pytest.raises(FileNotFoundError, match="absent.pth"):
        load_checkpoint(model, str(tmp_path / "absent.pth"))
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="corrupt.pth is not a readable PyTorch checkpoint"):
        load_checkpoint(model, str(corrupt))
