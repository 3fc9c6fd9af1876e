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
    trained.load_checkpoint(result.checkpoint_url)
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
