"""On a CUDA device the released weights give the released logits (fp32 exactly as on the CPU, bf16
autocast within its precision) and a training step of the accelerated model runs. Skipped without CUDA."""
from pathlib import Path

import pytest
import torch

from itpn.models import HiViT, load_checkpoint, set_acceleration
from itpn.models.fast_itpn import _FAST_ITPN

pytestmark = pytest.mark.gpu
FIXTURE = Path(__file__).parent / "fixtures" / "released_fast_itpn_micro.pth"
MICRO = dict(img_size=64, embed_dim=64, depths=(1, 1, 2), num_heads=2)


def _released_model(device: str) -> HiViT:
    model = HiViT(num_classes=10, **MICRO, **_FAST_ITPN)
    load_checkpoint(model, str(FIXTURE))
    return model.to(device).eval()


def _relative_error(ours: torch.Tensor, reference: torch.Tensor) -> float:
    return ((ours.float().cpu() - reference).norm() / reference.norm()).item()


@pytest.fixture
def exact_cuda_fp32():
    """TF32 off: cuDNN's convolutions would otherwise round the stem's inputs to 10 mantissa bits."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def test_released_logits_on_cuda_in_fp32_and_bf16(exact_cuda_fp32):
    fixture = torch.load(FIXTURE, weights_only=True)
    model = _released_model("cuda")
    images = fixture["input"].cuda()
    with torch.no_grad():
        assert _relative_error(model(images), fixture["logits"]) <= 1e-4
        with torch.autocast("cuda", dtype=torch.bfloat16):
            assert _relative_error(model(images), fixture["logits"]) <= 5e-2


def test_accelerated_model_trains_on_cuda():
    torch.manual_seed(0)
    model = _released_model("cuda").train()
    set_acceleration(model, "migration_30")
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    images = torch.randn(8, 3, 64, 64, device="cuda")
    labels = torch.arange(8, device="cuda") % 10
    losses = []
    for _ in range(20):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = torch.nn.functional.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]  # fits 8 images: the accelerated forward and backward both work on CUDA
