"""Two gloo processes on CPU (DDP, and FSDP2) reproduce one process on the same global batch."""
from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from itpn.pretrain import Mask, MaskGenerator, PretrainConfig, Trainer, run_pretraining

GLOBAL_BATCH = 4


def _inputs() -> tuple[torch.Tensor, Mask]:
    generator = torch.Generator().manual_seed(3)
    images = torch.nn.functional.interpolate(torch.rand(GLOBAL_BATCH, 3, 4, 4, generator=generator), size=(32, 32),
                                             mode="bilinear", align_corners=False)
    return images, MaskGenerator((2, 2), 0.5)(GLOBAL_BATCH, generator)


def _slice(mask: Mask, part: slice) -> Mask:
    return Mask(mask.ids_keep[part], mask.ids_masked[part], mask.masked[part])


def _gradients_and_update(trainer: Trainer, parts: list[slice]) -> dict[str, dict[str, torch.Tensor]]:
    images, mask = _inputs()
    for index, part in enumerate(parts):
        trainer.forward_backward(images[part], _slice(mask, part), sync=index == len(parts) - 1)
    gradients = {name: p.grad.clone() for name, p in trainer.objective.named_parameters() if p.grad is not None}
    trainer.optimizer_step()
    return {"grad": gradients, "params": {k: v.clone() for k, v in trainer.objective.state_dict().items()},
            "teacher": {k: v.clone() for k, v in trainer.ema_teacher.state_dict().items()}}


def _worker(rank: int, world_size: int, port: int, config_values: dict, output: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world_size), RANK=str(rank),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    images, _ = _inputs()
    config = PretrainConfig.from_dict(dict(config_values, batch_size=GLOBAL_BATCH // world_size))
    trainer = Trainer(config, list(images))
    assert trainer.runtime.world_size == world_size and trainer.global_batch == GLOBAL_BATCH
    share = GLOBAL_BATCH // world_size
    torch.save(_gradients_and_update(trainer, [slice(rank * share, (rank + 1) * share)]), f"{output}/rank{rank}.pt")
    for name, fsdp in (("ddp", False), ("fsdp", True)):
        run_pretraining(_run_config(config_values, output, name, world_size, fsdp=fsdp), list(_images(8)))
    dist.destroy_process_group()


def _images(count: int) -> torch.Tensor:
    low = torch.rand(count, 3, 4, 4, generator=torch.Generator().manual_seed(7))
    return torch.nn.functional.interpolate(low, size=(32, 32), mode="bilinear", align_corners=False)


def _run_config(values: dict, output: str, name: str, world_size: int, fsdp: bool = False) -> PretrainConfig:
    return PretrainConfig.from_dict(dict(values, batch_size=GLOBAL_BATCH // world_size, total_steps=3,
                                         checkpoint_every=2, output_url=f"{output}/{name}", fsdp=fsdp))


def _losses(url: str) -> list[float]:
    return [json.loads(line)["loss"] for line in Path(url).read_text().splitlines()]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_processes_match_one_process_on_the_same_global_batch(tiny_config, tmp_path: Path):
    values = tiny_config(tmp_path / "run").to_dict()
    mp.spawn(_worker, args=(2, _free_port(), values, str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{rank}.pt") for rank in range(2)]

    single = Trainer(PretrainConfig.from_dict(dict(values, batch_size=GLOBAL_BATCH)), list(_inputs()[0]))
    reference = _gradients_and_update(single, [slice(0, GLOBAL_BATCH)])
    # the same global batch as two accumulated micro-batches in one process
    accumulated = Trainer(PretrainConfig.from_dict(dict(values, batch_size=GLOBAL_BATCH // 2, accum_steps=2)),
                          list(_inputs()[0]))
    two_steps = _gradients_and_update(accumulated, [slice(0, 2), slice(2, 4)])

    assert reference["grad"].keys() == ranks[0]["grad"].keys()
    for name, gradient in reference["grad"].items():
        for result in (ranks[0], ranks[1], two_steps):
            torch.testing.assert_close(result["grad"][name], gradient, atol=1e-6, rtol=1e-4, msg=name)
    for name, value in reference["params"].items():
        torch.testing.assert_close(ranks[0]["params"][name], ranks[1]["params"][name], atol=0, rtol=0)
        torch.testing.assert_close(ranks[0]["params"][name], value, atol=1e-6, rtol=1e-5)
    for name, value in reference["teacher"].items():
        torch.testing.assert_close(ranks[1]["teacher"][name], value, atol=1e-6, rtol=1e-5)

    # whole runs: the loss sequence of one process, of DDP and of FSDP on two processes agree
    single_run = run_pretraining(_run_config(values, str(tmp_path), "single", 1), list(_images(8)))
    expected = _losses(single_run.metrics_url)
    assert len(expected) == 3
    for name in ("ddp", "fsdp"):
        assert _losses(f"{tmp_path}/{name}/metrics.jsonl") == pytest.approx(expected, abs=1e-5), name
        assert (tmp_path / name / "backbone.safetensors").exists()
