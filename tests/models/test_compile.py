"""``torch.compile(model, fullgraph=True)`` traces the baseline and every acceleration variant whole, and
the traced model computes what the eager one does.

``backend="eager"`` runs dynamo's tracing (where graph breaks, ``.item()`` and data-dependent shapes
show) without inductor's code generation, so the check is cheap on a CPU; ``dynamic=False`` keeps the
shapes static per input size, what CUDA graphs need. The input's grid (5 x 8 tokens) is not divided by
the windows of 4, so the padded windows of a rectangular image (COCO's 800 x 1344) are traced too.
"""
import pytest
import torch

from itpn.models import VARIANTS, create_model, set_acceleration

SMALL = dict(depths=(1, 1, 2), embed_dim=64, num_heads=2)


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    return {
        "classifier": create_model("fast_itpn_tiny_patch16_224", img_size=(80, 128), num_classes=5, **SMALL).eval(),
        "pyramid": create_model("fast_itpn_tiny_patch16_224", img_size=(80, 128), pyramid=True, fpn_dim=32,
                                **SMALL).eval(),
    }


def _outputs(result):
    return list(result.values()) if isinstance(result, dict) else [result]


# every variant on the classifier; the pyramid (which reads the replenished grid) under the full speed-up:
# migration (the stored tokens written back) with windows and gathering tokens
CASES = [("classifier", variant) for variant in VARIANTS] + [("pyramid", "migration_30_gathering")]


@pytest.mark.parametrize("kind, variant", CASES)
def test_every_variant_compiles_whole_and_matches_eager(models, kind, variant):
    model = models[kind]
    config = VARIANTS[variant]
    set_acceleration(model, config.replace(window_size=4) if config.window_size else config)
    images = torch.randn(2, 3, 80, 128, generator=torch.Generator().manual_seed(1))
    torch._dynamo.reset()
    # fullgraph=True raises at the first graph break (data-dependent shapes, .item(), an unsupported call)
    compiled = torch.compile(model, fullgraph=True, dynamic=False, backend="eager")
    with torch.inference_mode():
        expected, got = _outputs(model(images)), _outputs(compiled(images))
    assert len(got) == len(expected)
    for want, have in zip(expected, got):
        torch.testing.assert_close(have, want, rtol=1e-5, atol=1e-5)
