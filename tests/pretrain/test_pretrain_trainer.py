"""The pre-training loop: learning, exact resume, bad input, export, config."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import timm
import torch
import yaml

from itpn.models import load_checkpoint
from itpn.pretrain import NonFiniteLossError, PretrainConfig, Trainer, run_pretraining
from itpn.pretrain.__main__ import main as cli_main


def read_metrics(url: str) -> list[dict]:
    return [json.loads(line) for line in Path(url).read_text().splitlines()]


def test_total_loss_falls_over_30_steps(tiny_config, smooth_images, tensor_dataset, tmp_path):
    data = tensor_dataset(smooth_images(4))
    config = tiny_config(tmp_path / "run", batch_size=4, total_steps=30, warmup_steps=3, lr=2e-3)
    result = run_pretraining(config, data)
    losses = [row["loss"] for row in read_metrics(result.metrics_url)]
    assert len(losses) == 30 and result.steps_done == 30
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5
    row = read_metrics(result.metrics_url)[-1]
    for key in ("mim", "mfm_s16", "mfm_s8", "mfm_s4", "lr", "img_per_s", "skipped_images", "epoch"):
        assert key in row
    assert row["loss"] == pytest.approx(row["mim"] + 0.3 * (row["mfm_s16"] + row["mfm_s8"] + row["mfm_s4"]), rel=1e-5)


def test_interrupted_and_resumed_run_repeats_the_uninterrupted_losses(tiny_config, image_folder, tmp_path):
    # 16 images, 8 per update: 2 updates per epoch; stopped mid-epoch 2 after crossing an epoch boundary
    common = dict(data_url=str(image_folder), batch_size=4, accum_steps=2, total_steps=4, checkpoint_every=2,
                  drop_path=0.1)
    straight = run_pretraining(tiny_config(tmp_path / "straight", **common))
    first = run_pretraining(tiny_config(tmp_path / "resumed", stop_after_steps=3, **common))
    assert first.steps_done == 3 and Path(first.checkpoint_url).exists()
    resumed = run_pretraining(tiny_config(tmp_path / "resumed", **common))
    assert resumed.steps_done == 4
    expected = [(row["step"], row["loss"], row["mim"], row["mfm_s4"]) for row in read_metrics(straight.metrics_url)]
    observed = [(row["step"], row["loss"], row["mim"], row["mfm_s4"]) for row in read_metrics(resumed.metrics_url)]
    assert [step for step, *_ in observed] == list(range(1, 5))
    for (_, *want), (_, *got) in zip(expected, observed):
        assert got == pytest.approx(want, abs=1e-6)
    straight_weights = torch.load(straight.checkpoint_url, weights_only=False)["ema_teacher"]
    resumed_weights = torch.load(resumed.checkpoint_url, weights_only=False)["ema_teacher"]
    for key, value in straight_weights.items():
        torch.testing.assert_close(resumed_weights[key], value, atol=1e-6, rtol=0)


def test_unreadable_images_are_skipped_and_counted(tiny_config, make_image_folder, tmp_path):
    root = make_image_folder(tmp_path / "images", 8)
    broken = [sorted(folder.glob("*.JPEG"))[0] for folder in sorted((root / "train").iterdir())]
    assert len(broken) == 2  # first image of each class: not neighbours in the data set's order
    for path in broken:
        path.write_bytes(b"not a jpeg at all")
    result = run_pretraining(tiny_config(tmp_path / "run", data_url=str(root), batch_size=8, total_steps=2))
    assert result.steps_done == 2
    assert result.skipped_images == 4  # two broken files, read once per epoch
    assert read_metrics(result.metrics_url)[-1]["skipped_images"] == 4


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_last_good_checkpoint(
        tiny_config, smooth_images, tensor_dataset, tmp_path):
    images = smooth_images(8)
    images[5] = float("nan")
    config = tiny_config(tmp_path / "run", batch_size=4, total_steps=20, checkpoint_every=1)
    trainer = Trainer(config, tensor_dataset(images))
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss .* at step \d+ .*Last good checkpoint: .*checkpoint\.pt"):
        trainer.fit()
    assert trainer.step >= 1  # some updates succeeded before the bad image came up
    checkpoint = torch.load(trainer.checkpoint_url, weights_only=False)
    assert checkpoint["step"] == trainer.step
    assert all(torch.isfinite(value).all() for value in checkpoint["model"].values() if value.is_floating_point())


def test_export_loads_into_the_fine_tuning_models(tiny_config, tiny_arch, smooth_images, tensor_dataset, tmp_path):
    config = tiny_config(tmp_path / "run", total_steps=1)
    result = run_pretraining(config, tensor_dataset(smooth_images(4)))
    kwargs = tiny_arch
    dense = timm.create_model(config.model, pyramid=True, **kwargs)
    report = load_checkpoint(dense, result.export_url)
    assert report.initialised == [] and report.dropped == {}
    assert any(key.startswith("pyramid.") for key in report.loaded)
    classifier = timm.create_model(config.model, num_classes=10, **kwargs)
    report = load_checkpoint(classifier, result.export_url)
    assert all(key.startswith(("head.", "norm.", "fc_norm.")) for key in report.initialised)
    pyramid_dropped = [key for key in report.dropped if key.startswith("pyramid.")]
    assert pyramid_dropped and all("pyramid=True" in report.dropped[key] for key in pyramid_dropped)
    trained = Trainer(config, tensor_dataset(smooth_images(4)))
    trained.restore(trained.checkpoint.load())
    torch.testing.assert_close(dense.pos_embed, trained.objective.encoder.pos_embed)


def test_config_names_an_unknown_key_and_reads_a_params_section(tmp_path):
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['learning_rate'\]"):
        PretrainConfig.from_dict({"learning_rate": 0.1})
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"pretrain": {"model": "fast_itpn_small_patch16_224", "betas": [0.9, 0.98],
                                                   "teacher": "none"}}))
    config = PretrainConfig.from_yaml(str(params), "pretrain")
    assert config.betas == (0.9, 0.98) and config.teacher == "none" and config.mfm_weight == 0.3
    with pytest.raises(ValueError, match="teacher must be one of"):
        PretrainConfig(teacher="dino")


def test_command_line_runs_a_config_file(tiny_config, image_folder, tmp_path, capsys):
    values = tiny_config(tmp_path / "run", data_url=str(image_folder), total_steps=2, teacher="none").to_dict()
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"pretrain": values}))
    assert cli_main(["--config", str(params), "--set", "total_steps=1"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["steps_done"] == 1 and Path(result["export_url"]).exists()
    assert set(read_metrics(result["metrics_url"])[0]) >= {"loss", "mim"}


def test_resume_into_other_settings_names_every_difference(tiny_config, smooth_images, tensor_dataset, tmp_path):
    data = tensor_dataset(smooth_images(4))
    run_pretraining(tiny_config(tmp_path / "run", total_steps=3, stop_after_steps=1, checkpoint_every=1), data)
    other = tiny_config(tmp_path / "run", total_steps=3, lr=2e-3, teacher="none", model_kwargs={
        "depths": [1, 1, 3], "embed_dim": 64, "num_heads": 2, "fpn_dim": 32})
    with pytest.raises(ValueError) as caught:
        Trainer(other, data).fit()
    message = str(caught.value)
    assert "cannot resume from" in message and "checkpoint.pt" in message and "Missing key" not in message
    for expected in ("teacher='ema' there, 'none' here", "lr=0.001 there, 0.002 here", "'depths': [1, 1, 2]",
                     "peak_lr=0.001 there, 0.002 here", "resume=False"):
        assert expected in message
    longer = tiny_config(tmp_path / "run", total_steps=5)  # another schedule
    with pytest.raises(ValueError, match=r"total_steps=3 there, 5 here.*total_steps=3 there, 5 here \(the resolved"):
        Trainer(longer, data).fit()
    # unchanged settings (and a changed checkpoint interval, which is not part of the run) continue it
    assert Trainer(tiny_config(tmp_path / "run", total_steps=3, checkpoint_every=2), data).fit().steps_done == 3


def test_resume_reads_a_format_1_checkpoint_by_what_its_settings_meant(tiny_config, smooth_images, tensor_dataset,
                                                                       tmp_path):
    data = tensor_dataset(smooth_images(4))
    result = run_pretraining(tiny_config(tmp_path / "run", total_steps=2, stop_after_steps=1, mfm_targets="visible"),
                             data)
    state = torch.load(result.checkpoint_url, weights_only=False)
    state["format"] = "itpn-pretrain/1"  # written before 2026-11-30: no mfm_targets, MFM at the visible units
    del state["config"]["mfm_targets"], state["schedule"]
    torch.save(state, result.checkpoint_url)
    with pytest.raises(ValueError, match="mfm_targets='visible' there, 'masked' here"):
        Trainer(tiny_config(tmp_path / "run", total_steps=2), data).fit()  # today's default is masked
    assert Trainer(tiny_config(tmp_path / "run", total_steps=2, mfm_targets="visible"), data).fit().steps_done == 2


def test_named_recipes_cite_the_released_settings_and_yield_to_explicit_keys(tmp_path):
    clip = PretrainConfig.from_recipe("itpn_clip_b16", clip_checkpoint="/weights/ViT-B-16.pt")
    assert (clip.teacher, clip.clip_model, clip.feature_loss, clip.clip_targets) == (
        "clip", "ViT-B-16-quickgelu", "smooth_l1", "all")
    assert (clip.betas, clip.lr, clip.epochs, clip.warmup_epochs, clip.min_lr, clip.clip_grad) == (
        (0.9, 0.98), 1.5e-3, 300, 5, 1e-5, None)
    assert clip.mask_mode == "beit" and round(clip.mask_ratio * 196) == 75
    # itpn_clip/README.md --layer_scale_init_value 0.1 (every block, the stem's included), datasets.py's augmentation
    assert clip.model_kwargs["init_values"] == clip.model_kwargs["stem_init_values"] == 0.1
    assert (clip.color_jitter, clip.min_crop_scale, clip.teacher_interpolation) == (0.4, 0.08, "lanczos")
    fast = PretrainConfig.from_recipe("fast_itpn_clip_l", clip_checkpoint="/weights/ViT-L-14.pt")
    assert (fast.model, fast.clip_model, fast.feature_loss, fast.epochs) == (
        "fast_itpn_base_patch16_224", "ViT-L-14-quickgelu", "cosine", 1600)
    pixel = PretrainConfig.from_recipe("itpn_pixel", betas=[0.9, 0.95], epochs=400)
    # paper 3.3-3.4: the teacher sees the student's masked input, h^s maps V^s per token; models_itpn_mim.py sin-cos
    assert (pixel.teacher, pixel.mfm_targets, pixel.pos_embed_init, pixel.epochs, pixel.blr, pixel.model) == (
        "ema", "visible", "sincos", 400, 1.5e-4, "itpn_base_patch16_224")
    assert PretrainConfig.from_recipe("itpn_clip_b16", clip_checkpoint="x", betas=[0.9, 0.95]).betas == (0.9, 0.95)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"pretrain": {"recipe": "itpn_clip_l14", "clip_checkpoint": "/w.pt", "lr": 1e-4}}))
    from_params = PretrainConfig.from_yaml(str(params), "pretrain")
    assert (from_params.recipe, from_params.clip_model, from_params.lr, from_params.betas) == (
        "itpn_clip_l14", "ViT-L-14-quickgelu", 1e-4, (0.9, 0.98))
    with pytest.raises(ValueError, match="unknown recipe 'itpn_clip'.*itpn_pixel, itpn_clip_b16"):
        PretrainConfig.from_dict({"recipe": "itpn_clip"}, source="params.yaml")


def test_command_line_picks_a_recipe_by_name(image_folder, tmp_path, capsys):
    tiny = {"model": "fast_itpn_tiny_patch16_224", "img_size": 32, "decoder_dim": 32, "decoder_depth": 1,
            "decoder_heads": 2, "batch_size": 4, "total_steps": 1, "warmup_steps": 0, "num_workers": 0,
            "device": "cpu", "amp_dtype": "fp32", "progress": False, "data_url": str(image_folder),
            "model_kwargs": {"depths": [1, 1, 2], "embed_dim": 64, "num_heads": 2, "fpn_dim": 32},
            "output_url": str(tmp_path / "run")}
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"pretrain": tiny}))
    assert cli_main(["--config", str(params), "--recipe", "itpn_pixel", "--set", "epochs=3"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    saved = torch.load(Path(result["checkpoint_url"]), weights_only=False)["config"]
    # the recipe's optimiser (itpn_pixel/main_pretrain.py: betas (0.9, 0.95), no clipping, drop path 0) under
    # the file's model and the command line's epochs
    assert (saved["recipe"], saved["clip_grad"], saved["drop_path"], saved["epochs"], saved["model"]) == (
        "itpn_pixel", None, 0.0, 3, "fast_itpn_tiny_patch16_224")
    with pytest.raises(SystemExit):
        cli_main(["--recipe", "no_such_recipe"])


def test_clip_recipe_builds_the_released_itpn_clip_b16_model():
    from itpn.pretrain.trainer import build_objective

    config = PretrainConfig.from_recipe("itpn_clip_b16", clip_checkpoint="/weights/ViT-B-16.pt")
    with torch.device("meta"):  # shapes only
        objective = build_objective(config, clip_dim=512)
    # the released clip_tpn_base_3324_patch16_224 built as the README's command builds it (LayerScale 0.1, CLIP-B
    # width 512) has 88,738,288 parameters, 27,776 of them gammas (counted on sunsmarterjie/iTPN 638eff4)
    assert sum(p.numel() for p in objective.parameters()) == 88_738_288
    assert sum(p.numel() for name, p in objective.named_parameters() if name.endswith(".gamma")) == 27_776
    heads = {key.split(".")[0] for key in objective.state_dict() if not key.startswith("encoder.")}
    assert heads == {"mask_token", "decoder_embed", "norm", "lm_head", "cls_pt_layers", "norm_cls", "lm_cls_head"}


def test_an_lr_far_above_the_linear_scaled_one_is_warned_about(tiny_config, smooth_images, tensor_dataset, tmp_path,
                                                                caplog):
    """lr 1e-3 at a global batch of 16 is 107x blr 1.5e-4 x 16 / 256: the setting that made MIM alone hurt
    fine-tuning (issue 11 item 8). The warning names the ratio and the linear-scaled value; 2e-4 (21x) and
    an unset lr pass silently."""
    data = tensor_dataset(smooth_images(16))
    with caplog.at_level("WARNING", logger="itpn.pretrain.trainer"):
        Trainer(tiny_config(tmp_path / "high", batch_size=16, total_steps=2, lr=1e-3), data)
    assert "lr 0.001 is 107x the linear-scaled 9.37e-06" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="itpn.pretrain.trainer"):
        Trainer(tiny_config(tmp_path / "fine", batch_size=16, total_steps=2, lr=2e-4), data)
        Trainer(tiny_config(tmp_path / "default", batch_size=16, total_steps=2, lr=None), data)
    assert "linear-scaled" not in caplog.text
