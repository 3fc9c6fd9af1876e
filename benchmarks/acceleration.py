"""Speed of every acceleration variant (token migration, token gathering) against the baseline.

For each model and resolution, one run measures the baseline and every variant on the same
model object (the variants only switch stage 3): images/s at ``--batch-size``, latency at
batch 1, peak CUDA memory and GFLOPs per image, and the speed-up over the baseline. Throughput
is measured in ``--rounds`` interleaved rounds (baseline, variant, variant, ..., then again) and
the best round counts, so a machine that is busy for a moment does not favour one variant.

The model is the dense-prediction backbone (``pyramid=True``: stages, feature pyramid), what
detection and segmentation run and what Figure 5 of the paper times. The JSON file is a list of
``itpn.records.BenchmarkRecord`` rows, what the results store keeps (``ResultsWriter.record_run``'s
``benchmarks``); the store derives the speed-up from the baseline row of the same run.

    python benchmarks/acceleration.py --device cuda --dtype bf16           # the GPU table
    python benchmarks/acceleration.py --small                              # CPU smoke run, < 1 min
    python benchmarks/acceleration.py --flops-only                         # the README's FLOP table
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional

import torch
from rich import box
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from itpn.bench.acceleration import benchmark_variants, flop_table
from itpn.models import VARIANTS, get_variant
from itpn.records import BenchmarkRecord

SMALL_DEPTHS = (1, 1, 4)
SMALL_FPN_DIM = 64  # keeps the pyramid's share of the work near its share in Fast-iTPN-B at 1024 px
FULL = dict(models=["fast_itpn_base_patch16_224", "fast_itpn_tiny_patch16_224"], resolutions=[1024, 512],
            batch_size=8, window_size=None, warmup=5, iterations=20, rounds=3)
# The README's FLOP table (pinned by tests/bench/test_flop_table.py): Fast-iTPN-B with its pyramid at
# the detection / segmentation sizes, the variants of Figure 5 and the front-loaded migration.
FLOP_TABLE = dict(model="fast_itpn_base_patch16_224", label="Fast-iTPN-B",
                  sizes=[(1024, 1024), (800, 1344), (512, 512)],
                  variants=["migration_30", "migration_30_front_loaded", "window", "window_gathering",
                            "migration_30_gathering"])
SMALL = dict(models=["fast_itpn_tiny_patch16_224"], resolutions=[160], batch_size=2, window_size=5, warmup=1,
             iterations=2, rounds=1)


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", action="store_true",
                        help=f"CPU smoke run: Fast-iTPN-T with depths {SMALL_DEPTHS} and a {SMALL_FPN_DIM}-d "
                             f"pyramid, 160 px, windows of 5, batch 2")
    parser.add_argument("--flops-only", action="store_true",
                        help="print the README's FLOP table (Fast-iTPN-B at 1024², 800×1344, 512², counted on the "
                             "meta device: no weights, no timing); writes no rows")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:index]")
    parser.add_argument("--dtype", default="fp32", help="fp32, bf16 or fp16 (autocast)")
    parser.add_argument("--models", nargs="+", help=f"default: {' '.join(FULL['models'])}")
    parser.add_argument("--resolutions", nargs="+", type=int, help="square input sides in px (default: 1024 512)")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS),
                        help="variant names (the baseline is always measured)")
    parser.add_argument("--batch-size", type=int, help="default: 8")
    parser.add_argument("--window-size", type=int,
                        help="override the window size of the windowed variants (tokens per side)")
    parser.add_argument("--warmup", type=int, help="untimed calls before timing (default: 5)")
    parser.add_argument("--iterations", type=int, help="timed calls per measurement (default: 20)")
    parser.add_argument("--rounds", type=int, help="interleaved throughput rounds; the best one counts (default: 3)")
    parser.add_argument("--out", type=Path, default=Path("results/acceleration.json"))
    args = parser.parse_args(argv)
    for key, value in (SMALL if args.small else FULL).items():  # what the command line leaves open
        if getattr(args, key) is None:
            setattr(args, key, value)
    for name in args.variants:
        get_variant(name)  # an unknown name stops here, listing the valid ones
    if torch.device(args.device).type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: CUDA is not available on this machine")
    return args


def print_table(rows: list[BenchmarkRecord], console: Console) -> None:
    baselines = {(row.model, row.resolution): row for row in rows if row.variant == "baseline"}
    table = Table(box=box.MARKDOWN,  # paste-ready for the README
                  title=f"Acceleration variants on {rows[0].device}, {rows[0].dtype}, batch {rows[0].batch_size}")
    for column in ("model", "px", "variant", "img/s", "speed-up", "latency ms", "peak MiB", "GFLOPs", "FLOPs ratio"):
        table.add_column(column, justify="left" if column in ("model", "variant") else "right")
    for row in rows:
        base = baselines[(row.model, row.resolution)]
        table.add_row(
            row.model, str(row.resolution), row.variant, f"{row.images_per_s:.2f}",
            f"{row.images_per_s / base.images_per_s:.2f}x",
            "-" if row.latency_ms is None else f"{row.latency_ms:.1f}",
            "-" if row.memory_mb is None else f"{row.memory_mb:.0f}", f"{row.gflops:.2f}",
            f"{base.gflops / row.gflops:.2f}x",
        )
    console.print(table)


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    console = Console()
    if not console.is_terminal:  # a log file: room for every column
        console = Console(width=150)
    if args.flops_only:
        print(flop_table(FLOP_TABLE["model"], FLOP_TABLE["sizes"], FLOP_TABLE["variants"], label=FLOP_TABLE["label"]))
        depth = 24  # Fast-iTPN-B's stage 3
        for name in FLOP_TABLE["variants"]:
            for height, width in FLOP_TABLE["sizes"]:
                if get_variant(name).migration:
                    grid = (height // 16, width // 16)
                    print(f"{name} at {height}×{width}: {get_variant(name).describe_migration(grid, depth)}")
        return 0
    if args.window_size:
        console.print(f"windowed variants use windows of {args.window_size} tokens (overriding their default)")
    rows: list[BenchmarkRecord] = []
    with Progress(console=console, transient=True) as progress:
        for model_name in args.models:
            for resolution in args.resolutions:
                small = dict(model_kwargs=dict(depths=SMALL_DEPTHS, fpn_dim=SMALL_FPN_DIM),
                             label=f"{model_name}[depths={','.join(map(str, SMALL_DEPTHS))},fpn_dim={SMALL_FPN_DIM}]")
                rows.extend(benchmark_variants(
                    model_name, resolution, args.variants, batch_size=args.batch_size, device=args.device,
                    dtype=args.dtype, window_size=args.window_size, warmup=args.warmup, iterations=args.iterations,
                    rounds=args.rounds, progress=progress,
                    **(small if args.small else {})))
    print_table(rows, console)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps([row.to_dict() for row in rows], indent=2) + "\n")
    console.print(f"wrote {len(rows)} rows to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
