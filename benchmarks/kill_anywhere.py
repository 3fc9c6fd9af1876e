"""Kill the whole experiment anywhere: ``itpn run`` killed at several seconds (SIGKILL to its whole process
group: the CLI, Prefect's temporary server, the stage processes), run again to its end in the same state,
ends with the store an uninterrupted run ends with.

    python benchmarks/kill_anywhere.py --params params.yaml --kill-at 45 100 150 200 --out outputs/kill_anywhere.json

First one uninterrupted ``itpn run`` of ``--params`` (the demo's by default) in its own folder: the reference
store. Then, for each second of ``--kill-at``, a fresh folder (its own outputs, state directory and store;
the generated data shared): ``itpn run`` killed at that second, then ``itpn run`` again. Each store is
compared with the reference: the same runs (experiment, key), each completed with one attempt (none left
running, no failed attempt), the same metric rows with the same values (measured times left out:
``TIMED``), each once, the same benchmark rows (their identity: the speeds are measurements). Prints a
markdown table (the second, where the kill landed: the stages with a result then, the rerun's exit and
seconds, and each comparison) and writes it as JSON. The kill-anywhere test
(``tests/flows/test_flow_kill.py``) is the same check on a small experiment at chosen points of every stage.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
TIMED = ("per_s", "seconds", "speedup")  # measured times: they differ between any two runs


def trial_params(base: Path, folder: Path, data_root: Path) -> Path:
    """``base`` with its outputs in ``folder`` and the data sets in the shared ``data_root``."""
    params = yaml.safe_load(base.read_text())
    params.setdefault("experiment", {})["output_dir"] = str(folder / "outputs")
    params.setdefault("data", {})["root"] = str(data_root)
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def itpn_run(params: Path, folder: Path, kill_at: float | None = None) -> tuple[int, float]:
    """``itpn run --params params`` with ``folder/state`` as its state directory, in its own process group;
    killed (the whole group) after ``kill_at`` seconds when given. Returns its exit code and seconds."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PREFECT_", "ITPN_STORE"))}
    env.update(ITPN_STATE_DIR=str(folder / "state"), PYTHONPATH=str(REPO))
    started = time.monotonic()
    with (folder / "run.log").open("a") as log:
        process = subprocess.Popen([sys.executable, "-m", "itpn_cli.main", "run", "--params", str(params)], cwd=REPO,
                                   env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code = process.wait(timeout=kill_at)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            code = process.wait()
    return code, time.monotonic() - started


def store(folder: Path) -> dict[str, Any]:
    """What a trial's store holds, without ids, times and measured values."""
    with sqlite3.connect(folder / "state" / "results.db") as connection:
        runs = connection.execute("SELECT e.name, r.run_key, r.status, r.attempts FROM runs r "
                                  "JOIN experiments e ON e.id = r.experiment_id").fetchall()
        metrics = connection.execute("SELECT r.run_key, m.task, m.dataset, m.split, m.name, m.step, m.model, "
                                     "m.variant, m.value FROM metrics m JOIN runs r ON r.id = m.run_id").fetchall()
        benchmarks = connection.execute("SELECT r.run_key, b.model, b.variant, b.resolution, b.batch_size, b.device, "
                                        "b.dtype FROM benchmarks b JOIN runs r ON r.id = b.run_id").fetchall()
    return {"runs": sorted(runs), "metrics": sorted(row for row in metrics if not any(w in row[4] for w in TIMED)),
            "metric_rows": len(metrics), "benchmarks": sorted(benchmarks)}


def landed(folder: Path) -> str:
    """The stages that had written their result when the run was killed (read before the rerun)."""
    done = sorted(path.parent.name for path in (folder / "outputs").glob("*/result.json"))
    return ", ".join(done) or "none"


def compare(got: dict[str, Any], expected: dict[str, Any]) -> dict[str, bool]:
    return {"same runs": [run[:2] for run in got["runs"]] == [run[:2] for run in expected["runs"]],
            "all completed once": all(run[2:] == ("completed", 1) for run in got["runs"]),
            "same metric values": got["metrics"] == expected["metrics"],
            "no duplicate": got["metric_rows"] == expected["metric_rows"],
            "same benchmark rows": got["benchmarks"] == expected["benchmarks"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default=str(REPO / "params.yaml"))
    parser.add_argument("--kill-at", type=float, nargs="+", default=[45, 100, 150, 200, 250])
    parser.add_argument("--root", default=str(REPO / "outputs" / "kill_anywhere"), help="the trials' folders")
    parser.add_argument("--out", default=str(REPO / "outputs" / "kill_anywhere.json"))
    args = parser.parse_args(argv)
    root, base = Path(args.root).resolve(), Path(args.params).resolve()
    data_root = root / "data"
    reference = root / "uninterrupted"
    reference.mkdir(parents=True, exist_ok=True)
    code, seconds = itpn_run(trial_params(base, reference, data_root), reference)
    if code != 0:
        raise SystemExit(f"the uninterrupted run failed (exit {code}); see {reference / 'run.log'}")
    expected = store(reference)
    trials = []
    for kill_at in args.kill_at:
        folder = root / f"killed-at-{kill_at:g}s"
        folder.mkdir(parents=True, exist_ok=True)
        params = trial_params(base, folder, data_root)
        first, _ = itpn_run(params, folder, kill_at)
        done_then = landed(folder)
        code, rerun_seconds = itpn_run(params, folder)
        checks = compare(store(folder), expected) if code == 0 else {}
        trials.append({"kill_at_s": kill_at, "killed": first == -signal.SIGKILL, "results_then": done_then,
                       "rerun_exit": code, "rerun_s": round(rerun_seconds, 1), **checks,
                       "passed": code == 0 and all(checks.values())})
    report = {"params": str(base), "uninterrupted_s": round(seconds, 1), "runs": len(expected["runs"]),
              "metric_rows": expected["metric_rows"], "trials": trials}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    columns = ["kill_at_s", "killed", "results_then", "rerun_exit", "rerun_s", "same runs", "all completed once",
               "same metric values", "no duplicate", "same benchmark rows", "passed"]
    print(f"uninterrupted: {seconds:.0f} s, {len(expected['runs'])} runs, {expected['metric_rows']} metric rows")
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for trial in trials:
        print("| " + " | ".join(str(trial.get(column, "-")) for column in columns) + " |")
    return 0 if all(trial["passed"] for trial in trials) else 1


if __name__ == "__main__":
    sys.exit(main())
