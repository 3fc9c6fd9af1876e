"""The FLOPs the README states, recomputed on the meta device (no weights, seconds per size): the
acceleration table under "Performance", Fast-iTPN-B's 38.1 GFLOPs per 224² image, and the padding
bound of windows at COCO's 800×1344."""
import importlib.util
import sys
from pathlib import Path

import pytest
import timm
import torch

from itpn.bench import count_gflops
from itpn.bench.acceleration import flop_table
from itpn.models import set_acceleration
from itpn.models.token_gathering import WindowLayout

ROOT = Path(__file__).parents[2]


def _readme_lines() -> str:
    return "\n".join(line.strip() for line in (ROOT / "README.md").read_text().splitlines())


def _flop_table_spec() -> dict:
    spec = importlib.util.spec_from_file_location("acceleration_benchmark_flops", ROOT / "benchmarks" / "acceleration.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module.FLOP_TABLE


def test_fast_itpn_base_classifier_costs_38_1_gflops_at_224():
    with torch.device("meta"):
        model = timm.create_model("fast_itpn_base_patch16_224").eval()
        gflops = count_gflops(model, torch.empty(1, 3, 224, 224))
    assert round(gflops, 1) == 38.1
    assert "Fast-iTPN-B 38.1 GFLOPs at 224²" in _readme_lines()


@pytest.mark.slow
def test_readme_flop_table_is_what_the_code_counts():
    table = _flop_table_spec()
    computed = flop_table(table["model"], table["sizes"], table["variants"], label=table["label"])
    assert computed in _readme_lines(), (
        "README's FLOP table differs from the code's count; paste the output of "
        f"`python benchmarks/acceleration.py --flops-only`:\n{computed}")


def test_windows_at_coco_size_cost_at_most_the_stated_padding():
    """800×1344 (50×84 tokens) in windows of at most 16×16: 4.0 % more tokens than the grid, and a
    windowed stage-3 block costs at most 8 % more than running each window alone, unpadded (README)."""
    grid = (50, 84)
    layout = WindowLayout.for_grid(grid, 16)
    assert layout.num_slots / layout.num_positions - 1 == pytest.approx(0.040, abs=1e-3)
    window_tokens = (layout.positions(torch.device("cpu")) < layout.num_positions).sum(dim=1).tolist()
    with torch.device("meta"):
        model = timm.create_model("fast_itpn_base_patch16_224", depths=(1, 1, 1), num_classes=0).eval()
        set_acceleration(model, "window")
        tokens = torch.empty(1, grid[0] * grid[1], model.embed_dim)
        windowed = count_gflops(lambda: model.forward_stage3(tokens, grid))
        alone = sum(count_gflops(lambda: model.blocks[0](tokens[:, :count])) for count in window_tokens)
    assert alone < windowed <= 1.08 * alone
