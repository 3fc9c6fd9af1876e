"""The pre-training recipes against the released code (issue 19): the iTPN-CLIP augmentation and block
masks (fixture (d), written by tools/released_fixtures.py from sunsmarterjie/iTPN)."""
import json
from pathlib import Path

import numpy as np
import timm
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.transforms.functional import to_tensor

from itpn.data.transforms import transform_params
from itpn.pretrain import MaskGenerator, PretrainConfig
from itpn.pretrain.data import TwoViewResizedCrop, clip_pretrain_transform

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
