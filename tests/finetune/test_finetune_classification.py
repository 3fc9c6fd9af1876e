import json

import pytest
import timm
import torch
from safetensors.torch import load_file

from itpn.data import ImageNetFolder, build_classification_transform
from itpn.finetune import ClassificationConfig, ClassificationTrainer, evaluate_variants, run_classification
from itpn.records import read_rows
from itpn.finetune.classification import build_model
from itpn.models import CheckpointMismatchError
from itpn.models.acceleration import VARIANTS, set_acceleration

from finetune_helpers import TINY, write_export


def tiny_config(data_url: str, output_url: str, **overrides) -> ClassificationConfig:
    values = dict(model="fast_itpn_tiny_patch16_224", model_kwargs=TINY, data_url=data_url, output_url=output_url,
                  img_size=32, batch_size=8, epochs=2, warmup_epochs=1, lr=2e-3, num_workers=0, progress=False,
                  log_every=1, resume=True)
    values.update(overrides)
    return ClassificationConfig(**values)


@pytest.fixture(scope="module")
def trained(imagenet_dir, tmp_path_factory):
    """A plain (no mixup, no augmentation) 3-epoch fine-tune whose loss must fall."""
    output = str(tmp_path_factory.mktemp("cls"))
    config = tiny_config(imagenet_dir, output, epochs=3, mixup=0, cutmix=0, smoothing=0, auto_augment=None, reprob=0,
                         color_jitter=0, model_ema=False)
    return config, run_classification(config)


def test_fine_tune_loss_falls_and_records_parse(trained):
    config, result = trained
    curve = read_rows(result.curve_url)
    losses = [row["value"] for row in curve if row["name"] == "loss" and row["split"] == "train"]
    assert len(losses) == 3 * 4  # 32 train images, batch 8: 4 updates per epoch
    assert all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-4:]) < sum(losses[:4])
    metrics = {row["name"]: row for row in read_rows(result.metrics_url)}
    assert set(metrics) == {"top1", "top5"}
    assert metrics["top1"]["task"] == "classification" and metrics["top1"]["split"] == "val"
    assert metrics["top1"]["model"] == config.model and metrics["top1"]["variant"] == "baseline"
    assert result.epochs_done == 3
    # The recorded accuracy is that of the exported weights on the val images, counted here by hand.
    top1, top5 = _accuracy_by_hand(config, result.export_url)
    assert metrics["top1"]["value"] == pytest.approx(top1) and metrics["top5"]["value"] == pytest.approx(top5)
    assert metrics["top1"]["value"] > 25.0  # 4 classes: above chance after 3 epochs


def _accuracy_by_hand(config: ClassificationConfig, export_url: str, variant: str = "baseline") -> tuple[float, float]:
    """(top-1, top-5) in % of the exported weights running ``variant`` on the val split, image by image."""
    model = timm.create_model(config.model, num_classes=4, img_size=32, **TINY).eval()
    set_acceleration(model, variant)
    model.load_state_dict(load_file(export_url), strict=False)
    val = ImageNetFolder(config.data_url, "val", build_classification_transform(False, 32, crop_pct=config.crop_pct))
    with torch.no_grad():
        logits = torch.cat([model(image[None]) for image, _ in val])
    targets = torch.tensor(val.targets)
    ranks = (logits > logits.gather(1, targets[:, None])).sum(1)  # classes scored above the true one
    return 100 * (ranks == 0).float().mean().item(), 100 * (ranks < 5).float().mean().item()


