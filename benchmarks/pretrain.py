"""Integral pre-training speed: img/s, peak memory and MFU of one training update.

    python benchmarks/pretrain.py --device cuda --dtype bf16     # Fast-iTPN-B, 224², mask 75%, EMA-teacher MFM
    python benchmarks/pretrain.py --small                        # CPU smoke run, well under a minute

An update is what ``itpn.pretrain.Trainer`` does per step: masks, EMA-teacher forward on the visible
units, student forward (backbone + pyramid on visible units, decoder on all units), backward, AdamW
step and EMA update. FLOPs are counted by ``torch.utils.flop_counter`` over one forward+backward
(so only the work actually done: visible tokens in the encoder, all tokens in the decoder, the
teacher's forward); MFU divides the achieved TFLOP/s by the matmul ceiling of the same precision,
measured in the same run on the same device. Data loading is excluded (images are synthetic, already on the device).
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from rich import box
from rich.console import Console
from rich.table import Table

from itpn.bench import count_gflops, device_name, matmul_peak_tflops, resolve_dtype
from itpn.bench.measure import synchronize
from itpn.pretrain import PretrainConfig, Trainer

SMALL_MODEL = dict(model_kwargs={"depths": [1, 1, 2], "embed_dim": 128, "num_heads": 2, "fpn_dim": 64},
                   img_size=64, decoder_dim=64, decoder_depth=2, decoder_heads=4)


def build_trainer(args: argparse.Namespace, output: str) -> Trainer:
    values = dict(model=args.model, teacher=args.teacher, batch_size=args.batch, total_steps=1000, warmup_steps=10,
                  amp_dtype=args.dtype, device=args.device, output_url=output, progress=False, num_workers=0,
                  compile=args.compile, mask_ratio=args.mask_ratio, resume=False)
    if args.small:
        values.update(SMALL_MODEL, model="fast_itpn_tiny_patch16_224")
    config = PretrainConfig.from_dict(values)
    sizing_batch = [torch.zeros(3, config.img_size, config.img_size)] * config.batch_size  # sizes the schedule only
    return Trainer(config, sizing_batch)


def benchmark(args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory() as output:
        trainer = build_trainer(args, output)
        device, config = trainer.runtime.device, trainer.config
        images = torch.rand(config.batch_size, 3, config.img_size, config.img_size, device=device)
        generator = torch.Generator().manual_seed(0)

        def update() -> None:
            mask = trainer.masks(config.batch_size, generator).to(device)
            trainer.forward_backward(images, mask)
            trainer.optimizer_step()

        mask = trainer.masks(config.batch_size, generator).to(device)
        gflops = count_gflops(lambda: trainer.forward_backward(images, mask))
        trainer.optimizer.zero_grad(set_to_none=True)
        for _ in range(args.warmup):
            update()
        synchronize(device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        start = time.perf_counter()
        for _ in range(args.iters):
            update()
        synchronize(device)
        seconds = (time.perf_counter() - start) / args.iters
        peak_memory = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
        peak_tflops = matmul_peak_tflops(device, resolve_dtype(args.dtype))  # the ceiling of the run's precision
        achieved = gflops / seconds / 1e3
        visible = trainer.masks.num_units - trainer.masks.num_masked
        return dict(model=config.model if not args.small else "small (128-wide, 1+1+2)",
                    resolution=f"{config.img_size}x{config.img_size}", teacher=config.teacher,
                    mask_ratio=config.mask_ratio, visible_units=visible, batch_size=config.batch_size,
                    dtype=config.amp_dtype, compile=config.compile, images_per_s=config.batch_size / seconds,
                    step_ms=1000 * seconds, peak_memory_mb=peak_memory, gflops_per_step=gflops,
                    achieved_tflops=achieved, matmul_peak_tflops=peak_tflops, mfu=achieved / peak_tflops,
                    device=device_name(device))


def print_table(row: dict, console: Console) -> None:
    table = Table(box=box.MARKDOWN, title=f"Integral pre-training update on {row['device']} (matmul peak "
                        f"{row['matmul_peak_tflops']:.3g} TFLOP/s)")
    columns = ["model", "resolution", "teacher", "batch_size", "dtype", "images_per_s", "step_ms",
               "peak_memory_mb", "gflops_per_step", "achieved_tflops", "mfu"]
    for column in columns:
        table.add_column(column)
    formats = {"images_per_s": "{:.1f}", "step_ms": "{:.1f}", "peak_memory_mb": "{:.0f}",
               "gflops_per_step": "{:.1f}", "achieved_tflops": "{:.3g}", "mfu": "{:.1%}"}
    table.add_row(*[formats.get(c, "{}").format(row[c]) if row[c] is not None else "-" for c in columns])
    console.print(table)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", action="store_true", help="CPU smoke run: a 128-wide model at 64², fp32")
    parser.add_argument("--model", default="fast_itpn_base_patch16_224")
    parser.add_argument("--teacher", default="ema", choices=["ema", "none"])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--mask-ratio", type=float, default=0.75)
    parser.add_argument("--dtype", default="bf16", choices=["bf16", "fp16", "fp32"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--compile", action="store_true", help="torch.compile the student")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--out", default="results/pretrain.json")
    args = parser.parse_args(argv)
    if args.small:
        args.device, args.dtype, args.batch, args.warmup, args.iters = "cpu", "fp32", 8, 1, 3
    console = Console(width=200)
    row = benchmark(args)
    print_table(row, console)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps([row], indent=2))
    console.print(f"wrote {out}")
    return row


if __name__ == "__main__":
    main()
