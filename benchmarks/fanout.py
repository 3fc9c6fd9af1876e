"""How many fine-tunes at once finish an experiment soonest: the ``experiment`` flow's fine-tune phase
under each ``experiment.cpu_jobs`` bound (or on GPUs, the ``gpu`` limit), side by side in one run.

    python benchmarks/fanout.py --params params.yaml --bounds 1 2 4 --out outputs/fanout.json

Data preparation, pre-training and the benchmark are shared by every bound (run once, then cached:
``experiment.stage_dirs``); each bound fine-tunes afresh in its own folder. Prints a markdown table:
the bound, the fine-tune phase's wall time (first start to last end, from the store), the sum of the
fine-tunes' own durations, and the ratio of each wall time to the bound of 1's. Writes the same as JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def bound_params(base: Path, root: Path, bound: int) -> Path:
    """The base parameters with ``cpu_jobs`` = bound, own fine-tune folders, shared upstream stages."""
    params = yaml.safe_load(base.read_text())
    experiment = params.setdefault("experiment", {})
    experiment.update(name=f"fanout-{bound}", cpu_jobs=bound, output_dir=str(root / f"bound-{bound}"),
                      stage_dirs={stage: str(root / "shared" / stage)
                                  for stage in ("prepare_data", "pretrain", "benchmark_acceleration")})
    data = params.setdefault("data", {})
    data["root"] = str((base.parent / data.get("root", "outputs/data")).resolve())
    path = root / f"bound-{bound}.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default=str(REPO / "params.yaml"))
    parser.add_argument("--bounds", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--root", default=str(REPO / "outputs" / "fanout"), help="folder for the runs")
    parser.add_argument("--out", default=None, help="JSON file for the table")
    args = parser.parse_args(argv)
    root = Path(args.root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("ITPN_STORE_URL", f"sqlite:///{root / 'results.db'}")

    from flows import pipeline
    from flows.resources import reset_slots
    from services.store import open_reader

    reset_slots()  # this run's temporary Prefect server: nothing else holds a training slot
    rows = []
    for bound in args.bounds:
        params = bound_params(Path(args.params).resolve(), root, bound)
        started = time.perf_counter()
        pipeline.experiment(str(params))
        flow_s = time.perf_counter() - started
        with open_reader() as reader:
            runs = reader.runs(experiment=f"fanout-{bound}")
        finetunes = runs[runs["flow_name"].str.startswith("finetune_")]
        wall = (finetunes["finished_at"].max() - finetunes["started_at"].min()).total_seconds()
        rows.append({"bound": bound, "finetunes": len(finetunes), "phase_s": round(wall, 1),
                     "sum_s": round(float(finetunes["duration_s"].sum()), 1), "flow_s": round(flow_s, 1),
                     "cpus": os.cpu_count(), "load_1min": round(os.getloadavg()[0], 1)})
        print(json.dumps(rows[-1]), flush=True)
    reference = next((row["phase_s"] for row in rows if row["bound"] == 1), rows[0]["phase_s"])
    print("\n| fine-tunes at once | fine-tune phase (s) | sum of fine-tunes (s) | phase vs 1 at once | load (1 min) |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['bound']} | {row['phase_s']:.0f} | {row['sum_s']:.0f} | {row['phase_s'] / reference:.2f}× | "
              f"{row['load_1min']} |")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