def test_labels_per_class_fine_tunes_on_that_many_images_and_validates_on_all(imagenet_dir, tmp_path):
    config = tiny_config(imagenet_dir, str(tmp_path), epochs=2, batch_size=4, labels_per_class=2, mixup=0, cutmix=0,
                         model_ema=False)
    result = run_classification(config)
    losses = [row for row in read_rows(result.curve_url) if row["name"] == "loss" and row["split"] == "train"]
    assert len(losses) == 2 * 2  # 4 classes x 2 labelled images, batch 4: 2 updates per epoch (8 with every image)
    top1, _ = _accuracy_by_hand(config, result.export_url)  # over the whole val split
    assert {row["name"]: row["value"] for row in read_rows(result.metrics_url)}["top1"] == pytest.approx(top1)
    with pytest.raises(ValueError, match="labels_per_class must be at least 1"):
        tiny_config(imagenet_dir, str(tmp_path), labels_per_class=0)


def test_layer_decay_scales_the_lr_from_stem_to_head(imagenet_dir, tmp_path):
    trainer = ClassificationTrainer(tiny_config(imagenet_dir, str(tmp_path), layer_decay=0.5))
    scale_of = {}
    for group in trainer.optimizer.param_groups:
        for parameter in group["params"]:
            scale_of[id(parameter)] = group["lr_scale"]
    named = dict(trainer.model.named_parameters())
    # stem (0), merge 1, stage-2 block, merge 2, blocks 0..1, then head/fc_norm at the top
    assert scale_of[id(named["head.weight"])] == 1.0
    assert scale_of[id(named["blocks.1.attn.qkv.weight"])] == 0.5
    assert scale_of[id(named["blocks.0.attn.qkv.weight"])] == 0.25
    assert scale_of[id(named["patch_embed.proj.weight"])] < scale_of[id(named["stages.1.merge.reduction.weight"])]


def test_resume_continues_exactly(imagenet_dir, tmp_path):
    """Two epochs in one job equal one epoch, a stop, and a resumed second epoch (mixup, RandAugment, EMA on)."""
    whole = run_classification(tiny_config(imagenet_dir, str(tmp_path / "whole")))
    tiny_config_split = tiny_config(imagenet_dir, str(tmp_path / "split"), stop_after_epochs=1)
    first = run_classification(tiny_config_split)
    assert first.epochs_done == 1
    resumed = run_classification(tiny_config(imagenet_dir, str(tmp_path / "split")))
    assert resumed.epochs_done == 2
    expected, got = load_file(whole.export_url), load_file(resumed.export_url)
    assert expected.keys() == got.keys()
    assert all(torch.equal(expected[key], got[key]) for key in expected)
    assert [r["value"] for r in read_rows(whole.curve_url)] == [r["value"] for r in read_rows(resumed.curve_url)]


def test_a_run_killed_mid_epoch_resumes_exactly_from_its_last_update(imagenet_dir, tmp_path):
    """Killed during update 6 (epoch 2 of 2, 4 updates each) with a checkpoint every update, then resumed
    with two loader workers: the same weights and curve as an uninterrupted run (mixup, RandAugment, EMA)."""
    whole = run_classification(tiny_config(imagenet_dir, str(tmp_path / "whole")))
    killed = ClassificationTrainer(tiny_config(imagenet_dir, str(tmp_path / "killed"), checkpoint_every=1))
    step = killed.optimizer.step

    def step_then_die(*args, **kwargs):
        if killed.updates == 5:
            raise KeyboardInterrupt
        return step(*args, **kwargs)

    killed.optimizer.step = step_then_die
    with pytest.raises(KeyboardInterrupt):
        killed.fit()
    saved = torch.load(tmp_path / "killed" / "checkpoint.pt", weights_only=True)
    assert (saved["epoch"], saved["updates"]) == (1, 5)

    resumed = run_classification(tiny_config(imagenet_dir, str(tmp_path / "killed"), num_workers=2))
    assert resumed.epochs_done == 2
    expected, got = load_file(whole.export_url), load_file(resumed.export_url)
    assert all(torch.equal(expected[key], got[key]) for key in expected)
    assert read_rows(whole.curve_url) == read_rows(resumed.curve_url)


