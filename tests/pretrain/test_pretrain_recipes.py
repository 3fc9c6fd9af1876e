"""The pre-training recipes against the released code (issue 19): the iTPN-CLIP augmentation and block
masks (fixture (d), written by tools/released_fixtures.py from sunsmarterjie/iTPN)."""
import json
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.transforms.functional import to_tensor

from itpn.data.transforms import transform_params
from itpn.pretrain import MaskGenerator, PretrainConfig
from itpn.pretrain.data import TwoViewResizedCrop, clip_pretrain_transform
from itpn.pretrain.objective import mae_sincos_pos_embed
from itpn.pretrain.trainer import build_objective

TRANSFORMS = json.loads((Path(__file__).parents[1] / "models" / "fixtures" / "released_transforms.json").read_text())


def test_clip_recipe_augmentation_equals_the_released():
    """itpn_clip/datasets.py DataAugmentationForiTPN for the README's iTPN-B / CLIP-B command: colour jitter 0.4,
    flip, one crop of scale 0.08-1 giving the student's bicubic 224 view and the teacher's lanczos 224 view; the
    student normalised with Inception 0.5 (here by the model, from its pretrained config), the teacher not."""
    released = TRANSFORMS["itpn_clip_pretrain"]
    config = PretrainConfig.from_recipe("itpn_clip_b16", clip_checkpoint="/weights/ViT-B-16.pt")
    ours = transform_params(clip_pretrain_transform(config.img_size, 224, config.min_crop_scale, config.color_jitter,
                                                    config.teacher_interpolation))
    assert ours[:2] == released["common"][:2]  # ColorJitter(0.4, 0.4, 0.4), RandomHorizontalFlip(0.5)
    crop = {key: value for key, value in ours[2].items() if key != "type"}
    assert crop == {key: value for key, value in released["common"][2].items() if key != "type"}
    normalize = released["student"][-1]
    cfg = timm.create_model(config.model, pretrained=False, num_classes=0).pretrained_cfg
    assert (list(cfg["mean"]), list(cfg["std"])) == (normalize["mean"], normalize["std"])
    assert released["teacher"] == [{"type": "ToTensor"}]  # the teacher's view in [0, 1], as ours


def test_teacher_view_is_the_students_crop_at_its_own_size():
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (6, 6, 3), dtype=np.uint8)).resize((96, 96), Image.BICUBIC)
    torch.manual_seed(0)
    student, teacher = clip_pretrain_transform(32, 48, color_jitter=0.0)(image)
    assert student.shape == (3, 32, 32) and teacher.shape == (3, 48, 48)
    shrunk = F.interpolate(teacher[None], size=(32, 32), mode="bicubic", antialias=True)[0]
    assert (shrunk - student).abs().mean() < 0.02  # the same crop (another crop differs by ~0.1)
    torch.manual_seed(1)
    other = to_tensor(TwoViewResizedCrop(32, 48)(image)[0])
    assert (other - student).abs().mean() > 0.02


def test_beit_block_masks_never_exceed_the_count_and_may_stop_short():
    """masking_generator.py: blocks added while they fit the count, ending at the first block that adds nothing."""
    released = TRANSFORMS["itpn_clip_pretrain"]["mask"]
    config = PretrainConfig.from_recipe("itpn_clip_b16", clip_checkpoint="/weights/ViT-B-16.pt")
    masks = MaskGenerator((14, 14), config.mask_ratio, mode=config.mask_mode)
    assert (masks.num_masked, masks.min_block) == (released["num_masking_patches"], released["min_num_patches"])
    mask = masks.per_sample(list(range(200)))
    counts = mask.masked.sum(dim=1)
    assert mask.ids_keep is None and counts.max() <= 75 and counts.min() < 75 and counts.float().mean() > 60
    grid = mask.masked.view(-1, 14, 14)
    agree = (grid[:, :, 1:] == grid[:, :, :-1]).float().mean()
    assert agree > 0.8  # contiguous blocks
    torch.testing.assert_close(masks.per_sample([7]).masked, masks.per_sample([7]).masked)


PIXEL = json.loads((Path(__file__).parents[1] / "models" / "fixtures" / "released_pixel_mim.json").read_text())


def test_pixel_mim_loss_and_every_gradient_equal_the_released():
    """Fixture (b): itpn_pixel/models/models_itpn_mim.py run with our tiny itpn_pixel model's weights on a fixed
    batch and mask: the loss within 1e-5 relative, every parameter's gradient norm within 1e-4."""
    config = PretrainConfig.from_recipe("itpn_pixel", **PIXEL["settings"])
    torch.manual_seed(PIXEL["seed"])
    objective = build_objective(config)
    weights = sum(value.abs().sum().item() for value in objective.state_dict().values())
    assert weights == pytest.approx(PIXEL["weights_abs_sum"], rel=1e-6), \
        "the model starts from other weights than the fixture's: rerun tools/released_fixtures.py"
    grid = config.img_size // 16
    mask = MaskGenerator((grid, grid), config.mask_ratio)(2, torch.Generator().manual_seed(PIXEL["mask_seed"]))
    images = torch.rand(2, 3, config.img_size, config.img_size,
                        generator=torch.Generator().manual_seed(PIXEL["image_seed"]))
    losses = objective.train()(images, mask)
    assert losses["mim"].item() == pytest.approx(PIXEL["loss"], rel=1e-5)
    losses["mim"].backward()
    named = dict(objective.named_parameters())
    assert len(PIXEL["grad_norms"]) > 100
    for name, norm in PIXEL["grad_norms"].items():
        assert named[name].grad.norm().item() == pytest.approx(norm, rel=1e-4, abs=1e-8), name


def test_sincos_positions_are_laid_out_as_the_released():
    released = torch.tensor(PIXEL["sincos_pos_embed_32x4x4"], dtype=torch.float32)
    torch.testing.assert_close(mae_sincos_pos_embed((4, 4), 32), released, rtol=0, atol=1e-6)
    config = PretrainConfig.from_recipe("itpn_pixel", **PIXEL["settings"])
    encoder = build_objective(config).encoder
    torch.testing.assert_close(encoder.pos_embed[0], mae_sincos_pos_embed(encoder.pos_grid, encoder.embed_dim))
