"""The CLIP teacher, with a tiny randomly initialised open_clip model saved to disk (no download)."""
from __future__ import annotations

import json
from pathlib import Path

import open_clip
import pytest
import torch

from itpn.pretrain import ClipTeacher, MaskGenerator, Trainer, run_pretraining
from itpn.pretrain.trainer import build_objective

TINY_CLIP = {
    "embed_dim": 24,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2, "layers": 1},
}


@pytest.fixture
def tiny_clip(tmp_path: Path) -> tuple[str, str]:
    """(model-config JSON path, checkpoint path) of a random open_clip ViT with 8 px patches."""
    config = tmp_path / "tiny-clip-test.json"
    config.write_text(json.dumps(TINY_CLIP))
    open_clip.add_model_config(config)
    torch.manual_seed(0)
    model = open_clip.create_model("tiny-clip-test")
    checkpoint = tmp_path / "tiny-clip.pt"
    torch.save(model.state_dict(), checkpoint)
    return str(config), str(checkpoint)


def test_clip_teacher_sees_the_full_image_normalised_with_clip_statistics(tiny_clip):
    config, checkpoint = tiny_clip
    teacher = ClipTeacher(config, checkpoint, student_grid=(2, 2))
    assert teacher.input_size == (16, 16)  # the teacher's patch grid equals the student's 2x2 units
    seen = {}
    teacher.visual.conv1.register_forward_pre_hook(lambda module, args: seen.setdefault("input", args[0]))
    images = torch.full((2, 3, 32, 32), 0.5)
    targets = teacher(images)
    mean = torch.tensor(open_clip.OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(open_clip.OPENAI_DATASET_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(seen["input"], ((0.5 - mean) / std).expand(2, 3, 16, 16))
    assert targets.clip.shape == (2, 4, TINY_CLIP["embed_dim"])
    assert not any(p.requires_grad for p in teacher.parameters())


def test_clip_head_is_compared_at_the_visible_units(tiny_config, tiny_clip, tmp_path):
    config_path, checkpoint = tiny_clip
    config = tiny_config(tmp_path, teacher="clip", clip_model=config_path, clip_checkpoint=checkpoint)
    teacher = ClipTeacher(config_path, checkpoint, (2, 2))
    objective = build_objective(config, clip_dim=teacher.dim)
    mask = MaskGenerator((2, 2), 0.5)(2, torch.Generator().manual_seed(0))
    images = torch.rand(2, 3, 32, 32)
    losses = objective(images, mask, teacher(images))
    assert set(losses) == {"loss", "mim", "mfm_clip"}
    assert config.feature_loss == "smooth_l1"
    torch.testing.assert_close(losses["loss"], losses["mim"] + 0.3 * losses["mfm_clip"])
    losses["loss"].backward()
    assert objective.clip_head.level_proj[2].weight.grad.abs().sum() > 0


def test_clip_pretraining_lowers_the_logged_clip_term(tiny_config, tiny_clip, smooth_images, tensor_dataset, tmp_path):
    """The student learns to match the frozen CLIP teacher: the logged cosine distance falls."""
    config_path, checkpoint = tiny_clip
    config = tiny_config(tmp_path / "run", teacher="clip", clip_model=config_path, clip_checkpoint=checkpoint,
                         mfm_loss="cosine", total_steps=16)
    result = run_pretraining(config, tensor_dataset(smooth_images(4)))
    rows = [json.loads(line) for line in Path(result.metrics_url).read_text().splitlines()]
    clip = [row["mfm_clip"] for row in rows]
    assert len(clip) == 16
    assert sum(clip[-4:]) / 4 < 0.7 * sum(clip[:4]) / 4, clip


def test_missing_clip_checkpoint_fails_before_training_naming_the_path(tiny_config, tmp_path):
    missing = tmp_path / "weights" / "ViT-L-14.bin"
    config = tiny_config(tmp_path / "run", teacher="clip", clip_model="ViT-L-14", clip_checkpoint=str(missing))
    with pytest.raises(FileNotFoundError, match=str(missing)):
        Trainer(config, dataset=None)  # fails before the (absent) data set is even looked at
    assert not (tmp_path / "run").exists()
