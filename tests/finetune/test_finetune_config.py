import pytest

from itpn.finetune import ClassificationConfig
from itpn.records import model_size


@pytest.mark.parametrize("model,layer_decay,epochs,lr,drop_path,img_size", [
    ("fast_itpn_tiny_patch16_224", 0.80, 100, 1e-4, 0.1, 224),
    ("fast_itpn_small_patch16_224", 0.90, 100, 1e-4, 0.1, 224),
    ("fast_itpn_base_patch16_224", 0.90, 20, 1e-4, 0.1, 224),
    ("fast_itpn_large_patch16_224", 0.95, 20, 5e-5, 0.2, 640),
])
def test_paper_recipe_is_the_default_for_each_size(model, layer_decay, epochs, lr, drop_path, img_size):
    config = ClassificationConfig(model=model, data_url="/data/imagenet")
    assert (config.layer_decay, config.epochs, config.lr, config.drop_path, config.img_size) == (
        layer_decay, epochs, lr, drop_path, img_size)
    assert (config.mixup, config.cutmix, config.reprob, config.smoothing) == (0.8, 1.0, 0.25, 0.1)
    assert config.auto_augment == "rand-m9-mstd0.5-inc1" and config.model_ema and config.weight_decay == 0.05


def test_explicit_values_override_the_recipe():
    config = ClassificationConfig(model="fast_itpn_base_patch16_224", data_url="x", layer_decay=0.7, epochs=3,
                                  warmup_epochs=1)
    assert (config.layer_decay, config.epochs) == (0.7, 3)


def test_unknown_key_is_named():
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['layerdecay'\]"):
        ClassificationConfig.from_dict({"data_url": "x", "layerdecay": 0.9})


def test_unknown_acceleration_variant_fails_before_training():
    with pytest.raises(ValueError, match="unknown acceleration variant 'turbo'.*window_gathering_hrpe"):
        ClassificationConfig(model="fast_itpn_tiny_patch16_224", data_url="x", eval_variants=["turbo"])


def test_odd_batch_with_mixup_is_refused():
    with pytest.raises(ValueError, match="batch_size must be even"):
        ClassificationConfig(model="fast_itpn_tiny_patch16_224", data_url="x", batch_size=7)


def test_model_size_needs_a_size_in_the_name():
    assert model_size("itpn_large_patch16_224") == "large"
    with pytest.raises(ValueError, match="cannot tell the size"):
        ClassificationConfig(model="resnet50", data_url="x")


def test_randaugment_of_the_recipe_survives_its_strongest_posterize():
    """rand-m9-mstd0.5-inc1 draws magnitudes up to 10, where timm posterizes to 0 bits; Pillow 13 rejects
    that (ValueError mid-epoch), so the project pins pillow<13."""
    from PIL import Image
    from timm.data.auto_augment import AugmentOp

    strongest = AugmentOp("PosterizeIncreasing", prob=1.0, magnitude=10)
    assert strongest(Image.new("RGB", (8, 8), (200, 100, 50))).getpixel((0, 0)) == (0, 0, 0)
