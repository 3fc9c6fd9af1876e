"""Table 9 (C-MLP x MFM) at demo scale: what the research result looks like on a CPU, and whether the first
step of the paper's order holds (pre-training, with or without MFM, fine-tunes above random weights).

    python benchmarks/reproduce_table9.py                  # ~25 min on 2 cores: 4 pre-trainings of 1,000 updates
    python benchmarks/reproduce_table9.py --scale small    # every column, about an hour

Runs ``itpn reproduce table9`` (the ``reproduce`` flow: every row pre-trained and fine-tuned, each run recorded
in the results store under ``reproduce-table9-<scale>``), prints our table beside the paper's and a verdict
line, and writes ``<out>/reproduce_table9.json``. It exits 1 when the order it checks does not hold.

What it checks and why not more: at demo scale this run measured none 45.5 %, MIM 62.5 %, MIM + MFM 55.5 %
(ImageNet stand-in, 5 labels per class); over three fine-tuning seeds none 46.5-49 %, MIM 52.5-67 %. The
paper's MFM gain is under a point (Table 9: 84.9 -> 85.1), inside the spread the labelled subset and the
seed give here, so "MIM + MFM above MIM" is printed, not checked. This was a 25-minute test until issue 18
made the suite answer in minutes; the suite keeps a two-row smoke run of the same flow
(``tests/flows/test_reproduce.py``).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

from rich.console import Console

ROWS_ABOVE_RANDOM = ("mim", "mim_mfm")  # rows that must fine-tune above the row without pre-training


def verdict(accuracy: dict[str, float]) -> tuple[bool, str]:
    """Whether every row of ``ROWS_ABOVE_RANDOM`` has a top-1 above the ``none`` row's, and the line that says it.

    ``accuracy``: top-1 in % by row name; a missing or NaN row fails, naming the row."""
    missing = [row for row in ("none", *ROWS_ABOVE_RANDOM) if not math.isfinite(accuracy.get(row, math.nan))]
    if missing:
        return False, f"no top-1 recorded for rows {missing}: see the run table in the store"
    below = [row for row in ROWS_ABOVE_RANDOM if accuracy[row] <= accuracy["none"]]
    numbers = ", ".join(f"{row} {value:.1f}" for row, value in accuracy.items() if math.isfinite(value))
    if below:
        return False, f"pre-training does not pay for {below} ({numbers})"
    return True, f"pre-training pays: every pre-trained row above none ({numbers})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", default="demo", help="demo | small (configs/reproduce/<scale>.yaml)")
    parser.add_argument("--out", default="outputs/benchmarks", help="folder for reproduce_table9.json")
    parser.add_argument("--output-dir", default=None, help="where the grid's runs go (default: the scale file's)")
    args = parser.parse_args(argv)

    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from flows.reproduce import reproduce
    from services.paper_tables import reproduced_table
    from services.store import open_reader

    console = Console()
    started = time.time()
    reproduce(table="table9", scale=args.scale, output_dir=args.output_dir)
    seconds = time.time() - started
    with open_reader() as reader:
        table = reproduced_table(reader, "table9", args.scale)
    console.print(table.to_string(index=False, float_format=lambda value: f"{value:.4g}"))
    accuracy = dict(zip(table["row"], table["ImageNet-1K ours"]))
    passed, line = verdict(accuracy)
    console.print(("[green]" if passed else "[red]") + line)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "reproduce_table9.json").write_text(json.dumps({
        "scale": args.scale, "seconds": round(seconds, 1), "verdict": line, "passed": passed,
        "rows": json.loads(table.to_json(orient="records"))}, indent=2))
    console.print(f"table9 at scale {args.scale}: {seconds:.0f} s; {out / 'reproduce_table9.json'}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
