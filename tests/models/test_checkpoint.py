"""Loading released checkpoints: exact logits against the released code, every released key
layout under strict checking, and the error messages of real mismatches."""
from pathlib import Path

import pytest
import timm
import torch
from timm.layers import resample_abs_pos_embed

from itpn.models import CheckpointMismatchError, HiViT, load_checkpoint, save_safetensors
from itpn.models.checkpoint import grid_metadata, read_safetensors_metadata
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


def test_checkpoint_without_layerscale_leaves_the_models_gammas_at_their_start(tmp_path):
    """As the released run_itpn_finetuning.py (LayerScale 0.1 on a model loaded non-strictly): the gammas the
    checkpoint lacks keep their initial value and are reported, everything else loads."""
    released = {k: v for k, v in _released_state_dict("fast_itpn_tiny.txt").items() if "gamma" not in k}
    model = timm.create_model("fast_itpn_tiny_patch16_224")
    report = load_checkpoint(model, _save(tmp_path, released))
    assert sorted(report.initialised) == sorted(k for k in model.state_dict() if k.endswith(".gamma"))
    assert torch.equal(model.blocks[0].ls1.gamma, torch.full((384,), 0.1))
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


# --- grids, entry points and byte-deterministic exports (issue 13) --------------------------------
def _micro_fast(img_size, **kwargs):
    return HiViT(num_classes=0, img_size=img_size, embed_dim=64, depths=(1, 1, 2), num_heads=2,
                 **dict(_FAST_ITPN, **kwargs))


def test_export_bytes_do_not_depend_on_the_order_metadata_was_given_in(tmp_path):
    """safetensors keeps metadata in a Rust HashMap (random order per call); DVC must see the same bytes."""
    weights = {"a": torch.arange(6.0).reshape(2, 3), "b": torch.ones(4, dtype=torch.int64)}
    metadata = {f"key{i}": f"value{i}" for i in range(12)}
    payloads = set()
    for attempt in range(6):
        order = list(metadata.items())[::-1] if attempt % 2 else list(metadata.items())
        url = tmp_path / f"export{attempt}.safetensors"
        save_safetensors(weights, str(url), dict(order))
        payloads.add(url.read_bytes())
    assert len(payloads) == 1
    url = str(tmp_path / "export0.safetensors")
    assert list(read_safetensors_metadata(url)) == sorted(metadata)
    from safetensors.torch import load_file

    loaded = load_file(url)
    assert torch.equal(loaded["a"], weights["a"]) and torch.equal(loaded["b"], weights["b"])


def test_export_records_its_grid_and_loads_into_any_other_grid(tmp_path):
    wide = _micro_fast((64, 96))
    torch.nn.init.normal_(wide.pos_embed)
    url = str(tmp_path / "wide.safetensors")
    save_safetensors(wide.state_dict(), url, grid_metadata(wide))
    assert read_safetensors_metadata(url)["pos_grid"] == "4x6"
    for size, grid in (((64, 64), (4, 4)), ((96, 64), (6, 4)), ((128, 160), (8, 10))):
        model = _micro_fast(size)
        report = load_checkpoint(model, url)
        expected = resample_abs_pos_embed(wide.pos_embed.detach(), new_size=list(grid), old_size=[4, 6],
                                          num_prefix_tokens=0)
        torch.testing.assert_close(model.pos_embed.detach(), expected)
        assert report.resized["pos_embed"] == ((1, 24, 64), (1, grid[0] * grid[1], 64))


def test_same_token_count_on_another_grid_is_resampled_not_copied(tmp_path):
    tall = _micro_fast((96, 64))  # 6x4 tokens, the same count as 4x6
    torch.nn.init.normal_(tall.pos_embed)
    url = str(tmp_path / "tall.safetensors")
    save_safetensors(tall.state_dict(), url, grid_metadata(tall))
    wide = _micro_fast((64, 96))
    report = load_checkpoint(wide, url)
    expected = resample_abs_pos_embed(tall.pos_embed.detach(), new_size=[4, 6], old_size=[6, 4], num_prefix_tokens=0)
    torch.testing.assert_close(wide.pos_embed.detach(), expected)
    assert "pos_embed" in report.resized


