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
from pathlib import Path

import torch
from rich import box
from rich.console import Console
from rich.table import Table

from itpn.bench import device_name, matmul_peak_tflops, resolve_dtype
from itpn.bench.pretraining import measure_pretraining_step

SMALL_MODEL = dict(model_kwargs={"depths": [1, 1, 2], "embed_dim": 128, "num_heads": 2, "fpn_dim": 64},
                   img_size=64, decoder_dim=64, decoder_depth=2, decoder_heads=4)


def benchmark(args: argparse.Namespace) -> dict:
    values = dict(model=args.model, teacher=args.teacher, batch_size=args.batch, amp_dtype=args.dtype,
                  device=args.device, compile=args.compile, mask_ratio=args.mask_ratio)
    if args.small:
        values.update(SMALL_MODEL, model="fast_itpn_tiny_patch16_224")
    step = measure_pretraining_step(values, warmup=args.warmup, iters=args.iters)
    device = torch.device(args.device)
    peak_tflops = matmul_peak_tflops(device, resolve_dtype(args.dtype))  # the ceiling of the run's precision
    achieved = step.gflops_per_image * step.images_per_s / 1e3
    return dict(model=args.model if not args.small else "small (128-wide, 1+1+2)",
                resolution=f"{values.get('img_size', 224)}x{values.get('img_size', 224)}", teacher=args.teacher,
                mask_ratio=args.mask_ratio, visible_units=step.visible_units, batch_size=step.batch_size,
                dtype=args.dtype, compile=args.compile, images_per_s=step.images_per_s, step_ms=step.step_ms,
                peak_memory_mb=step.peak_memory_mb, gflops_per_step=step.gflops_per_image * step.batch_size,
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