def test_resume_refuses_a_checkpoint_of_another_run(imagenet_dir, tmp_path):
    run_classification(tiny_config(imagenet_dir, str(tmp_path), epochs=1, warmup_epochs=0))
    with pytest.raises(ValueError, match="lr=0.002.*resume=False"):
        run_classification(tiny_config(imagenet_dir, str(tmp_path), epochs=1, warmup_epochs=0, lr=1e-3))


def test_resume_reads_a_checkpoint_written_before_checkpoints_named_their_format(imagenet_dir, tmp_path):
    """Format 1 (before 2026-11-30): no format key, the settings as JSON text, no resolved schedule."""
    plain = dict(mixup=0, cutmix=0, auto_augment=None, reprob=0, model_ema=False)
    run_classification(tiny_config(imagenet_dir, str(tmp_path), stop_after_epochs=1, **plain))
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    del state["format"], state["schedule"]
    state["config"] = json.dumps(state["config"])
    torch.save(state, tmp_path / "checkpoint.pt")
    with pytest.raises(ValueError, match="lr=0.002 there, 0.001 here"):
        run_classification(tiny_config(imagenet_dir, str(tmp_path), lr=1e-3, **plain))
    assert run_classification(tiny_config(imagenet_dir, str(tmp_path), **plain)).epochs_done == 2


def test_pretraining_export_initialises_the_backbone(imagenet_dir, tmp_path, tiny_export):
    config = tiny_config(imagenet_dir, str(tmp_path), pretrained=tiny_export)
    model = build_model(config, num_classes=4)
    torch.manual_seed(0)
    scratch = build_model(tiny_config(imagenet_dir, str(tmp_path)), num_classes=4)
    export = load_file(tiny_export)
    state = model.state_dict()
    from_export = [key for key in state if key in export]
    assert set(state) - set(from_export) == {"head.weight", "head.bias", "fc_norm.weight", "fc_norm.bias"}
    # the export's 14x14 position embedding is resampled to the 2x2 grid of 32 px images
    assert export["pos_embed"].shape[1] == 196 and state["pos_embed"].shape[1] == 4
    assert all(torch.equal(state[key], export[key]) for key in from_export if key != "pos_embed")
    images = torch.randn(2, 3, 32, 32)
    features = model.eval().forward_backbone(images).tokens
    assert not torch.allclose(features, scratch.eval().forward_backbone(images).tokens)


def test_checkpoint_of_another_size_is_refused(imagenet_dir, tmp_path):
    export = write_export(tmp_path / "base.safetensors", "fast_itpn_base_patch16_224")
    config = tiny_config(imagenet_dir, str(tmp_path), pretrained=export)
    with pytest.raises(CheckpointMismatchError, match=r"embed dim 512.*\n.*embed dim 384"):
        build_model(config, num_classes=4)


def test_one_checkpoint_under_every_acceleration_variant(trained, imagenet_dir):
    config, result = trained
    rows = evaluate_variants(result.export_url, imagenet_dir, list(VARIANTS), batch_size=8, num_workers=0,
                             progress=False)
    by_variant = {}
    for row in rows:
        by_variant.setdefault(row["variant"], {})[row["name"]] = row["value"]
    assert set(by_variant) == set(VARIANTS)
    assert all(set(values) == {"top1", "top5", "images_per_s", "speedup"} for values in by_variant.values())
    assert by_variant["baseline"]["speedup"] == 1.0
    trained_top1 = next(r["value"] for r in read_rows(result.metrics_url) if r["name"] == "top1")
    assert by_variant["baseline"]["top1"] == pytest.approx(trained_top1)
    for variant, values in by_variant.items():  # each variant's accuracy is that of the weights running it
        assert values["top1"] == pytest.approx(_accuracy_by_hand(config, result.export_url, variant)[0]), variant
    assert all(row["model"] == config.model and row["task"] == "classification" for row in rows)


def test_evaluate_variants_needs_a_fine_tuned_export(tiny_export, imagenet_dir):
    with pytest.raises(ValueError, match="lacks the metadata.*run_classification"):
        evaluate_variants(tiny_export, imagenet_dir, ["baseline"])
