"""ITPNBackbone in every registry, its pyramid outputs, pre-trained weights and the acceleration variants."""
import pytest
import timm
import torch
from safetensors.torch import load_file

from itpn.mmlab import ITPNBackbone, layer_decay_groups
from itpn.models import CheckpointMismatchError
from itpn.models.acceleration import VARIANTS, set_acceleration

from mmlab_helpers import TINY, TINY_MODEL, write_export


def tiny_backbone(**kwargs) -> ITPNBackbone:
    return ITPNBackbone(model_name=TINY_MODEL, model_kwargs=TINY, drop_path_rate=0.0, **kwargs)


@pytest.mark.parametrize("registry", ["mmdet", "mmseg", "mmrotate"])
def test_backbone_is_registered_in_each_toolbox(registry):
    import importlib

    models = importlib.import_module(f"{registry}.registry").MODELS
    backbone = models.build(dict(type="ITPNBackbone", model_name=TINY_MODEL, model_kwargs=TINY))
    assert isinstance(backbone, ITPNBackbone)


def test_detection_outputs_are_the_pyramid_at_strides_4_to_64():
    backbone = tiny_backbone(pyramid_extra_levels=2).eval()
    maps = backbone(torch.randn(1, 3, 128, 128))
    assert [tuple(m.shape) for m in maps] == [(1, 256, 32 // 2 ** i, 32 // 2 ** i) for i in range(5)]
    assert backbone.out_channels == [256] * 5


def test_segmentation_outputs_concatenate_pyramid_and_backbone():
    backbone = tiny_backbone(out="pyramid+backbone", pyramid_extra_levels=0).eval()
    images = torch.randn(1, 3, 64, 64)
    maps = backbone(images)
    assert [m.shape[1] for m in maps] == backbone.out_channels == [256 + 96, 256 + 192, 256 + 384, 256 + 384]
    assert [m.shape[-1] for m in maps] == [16, 8, 4, 2]
    pyramid = backbone.model.forward_features(images)
    assert torch.allclose(maps[0][:, :256], pyramid["s4"], atol=1e-6)  # the pyramid part is the pyramid
    assert torch.equal(maps[3], torch.nn.functional.max_pool2d(maps[2], 2))


def test_pretraining_export_is_loaded_strictly_and_changes_the_features(tiny_export):
    loaded = tiny_backbone(checkpoint=tiny_export)
    loaded.init_weights()
    assert loaded.load_report.initialised == []  # every backbone and pyramid weight came from the export
    export = load_file(tiny_export)
    state = loaded.model.state_dict()
    assert all(torch.equal(state[key], export[key]) for key in export)
    torch.manual_seed(0)
    scratch = tiny_backbone()
    scratch.init_weights()
    images = torch.randn(1, 3, 64, 64)
    assert not torch.allclose(loaded.eval()(images)[0], scratch.eval()(images)[0])


def test_checkpoint_of_another_size_fails_naming_both(tmp_path):
    export = write_export(tmp_path / "small.safetensors", "fast_itpn_base_patch16_224")
    backbone = tiny_backbone(checkpoint=export)
    with pytest.raises(CheckpointMismatchError, match=r"embed dim 512.*\n.*embed dim 384"):
        backbone.init_weights()


def test_unknown_acceleration_variant_is_refused():
    with pytest.raises(ValueError, match="unknown acceleration variant 'fastest'.*migration_30_gathering"):
        tiny_backbone(acceleration="fastest")


def test_bad_output_mode_is_refused():
    with pytest.raises(ValueError, match="out='features'"):
        tiny_backbone(out="features")


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_acceleration_variant_gives_the_maps_of_the_model_running_it(variant):
    """The adapter runs the variant it is configured with: its maps equal those of the same weights run
    through timm with ``set_acceleration(variant)``, and migration (fewer stage-3 tokens) changes them."""
    torch.manual_seed(0)
    backbone = tiny_backbone(acceleration=variant).eval()
    images = torch.randn(1, 3, 64, 64)
    maps = backbone(images)
    assert [tuple(m.shape[1:]) for m in maps] == [(256, 16 // 2 ** i, 16 // 2 ** i) for i in range(5)]
    reference = timm.create_model(TINY_MODEL, pyramid=True, num_classes=0, pyramid_extra_levels=2,
                                  drop_path_rate=0.0, **TINY).eval()
    set_acceleration(reference, variant)
    reference.load_state_dict(backbone.model.state_dict())
    baseline = timm.create_model(TINY_MODEL, pyramid=True, num_classes=0, pyramid_extra_levels=2,
                                 drop_path_rate=0.0, **TINY).eval()
    baseline.load_state_dict(backbone.model.state_dict(), strict=False)
    with torch.no_grad():
        expected = reference.forward_features(images)
        plain = baseline.forward_features(images)
    for got, name in zip(maps, ("s4", "s8", "s16", "s32", "s64")):
        torch.testing.assert_close(got, expected[name])
    if variant.startswith("migration"):
        assert not torch.allclose(maps[2], plain["s16"])


def test_layer_decay_groups_scale_lr_from_stem_to_heads():
    class Detector(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = tiny_backbone()
            self.head = torch.nn.Linear(256, 4)

    detector = Detector()
    groups = layer_decay_groups(detector, lr=1.0, weight_decay=0.05, decay_rate=0.5)
    scale = {id(p): g["lr"] for g in groups for p in g["params"]}
    decay = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
    named = dict(detector.named_parameters())
    assert scale[id(named["head.weight"])] == 1.0
    assert scale[id(named["backbone.model.pyramid.fpn_modules.0.mlp.fc1.weight"])] == 1.0
    assert scale[id(named["backbone.model.blocks.1.attn.qkv.weight"])] == 0.5
    assert scale[id(named["backbone.model.blocks.0.attn.qkv.weight"])] == 0.25
    assert scale[id(named["backbone.model.patch_embed.proj.weight"])] < 0.25
    assert decay[id(named["backbone.model.pos_embed"])] == 0.0 and decay[id(named["head.bias"])] == 0.0
    assert decay[id(named["head.weight"])] == 0.05
    assert sum(len(g["params"]) for g in groups) == len(named)
