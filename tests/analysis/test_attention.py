"""Figure 6's attention maps: the weights are the softmax the block really attends with, the query token
lands where the pixel is, and ``itpn attention`` draws them with the query outlined in red."""
import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from itpn.analysis import query_attention, query_token
from itpn.models import create_model, set_acceleration
from itpn_cli.main import app

MODEL = "fast_itpn_tiny_patch16_224"
RPE_MODEL = "hivit_tiny_patch16_224"  # HiViT's blocks carry a relative position bias; Fast-iTPN's do not


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    network = create_model(RPE_MODEL, img_size=64).eval()
    with torch.no_grad():  # a position bias that is not zero, so that leaving it out would show
        for block in network.blocks:
            if block.attn.relative_position_bias_table is not None:
                block.attn.relative_position_bias_table.normal_(0, 1.0)
    return network


def test_the_weights_reproduce_the_blocks_own_attention_output_for_the_query(model):
    image = torch.randn(1, 3, 64, 64)
    block = model.blocks[1]
    captured = {}
    handle = block.register_forward_pre_hook(lambda module, args: captured.update(args=args))
    weights = query_attention(model, image, block=1, query_xy=(40, 20))  # pixel x=40, y=20 -> token (1, 2)
    model.forward_backbone(image)
    handle.remove()
    x, bias = captured["args"][0], captured["args"][1] if len(captured["args"]) > 1 else None

    assert weights.query == (1, 2) and weights.probs.shape[1:] == (4, 4)
    assert torch.allclose(weights.probs.flatten(1).sum(-1), torch.ones(weights.probs.shape[0]), atol=1e-5)
    # the block's own attention output (scaled_dot_product_attention) for the query token, rebuilt from the weights
    normed = block.norm1(x)
    _, _, v = block.attn.project_qkv(normed)
    index = 1 * 4 + 2
    mixed = torch.einsum("hn,hnd->hd", weights.probs.flatten(1), v[0]).flatten()
    expected = block.attn(normed, bias)[0, index]
    assert torch.allclose(block.attn.proj(mixed), expected, atol=1e-5)
    assert not torch.allclose(weights.probs[0], weights.probs[1])  # heads kept apart, the mean is taken after


def test_pixels_outside_the_image_blocks_past_the_last_and_accelerated_models_are_refused(model):
    assert query_token((15, 16), (64, 64)) == (1, 0)
    with pytest.raises(ValueError, match=r"x=64, y=3 lies outside the 64x64 input"):
        query_token((64, 3), (64, 64))
    with pytest.raises(ValueError, match=rf"block {len(model.blocks)} does not exist: the model has "
                                         rf"{len(model.blocks)} stage-3 blocks"):
        query_attention(model, torch.randn(1, 3, 64, 64), block=len(model.blocks), query_xy=(0, 0))
    accelerated = create_model(MODEL, img_size=64).eval()
    set_acceleration(accelerated, "migration_30")
    with pytest.raises(ValueError, match="acceleration variant 'migration_30'.*baseline"):
        query_attention(accelerated, torch.randn(1, 3, 64, 64), block=0, query_xy=(0, 0))


def test_itpn_attention_writes_the_map_with_the_query_outlined_in_red(tmp_path):
    picture = tmp_path / "cat.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (50, 70, 3), dtype=np.uint8)).save(picture)
    out = tmp_path / "map.png"
    result = CliRunner().invoke(app, ["attention", str(picture), "--model", MODEL, "--block", "0", "--query", "40,20",
                                      "--size", "64", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "query token (row 1, column 2) of a 4x4 grid" in result.output
    drawn = np.asarray(Image.open(out))
    assert drawn.shape == (64, 64, 3)
    assert tuple(drawn[16, 32]) == (255, 0, 0) and tuple(drawn[31, 47]) == (255, 0, 0)  # the query cell's corners
    assert tuple(drawn[24, 40]) != (255, 0, 0)  # its inside shows the map

    bad = CliRunner().invoke(app, ["attention", str(tmp_path / "missing.jpg"), "--model", MODEL, "--block", "0",
                                   "--query", "1,1", "--size", "64"])
    assert bad.exit_code == 2 and "missing.jpg: no such image file" in bad.output
    bad = CliRunner().invoke(app, ["attention", str(picture), "--block", "0", "--query", "1;1"])
    assert bad.exit_code == 2 and "expected two integers X,Y" in bad.output
