"""Throughput of our Fast-iTPN beside timm's ViT-B/16, side by side in one run.

    python benchmarks/throughput.py                      # GPU: 224² and 1024², bf16
    python benchmarks/throughput.py --small              # CPU smoke run, well under a minute

Prints one table and writes JSON rows (model, resolution, mode, img/s, latency, peak memory,
GFLOPs, achieved TFLOP/s, MFU against a matmul ceiling measured in the same run, and the
ratio to ViT-B/16 at the same resolution and mode).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import timm
import torch
from rich import box
from rich.console import Console
from rich.table import Table

import itpn.models  # noqa: F401  (registers the models)
from itpn.bench import (count_gflops, device_name, matmul_peak_tflops, measure_throughput, measure_training_step,
                        resolve_dtype)

REFERENCE = "vit_base_patch16_224"


def build(name: str, resolution: int, device: torch.device) -> torch.nn.Module:
    kwargs = dict(img_size=resolution, num_classes=1000)
    if name == REFERENCE:
        kwargs["dynamic_img_size"] = True
    return timm.create_model(name, **kwargs).to(device)


def benchmark(name: str, resolution: int, batch: int, device: torch.device, dtype: torch.dtype,
              iters: int, peak_tflops: float, modes: list[str]) -> list[dict]:
    model = build(name, resolution, device)
    images = torch.randn(batch, 3, resolution, resolution, device=device)
    rows = []
    for mode in modes:
        if mode == "inference":
            model.eval()
            result = measure_throughput(model, images, dtype=dtype, warmup=1, iters=iters)
            with torch.no_grad():
                gflops = count_gflops(lambda: model(images[:1]))
        else:
            optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
            result = measure_training_step(model, images, lambda logits: logits.float().logsumexp(-1).mean(),
                                           optimizer, dtype=dtype, warmup=1, iters=max(2, iters // 2))
            gflops = count_gflops(lambda: model(images[:1]).sum().backward())
            model.zero_grad(set_to_none=True)
        achieved = gflops * result.images_per_s / 1e3
        rows.append(dict(model=name, resolution=f"{resolution}x{resolution}", mode=mode, batch_size=batch,
                         images_per_s=result.images_per_s, latency_ms=result.latency_ms,
                         memory_mb=result.peak_memory_mb, gflops=gflops, achieved_tflops=achieved,
                         mfu=achieved / peak_tflops, device=device_name(device), dtype=str(dtype).split(".")[-1]))
    del model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return rows


def add_ratios(rows: list[dict]) -> None:
    reference = {(r["resolution"], r["mode"]): r["images_per_s"] for r in rows if r["model"] == REFERENCE}
    for row in rows:
        base = reference.get((row["resolution"], row["mode"]))
        row["ratio_vs_vit_b"] = row["images_per_s"] / base if base else None


def print_table(rows: list[dict], peak_tflops: float, console: Console) -> None:
    table = Table(box=box.MARKDOWN, title=f"Throughput on {rows[0]['device']} ({rows[0]['dtype']}); "
                        f"matmul ceiling {peak_tflops:.3g} TFLOP/s")
    for column in ("model", "resolution", "mode", "batch", "img/s", "× ViT-B", "latency ms", "peak MB",
                   "GFLOPs/img", "TFLOP/s", "MFU"):
        table.add_column(column, justify="left" if column in ("model", "mode") else "right")
    for r in rows:
        table.add_row(r["model"], r["resolution"], r["mode"], str(r["batch_size"]), f"{r['images_per_s']:.1f}",
                      f"{r['ratio_vs_vit_b']:.2f}" if r["ratio_vs_vit_b"] else "-", f"{r['latency_ms']:.1f}",
                      f"{r['memory_mb']:.0f}" if r["memory_mb"] is not None else "-", f"{r['gflops']:.1f}",
                      f"{r['achieved_tflops']:.3g}", f"{100 * r['mfu']:.1f}%")
    console.print(table)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", action="store_true", help="CPU smoke run: 128², batch 2, fp32, few iterations")
    parser.add_argument("--models", nargs="+",
                        default=["fast_itpn_tiny_patch16_224", "fast_itpn_base_patch16_224", REFERENCE])
    parser.add_argument("--resolutions", nargs="+", type=int, default=[224, 1024])
    parser.add_argument("--batch", type=int, nargs="+", default=[256, 8], help="batch per resolution")
    parser.add_argument("--modes", nargs="+", default=["inference", "train"], choices=["inference", "train"])
    parser.add_argument("--dtype", default="bf16", choices=["bf16", "fp16", "fp32"])
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", default="results/throughput.json")
    args = parser.parse_args(argv)
    if args.small:
        args.resolutions, args.batch, args.dtype, args.iters, args.device = [128], [2], "fp32", 2, "cpu"
    if len(args.batch) == 1:
        args.batch = args.batch * len(args.resolutions)
    if len(args.batch) != len(args.resolutions):
        parser.error(f"--batch needs one value or one per resolution ({len(args.resolutions)})")
    dtype = resolve_dtype(args.dtype)
    device = torch.device(args.device)
    console = Console(width=160)
    peak = matmul_peak_tflops(device, dtype)
    rows = []
    with console.status("measuring") as status:
        for resolution, batch in zip(args.resolutions, args.batch):
            for name in args.models:
                status.update(f"{name} at {resolution}²")
                rows += benchmark(name, resolution, batch, device, dtype, args.iters, peak, args.modes)
    add_ratios(rows)
    print_table(rows, peak, console)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"matmul_peak_tflops": peak, "rows": rows}, indent=2))
    console.print(f"wrote {out}")
    return rows


if __name__ == "__main__":
    main()
