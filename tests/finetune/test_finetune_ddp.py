"""ImageNet fine-tuning on two gloo processes (DDP, as under torchrun) reproduces one process on the same
global batch: the same weights, the same accuracy over every validation image counted once, and the
evaluation of other acceleration variants shared by both ranks."""
from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file

from itpn.data import generate_imagenet
from itpn.finetune import ClassificationConfig, ClassificationTrainer, run_classification
from itpn.finetune.classification import evaluate
from itpn.records import read_rows

from finetune_helpers import TINY

GLOBAL_BATCH = 8


def _config(data_url: str, output_url: str, world_size: int) -> dict:
    """Deterministic apart from the data order: no mixup, augmentation, drop path or EMA."""
    return dict(model="fast_itpn_tiny_patch16_224", model_kwargs=TINY, data_url=data_url, output_url=output_url,
                img_size=32, batch_size=GLOBAL_BATCH // world_size, epochs=1, warmup_epochs=0, lr=1e-3,
                num_workers=0, progress=False, log_every=1, mixup=0.0, cutmix=0.0, smoothing=0.0,
                auto_augment=None, reprob=0.0, color_jitter=0.0, drop_path=0.0, model_ema=False,
                eval_variants=["migration_30"], device="cpu")


def _worker(rank: int, world_size: int, port: int, data_url: str, output: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world_size), RANK=str(rank),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    trainer = ClassificationTrainer(ClassificationConfig(**_config(data_url, f"{output}/ddp", world_size)))
    rows = trainer.fit().metrics
    counted = evaluate(trainer.eval_model, trainer.val_loader, trainer.runtime.device, distributed=True)["images"]
    torch.save({"rows": rows, "images_counted": counted}, f"{output}/rank{rank}.pt")
    dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_processes_fine_tune_as_one(tmp_path: Path):
    data_url = str(tmp_path / "imagenet")
    # 24 training images (3 updates of 8), 9 validation images: an odd number to split over two ranks
    generate_imagenet(data_url, seed=0, num_classes=3, train_per_class=8, val_per_class=3, image_size=32)
    context = mp.spawn(_worker, args=(2, _free_port(), data_url, str(tmp_path)), nprocs=2, join=False)
    deadline = time.monotonic() + 300
    while not context.join(timeout=5):
        assert time.monotonic() < deadline, "the two-process fine-tune did not finish in 5 minutes (a rank waits)"

    single = run_classification(_config(data_url, str(tmp_path / "single"), 1))
    expected, got = load_file(single.export_url), load_file(str(tmp_path / "ddp" / "model.safetensors"))
    for name, value in expected.items():
        torch.testing.assert_close(got[name], value, atol=1e-5, rtol=1e-4, msg=name)
    ranks = [torch.load(tmp_path / f"rank{rank}.pt") for rank in range(2)]
    assert [result["images_counted"] for result in ranks] == [9, 9]
    rows = {(row["name"], row["variant"]): row["value"] for row in read_rows(str(tmp_path / "ddp" / "metrics.json"))}
    reference = {(row["name"], row["variant"]): row["value"] for row in read_rows(single.metrics_url)}
    assert {key for key in rows if key[0] == "top1"} == {("top1", "baseline"), ("top1", "migration_30")}
    for key in (("top1", "baseline"), ("top5", "baseline"), ("top1", "migration_30")):
        assert rows[key] == reference[key], key
    # both ranks evaluated the other variant on their shares and agree on its accuracy
    rank_1 = {(row["name"], row["variant"]): row["value"] for row in ranks[1]["rows"]}
    assert rank_1[("top1", "migration_30")] == rows[("top1", "migration_30")]
    assert rows[("images_per_s", "migration_30")] > 0
