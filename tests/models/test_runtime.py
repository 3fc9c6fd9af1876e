"""Masked forward, attention path, bf16 autocast and activation checkpointing (torch.compile: test_compile.py)."""
import pytest
import timm
import torch
import torch.nn.functional as F

from itpn.models.acceleration import get_variant, set_acceleration
from itpn.models.layers import gather_units


def _tiny(name="fast_itpn_tiny_patch16_224", **kwargs):
    torch.manual_seed(0)
    return timm.create_model(name, depths=(1, 1, 2), **kwargs)


@pytest.mark.parametrize("name", ["fast_itpn_tiny_patch16_224", "itpn_base_patch16_224", "hivit_tiny_patch16_224"])
def test_masked_forward_keeps_only_visible_units(name):
    model = _tiny(name, num_classes=0).eval()
    images = torch.randn(2, 3, 64, 96)
    ids_keep = torch.stack([torch.randperm(24)[:6] for _ in range(2)])
    with torch.no_grad():
        full = model.forward_backbone(images)
        masked = model.forward_backbone(images, ids_keep=ids_keep)
    assert masked.tokens.shape == (2, 6, model.embed_dim)
    # nothing mixes across 16x16 units before stage 3: the stem of the visible units is unchanged
    torch.testing.assert_close(masked.stage1, gather_units(full.stage1, ids_keep))
    torch.testing.assert_close(masked.stage2, gather_units(full.stage2, ids_keep))
    # and stage 3 sees the visible units only: changing a masked-out region changes nothing
    hidden = torch.ones(2, 24, dtype=torch.bool)
    hidden[torch.arange(2)[:, None], ids_keep] = False
    pixels = hidden.reshape(2, 4, 6).repeat_interleave(16, 1).repeat_interleave(16, 2)[:, None]
    with torch.no_grad():
        changed = model.forward_backbone(torch.where(pixels, torch.randn_like(images), images), ids_keep=ids_keep)
    torch.testing.assert_close(changed.tokens, masked.tokens)


def test_masked_pyramid_runs_on_visible_units():
    model = _tiny(pyramid=True).eval()
    ids_keep = torch.tensor([[0, 5, 9], [3, 4, 15]])
    with torch.no_grad():
        out = model.forward_backbone(torch.randn(2, 3, 64, 64), ids_keep=ids_keep)
        levels = model.pyramid(out.stage1, out.stage2, out.tokens)
    assert [tuple(level.shape) for level in levels] == [(2, 3, 1, 1, 256), (2, 3, 2, 2, 256), (2, 3, 4, 4, 256)]


def test_attention_uses_fused_kernel(monkeypatch):
    calls = []
    original = F.scaled_dot_product_attention

    def counting(*args, **kwargs):
        calls.append(args[0].shape)
        return original(*args, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", counting)
    model = _tiny().eval()
    with torch.no_grad():
        model(torch.randn(1, 3, 64, 64))
    assert len(calls) == 2 and calls[0] == (1, 6, 16, 64)


def test_bf16_autocast_close_to_fp32():
    model = _tiny(num_classes=10).eval()
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        reference = model(images)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(images)
    assert low.dtype == torch.bfloat16
    assert ((low.float() - reference).norm() / reference.norm()) < 0.05


@pytest.mark.parametrize("name, variant", [("itpn_base_patch16_224", None),
                                           ("fast_itpn_tiny_patch16_224", "migration_30_gathering")])
def test_activation_checkpointing_gives_same_gradients(name, variant):
    model = _tiny(name, num_classes=10)
    if variant:  # 64 px: a 4x4 token grid in 2x2 windows
        set_acceleration(model, get_variant(variant).replace(window_size=2))
    images = torch.randn(2, 3, 64, 64)

    def gradients():
        model.zero_grad()
        model(images).square().sum().backward()
        return [p.grad.clone() for p in model.parameters() if p.grad is not None]

    plain = gradients()
    model.set_grad_checkpointing(True)
    checkpointed = gradients()
    assert len(plain) == len(checkpointed) == sum(1 for p in model.parameters())
    for a, b in zip(plain, checkpointed):
        torch.testing.assert_close(a, b)


def test_a_few_steps_of_training_reduce_the_loss():
    model = _tiny(num_classes=4, drop_path_rate=0.0)
    images, labels = torch.randn(8, 3, 32, 32), torch.arange(8) % 4
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(15):
        loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_layer_decay_groups_follow_depth():
    from timm.optim import param_groups_layer_decay

    model = _tiny(num_classes=10)
    groups = param_groups_layer_decay(model, weight_decay=0.05, layer_decay=0.9)
    scales = sorted({group["lr_scale"] for group in groups})
    # as the released Fast-iTPN fine-tuning numbers layers: the embeddings, then stem block, merge, stem block,
    # merge, 2 attention blocks each a layer, then the head and norm on top
    assert len(scales) == 8 and max(scales) == 1.0
    assert min(scales) == 0.9 ** 7