def test_foreign_file_of_a_non_square_grid_takes_the_grid_as_an_argument(tmp_path):
    wide = _micro_fast((64, 96))
    torch.nn.init.normal_(wide.pos_embed)
    url = str(tmp_path / "foreign.pth")
    torch.save({"model": wide.state_dict()}, url)
    square = _micro_fast((64, 64))
    with pytest.raises(CheckpointMismatchError) as error:
        load_checkpoint(square, url)
    message = str(error.value)
    assert "pos_embed has 24 positions" in message and "source_grid=(height, width)" in message
    assert "missing" not in message
    report = load_checkpoint(square, url, source_grid=(4, 6))
    assert report.resized["pos_embed"] == ((1, 24, 64), (1, 16, 64))
    torch.testing.assert_close(square.pos_embed.detach(), resample_abs_pos_embed(
        wide.pos_embed.detach(), new_size=[4, 4], old_size=[4, 6], num_prefix_tokens=0))
    with pytest.raises(CheckpointMismatchError, match="not the 5x5 source grid"):
        load_checkpoint(square, url, source_grid="5x5")


def test_relative_position_tables_resampled_from_a_non_square_grid(tmp_path):
    wide = HiViT(num_classes=0, img_size=(64, 96), **{k: v for k, v in MICRO.items() if k != "img_size"}, **_HIVIT)
    url = str(tmp_path / "wide_rpe.safetensors")
    save_safetensors(wide.state_dict(), url, grid_metadata(wide))
    square = HiViT(num_classes=0, **MICRO, **_HIVIT)
    report = load_checkpoint(square, url)
    tables = [k for k in report.resized if k.endswith("relative_position_bias_table")]
    assert tables and report.resized[tables[0]][0][0] == 7 * 11 and report.resized[tables[0]][1][0] == 7 * 7


def test_a_real_shape_mismatch_is_not_also_reported_missing(tmp_path):
    model = _micro_fast((64, 64))
    state = model.state_dict()
    state["blocks.0.attn.proj.weight"] = torch.zeros(64, 32)
    url = str(tmp_path / "bad.pth")
    torch.save(state, url)
    with pytest.raises(CheckpointMismatchError) as error:
        load_checkpoint(_micro_fast((64, 64)), url)
    assert "blocks.0.attn.proj.weight: checkpoint (64, 32) vs model (64, 64)" in str(error.value)
    assert "missing" not in str(error.value)


def test_timm_create_model_checkpoint_path_goes_through_load_checkpoint():
    """A released .pth through timm's own entry point: converted, and the released model's logits."""
    fixture = torch.load(FIXTURES / "released_fast_itpn_micro.pth", weights_only=True)
    model = timm.create_model("fast_itpn_tiny_patch16_224", num_classes=10, **MICRO,
                              checkpoint_path=str(FIXTURES / "released_fast_itpn_micro.pth")).eval()
    with torch.no_grad():
        logits = model(fixture["input"])
    assert _relative_error(logits, fixture["logits"]) <= 1e-5


def test_layerscale_checkpoint_into_a_model_without_layerscale_folds_the_gammas(tmp_path):
    """Each gamma is multiplied into the layer it scales, so the model without LayerScale computes what the
    checkpoint's model did (stage-3 attention and MLP, and the stem's LayerScale of iTPN-CLIP)."""
    torch.manual_seed(0)
    with_ls = timm.create_model("itpn_base_patch16_224", num_classes=5, depths=(1, 1, 2), init_values=0.1,
                                stem_init_values=0.1).eval()
    for name, parameter in with_ls.named_parameters():
        if name.endswith(".gamma"):
            parameter.data.uniform_(0.5, 1.5)
    url = str(tmp_path / "ls.safetensors")
    save_safetensors(with_ls.state_dict(), url)
    plain = timm.create_model("itpn_base_patch16_224", num_classes=5, depths=(1, 1, 2)).eval()
    report = load_checkpoint(plain, url)
    assert sum("folded" in why for why in report.dropped.values()) == 2 + 2 * 2
    image = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(plain(image), with_ls(image), rtol=1e-5, atol=1e-6)


