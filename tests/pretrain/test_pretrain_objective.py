"""Masking, the integral objective and the EMA teacher on a tiny Fast-iTPN."""
from __future__ import annotations

import pytest
import torch

from itpn.pretrain import EMATeacher, IntegralPretrainModel, MaskGenerator
from itpn.pretrain.trainer import build_objective


def test_random_mask_partitions_units_reproducibly():
    masks = MaskGenerator((14, 14), 0.75)
    first = masks(3, torch.Generator().manual_seed(5))
    again = masks(3, torch.Generator().manual_seed(5))
    assert first.ids_keep.shape == (3, 49) and first.ids_masked.shape == (3, 147)
    assert torch.equal(first.ids_keep, again.ids_keep)
    for keep, hidden, masked in zip(first.ids_keep, first.ids_masked, first.masked):
        assert sorted(torch.cat([keep, hidden]).tolist()) == list(range(196))
        assert masked[hidden].all() and not masked[keep].any()
    assert not torch.equal(first.ids_keep[0], first.ids_keep[1])


def test_block_mask_masks_the_same_count_in_contiguous_blocks():
    mask = MaskGenerator((14, 14), 0.75, mode="block")(4, torch.Generator().manual_seed(0))
    assert mask.masked.sum(dim=1).tolist() == [147] * 4
    grid = mask.masked[0].view(14, 14)
    # blocks make neighbours agree far more often than uniform masking would (~62%)
    agreement = (grid[:, 1:] == grid[:, :-1]).float().mean()
    assert agreement > 0.75


def test_mask_ratio_out_of_range_is_refused():
    with pytest.raises(ValueError, match="mask_ratio"):
        MaskGenerator((14, 14), 1.0)


def test_masked_units_never_reach_the_backbone_or_pyramid(tiny_config, tmp_path):
    objective = build_objective(tiny_config(tmp_path)).eval()
    mask = MaskGenerator((2, 2), 0.5)(2, torch.Generator().manual_seed(1))
    images = torch.rand(2, 3, 32, 32)
    changed = images.clone()
    for sample, hidden in enumerate(mask.ids_masked):
        for unit in hidden.tolist():
            row, col = divmod(unit, 2)
            changed[sample, :, row * 16:(row + 1) * 16, col * 16:(col + 1) * 16] = torch.rand(3, 16, 16)
    encoder = objective.encoder
    with torch.no_grad():
        before = encoder.forward_backbone(images, mask.ids_keep)
        after = encoder.forward_backbone(changed, mask.ids_keep)
        full = encoder.forward_backbone(images)
        levels_before = encoder.pyramid(before.stage1, before.stage2, before.tokens)
        levels_after = encoder.pyramid(after.stage1, after.stage2, after.tokens)
    assert before.tokens.shape[1] == 2
    for a, b in zip(levels_before, levels_after):
        torch.testing.assert_close(a, b)
    # nothing mixes across a unit boundary before stage 3: the visible units' stage-1/2 features
    # are those of the full image at the same units
    index = mask.ids_keep[:, :, None, None, None]
    torch.testing.assert_close(before.stage1, torch.gather(full.stage1, 1, index.expand_as(before.stage1)))
    torch.testing.assert_close(before.stage2, torch.gather(full.stage2, 1, index.expand_as(before.stage2)))


def test_loss_is_mim_plus_weighted_sum_of_stage_terms(tiny_config, tmp_path):
    objective = build_objective(tiny_config(tmp_path, mfm_weight=0.3))
    teacher = EMATeacher(objective.encoder)
    mask = MaskGenerator((2, 2), 0.5)(2, torch.Generator().manual_seed(0))
    images = torch.rand(2, 3, 32, 32)
    losses = objective(images, mask, teacher(images, mask))
    assert set(losses) == {"loss", "mim", "mfm_s16", "mfm_s8", "mfm_s4"}
    expected = losses["mim"] + 0.3 * (losses["mfm_s16"] + losses["mfm_s8"] + losses["mfm_s4"])
    torch.testing.assert_close(losses["loss"], expected)
    assert all(torch.isfinite(value) and value > 0 for value in losses.values())


