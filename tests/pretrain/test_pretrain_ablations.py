"""The paper's pre-training ablations: without integral pre-training (Table 8's first row, HiViT alone)
and the convolutional stem and pyramid (Table 9's rows marked *). Each trains, and its export loads
into the fine-tuning models."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import timm
import torch

from itpn.models import load_checkpoint
from itpn.models.checkpoint import CheckpointMismatchError
from itpn.pretrain import PretrainConfig, run_pretraining


def _losses(url: str) -> list[float]:
    return [json.loads(line)["loss"] for line in Path(url).read_text().splitlines()]


def _tiny_model(tiny_arch, **kwargs):
    torch.manual_seed(0)
    return timm.create_model("fast_itpn_tiny_patch16_224", **{**tiny_arch, "img_size": 64, **kwargs}).eval()


@pytest.mark.parametrize("cmlp", [True, False])
def test_masked_units_never_reach_the_visible_ones(tiny_arch, cmlp):
    model = _tiny_model(tiny_arch, pyramid=True, cmlp=cmlp)
    images = torch.randn(1, 3, 64, 64)
    ids_keep = torch.tensor([[0, 5, 6, 10]])  # unit 1 (top row, second column) is masked
    changed = images.clone()
    changed[:, :, 0:16, 16:32] += 3.0
    with torch.no_grad():
        out, out_changed = model.forward_backbone(images, ids_keep), model.forward_backbone(changed, ids_keep)
        levels = model.pyramid(out.stage1, out.stage2, out.tokens, out.layout)
        levels_changed = model.pyramid(out_changed.stage1, out_changed.stage2, out_changed.tokens, out_changed.layout)
    for before, after in zip(levels, levels_changed):
        torch.testing.assert_close(before, after)


def test_convolution_mixes_neighbouring_units_and_c_mlp_does_not(tiny_arch):
    images = torch.randn(1, 3, 64, 64)
    changed = images.clone()
    changed[:, :, 0:16, 16:32] += 3.0  # unit 1; unit 0 is its left neighbour
    moved = {}
    for cmlp in (True, False):
        model = _tiny_model(tiny_arch, pyramid=True, cmlp=cmlp)
        with torch.no_grad():
            before, after = model.forward_backbone(images), model.forward_backbone(changed)
        moved[cmlp] = (after.stage1[:, 0] - before.stage1[:, 0]).abs().max().item()
    assert moved[True] == 0.0  # C-MLP: a unit's stem features depend on its own pixels only
    assert moved[False] > 1e-3


def test_convolutional_model_needs_the_layout_of_its_units(tiny_arch):
    model = _tiny_model(tiny_arch, pyramid=True, cmlp=False)
    out = model.forward_backbone(torch.randn(1, 3, 64, 64))
    with pytest.raises(ValueError, match="UnitLayout"):
        model.pyramid(out.stage1, out.stage2, out.tokens)


@pytest.mark.parametrize("ablation", [
    dict(integral=False, teacher="none"),
    dict(model_kwargs={"cmlp": False}, teacher="none"),
    dict(model_kwargs={"cmlp": False}, teacher="ema"),
])
def test_every_ablation_trains_and_its_export_loads_downstream(tiny_config, tiny_arch, smooth_images,
                                                               tensor_dataset, tmp_path, ablation):
    overrides = dict(ablation)
    model_kwargs = {**tiny_arch, **overrides.pop("model_kwargs", {})}
    model_kwargs.pop("img_size")
    config = tiny_config(tmp_path / "run", model_kwargs=model_kwargs, total_steps=30, warmup_steps=3, lr=2e-3,
                         **overrides)
    result = run_pretraining(config, tensor_dataset(smooth_images(4)))
    losses = _losses(result.metrics_url)
    assert sum(losses[-5:]) / 5 < 0.9 * sum(losses[:5]) / 5

    classifier = timm.create_model(config.model, num_classes=10, img_size=32, **model_kwargs)
    report = load_checkpoint(classifier, result.export_url)
    assert all(key.startswith(("head.", "norm.", "fc_norm.")) for key in report.initialised)

    dense = timm.create_model(config.model, pyramid=True, img_size=32, **model_kwargs)
    if config.integral:
        report = load_checkpoint(dense, result.export_url)
        assert report.initialised == [] and any(key.startswith("pyramid.") for key in report.loaded)
    else:  # HiViT pre-trained alone: the pyramid starts from scratch downstream (Table 8, first row)
        with pytest.raises(CheckpointMismatchError, match="load_pyramid=False"):
            load_checkpoint(dense, result.export_url)
        report = load_checkpoint(dense, result.export_url, skip=("pyramid.",))
        assert report.initialised and all(key.startswith("pyramid.") for key in report.initialised)
        assert any(key.startswith("blocks.") for key in report.loaded)


def test_skipping_the_pyramid_leaves_it_at_initialisation(tiny_arch, tmp_path):
    from itpn.models import save_safetensors

    trained = _tiny_model(tiny_arch, pyramid=True)
    with torch.no_grad():
        for parameter in trained.parameters():
            parameter.add_(1.0)
    save_safetensors(trained.state_dict(), str(tmp_path / "export.safetensors"), {})
    fresh = _tiny_model(tiny_arch, pyramid=True)
    initial = {key: value.clone() for key, value in fresh.state_dict().items()}
    report = load_checkpoint(fresh, str(tmp_path / "export.safetensors"), skip=("pyramid.",))
    state = fresh.state_dict()
    for key in state:
        if key.startswith("pyramid."):
            torch.testing.assert_close(state[key], initial[key])
            assert report.dropped[key].startswith("left out on request")
        else:
            torch.testing.assert_close(state[key], trained.state_dict()[key])


def test_mfm_without_the_pyramid_is_refused_by_name():
    with pytest.raises(ValueError, match="teacher='none'"):
        PretrainConfig(integral=False, teacher="ema", total_steps=1)