def test_objective_refuses_an_encoder_without_pyramid():
    import timm

    encoder = timm.create_model("fast_itpn_tiny_patch16_224", depths=(1, 1, 2), img_size=32, num_classes=0)
    with pytest.raises(ValueError, match="pyramid=True"):
        IntegralPretrainModel(encoder)


def test_ema_teacher_gets_no_gradient_and_follows_the_momentum_rule(tiny_config, tmp_path):
    objective = build_objective(tiny_config(tmp_path))
    teacher = EMATeacher(objective.encoder, momentum=0.9)
    mask = MaskGenerator((2, 2), 0.5)(2, torch.Generator().manual_seed(0))
    images = torch.rand(2, 3, 32, 32)
    objective(images, mask, teacher(images, mask))["loss"].backward()
    assert all(not p.requires_grad and p.grad is None for p in teacher.parameters())
    assert objective.encoder.pos_embed.grad is not None

    before = {name: p.detach().clone() for name, p in teacher.backbone.named_parameters()}
    with torch.no_grad():
        for p in objective.encoder.parameters():
            p.add_(torch.randn_like(p))
    teacher.update(objective.encoder)
    student = dict(objective.encoder.named_parameters())
    for name, p in teacher.backbone.named_parameters():
        torch.testing.assert_close(p, 0.9 * before[name] + 0.1 * student[name].detach())
    assert teacher.backbone.pyramid is None
    assert not teacher.training and not teacher.train().training


def test_mfm_targets_are_the_teachers_features_at_the_masked_units(tiny_config, tmp_path):
    import torch.nn.functional as F
    from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

    objective = build_objective(tiny_config(tmp_path, mfm_targets="masked")).eval()
    teacher = EMATeacher(objective.encoder, targets="masked")
    mask = MaskGenerator((2, 2), 0.5)(2, torch.Generator().manual_seed(4))
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    targets = teacher(images, mask)
    assert [t.shape[1] for t in targets.stages] == [2, 2, 2]  # the two masked units of each image
    # the teacher sees the masked units only: repainting a visible unit changes no target, a masked one does
    for ids, same in ((mask.ids_keep, True), (mask.ids_masked, False)):
        changed = images.clone()
        for sample in range(2):
            row, col = divmod(int(ids[sample, 0]), 2)
            changed[sample, :, row * 16:(row + 1) * 16, col * 16:(col + 1) * 16] = 1.0
        assert torch.equal(teacher(changed, mask).stages[2], targets.stages[2]) is same

    losses = objective(images, mask, targets)
    # by value: h^s maps the decoder's token of each masked unit to the k x k sub-tokens of the teacher's
    # stage-s feature there, against the layer-normalised target
    mean = torch.tensor(IMAGENET_DEFAULT_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_DEFAULT_STD).view(1, 3, 1, 1)
    out = objective.encoder.forward_backbone((images - mean) / std, mask.ids_keep)
    levels = objective.encoder.pyramid(out.stage1, out.stage2, out.tokens)
    _, decoded = objective.decoder(levels, mask, out.grid)
    at_masked = torch.stack([decoded[b, mask.ids_masked[b]] for b in range(2)])
    for index, (name, size, target) in enumerate(zip(("s16", "s8", "s4"), (1, 2, 4), targets.stages)):
        prediction = objective.stage_heads.heads[index](at_masked).reshape(2, 2, size, size, -1)
        target = target.reshape(prediction.shape)
        expected = F.mse_loss(prediction, F.layer_norm(target, target.shape[-1:]))
        torch.testing.assert_close(losses[f"mfm_{name}"], expected)


def test_visible_mfm_targets_keep_the_earlier_reading(tiny_config, tmp_path):
    objective = build_objective(tiny_config(tmp_path, mfm_targets="visible"))
    teacher = EMATeacher(objective.encoder, targets="visible")
    mask = MaskGenerator((4, 4), 0.75)(2, torch.Generator().manual_seed(0))
    images = torch.rand(2, 3, 64, 64)
    with pytest.raises(ValueError, match="mfm_targets='visible'"):
        objective(images, mask, EMATeacher(objective.encoder, targets="masked")(images, mask))
    targets = teacher(images, mask)
    assert [t.shape[1] for t in targets.stages] == [4, 4, 4]  # the four visible units
    assert torch.isfinite(objective(images, mask, targets)["loss"])
