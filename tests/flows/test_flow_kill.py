"""Kill anywhere: a small experiment with every stage kind (pre-training, ImageNet fine-tuning, an OpenMMLab
fine-tune, the benchmark, recording), killed as a whole process group at moments in each phase of a stage,
run again each time, ends with the store an uninterrupted run ends with: the same runs, the same metric
rows (values), each once, none left running; and the same weights.

Every killed stage runs as ``python -m flows.stages <stage>`` (the command the flows, DVC and a user's
shell run) in its own process group; the uninterrupted runs it is compared with run the same
``run_stage`` in the test's process (an interpreter's start less each). A killed run goes through a
small gate that holds the process at one point of the stage's own progress (the start of update N, the
export, the k-th validation, a variant's evaluation), says so in a file, and waits there to be killed:
the moment is chosen by what the stage has done, never by a sleep. Each kill is followed by the next
run, in the same folder, so every state a kill leaves is resumed: the chain of each stage ends with a
run to its end. The phases:

* before the first checkpoint: fine-tuning at update 1 (checkpoints every 2 updates); the benchmark;
* between checkpoints: fine-tuning at update 5; pre-training and segmentation while their 2nd checkpoint
  is written (the file whole under its temporary name, not renamed: the 1st is the one resumed from);
* after the last checkpoint, before the evaluation / export: pre-training at its export, fine-tuning at
  its export (after its last checkpoint), segmentation at the validation after its last iteration (the
  case mmengine's loop does not validate again: issue 21);
* among the acceleration variants: fine-tuning at its 2nd variant, segmentation at its 2nd variant: the
  finished 1st one is kept (its file not rewritten), the one cut short is redone;
* after the results were written, before the store recorded them: the killed folder's results are
  recorded after all its runs, twice (a run killed after its recording committed records again).

The orchestrator (Prefect) adds nothing a stage's kill does not test here, and costs a server; the whole
``itpn demo`` killed at several seconds is ``benchmarks/kill_anywhere.py``.
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from flow_params import write_params

REPO = Path(__file__).resolve().parents[2]
CHECKPOINT_EVERY = 2
pytestmark = pytest.mark.slow  # many interpreter starts
GATE = """
import importlib, sys, time
target, when, ready = sys.argv[1], sys.argv[2], sys.argv[3]
module_name, _, name = target.partition(":")
owner = importlib.import_module(module_name)
if "." in name:  # a method: Class.method
    owner = getattr(owner, name.split(".")[0])
    name = name.split(".")[1]
original = getattr(owner, name)
calls = 0

def gate(*args, **kwargs):
    global calls
    calls += 1
    if eval(when, {"args": args, "calls": calls}):
        open(ready, "w").close()
        time.sleep(3600)  # held here until the test kills the process group
    return original(*args, **kwargs)

setattr(owner, name, gate)
from flows.stages.cli import main
sys.exit(main(sys.argv[4:]))
"""
CLASSIFICATION = {"img_size": 32, "batch_size": 4, "epochs": 2, "warmup_epochs": 0, "lr": 1.0e-3, "num_workers": 0,
                  "model_ema": True, "mixup": 0.8, "cutmix": 1.0, "progress": False, "log_every": 1,
                  "checkpoint_every": CHECKPOINT_EVERY, "eval_variants": ["baseline", "migration_30"]}
SEGMENTATION = {"config": "configs/segmentation/demo_upernet_fast-itpn-tiny_generated-ade20k.py",
                "cfg_options": {"train_cfg.max_iters": 4, "train_cfg.val_interval": 4, "train_dataloader.batch_size": 2,
                                "default_hooks.checkpoint.interval": CHECKPOINT_EVERY,
                                "model.backbone.window_size": 4},  # windows that act on its 128 px (8x8 tokens)
                "eval_variants": ["migration_30", "window"]}
SETS = {"imagenet": {"seed": 0, "num_classes": 3, "train_per_class": 4, "val_per_class": 2, "image_size": 32},
        "ade20k": {"seed": 0, "num_classes": 3, "train_images": 4, "val_images": 2, "image_size": 64}}
STAGES = ("prepare_data", "pretrain", "finetune_classification", "finetune_segmentation", "benchmark_acceleration")
TIMED = ("per_s", "seconds", "speedup")  # measured times: they differ between any two runs


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}


def stage(name: str, params: Path) -> None:
    subprocess.run([sys.executable, "-m", "flows.stages", name, "--params", str(params)], cwd=REPO, env=_env(),
                   check=True, capture_output=True, timeout=600)


def in_process(name: str, params: Path) -> None:
    """``name`` run to its end in this process (what ``python -m flows.stages`` runs, without the interpreter's
    start): the uninterrupted runs the killed ones are compared with."""
    from flows.params import PipelineParams
    from flows.stages.run import run_stage

    run_stage(name, PipelineParams.load(str(params), check_data=True))


def killed_stage(name: str, params: Path, target: str, when: str, tmp_path: Path) -> None:
    """Run ``name`` in its own process group until ``target`` is called with ``when`` true (an expression of
    its ``args`` and the number of ``calls`` so far), then SIGKILL the whole group there."""
    gate, ready = tmp_path / "gate.py", tmp_path / f"{name}.ready"
    gate.write_text(GATE)
    ready.unlink(missing_ok=True)
    process = subprocess.Popen([sys.executable, str(gate), target, when, str(ready), name, "--params", str(params)],
                               cwd=REPO, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               start_new_session=True)
    deadline = time.monotonic() + 600
    while not ready.exists():
        if process.poll() is not None:
            raise AssertionError(f"{name} ended before {target} with {when}: {process.stderr.read().decode()[-3000:]}")
        assert time.monotonic() < deadline, f"{name} did not reach {target} with {when}"
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    assert process.wait(timeout=60) == -signal.SIGKILL


def without_timing(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in ("img_per_s", "seconds")} for row in rows]


def untimed_metrics(stage_dir: Path) -> dict[str, float]:
    """A stage's ``metrics.json`` without the measured times."""
    return {k: v for k, v in json.loads((stage_dir / "metrics.json").read_text()).items()
            if not any(word in k for word in TIMED)}


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def record(params: Path, url: str, times: int = 1) -> None:
    """Every stage's result into the store at ``url``, as the flows' record task does, ``times`` times."""
    from flows.params import PipelineParams
    from flows.record import record_stage_result
    from flows.stages.result import StageResult
    from services.store import open_writer

    loaded = PipelineParams.load(str(params))
    with open_writer(url) as writer:
        for _ in range(times):
            for name in STAGES:
                record_stage_result(writer, loaded, name, StageResult.read(loaded.stage_dir(name) / "result.json"))


def store_contents(url: str) -> dict:
    """What a store holds, without ids, times and measured seconds: each run (experiment, key, status,
    attempts), each metric row with its value, each benchmark row's identity."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.connect() as connection:
        runs = connection.execute(text(
            "SELECT e.name, r.run_key, r.status, r.attempts FROM runs r JOIN experiments e ON e.id = r.experiment_id"
        )).all()
        metrics = connection.execute(text(
            "SELECT r.run_key, m.task, m.dataset, m.split, m.name, m.step, m.model, m.variant, m.value "
            "FROM metrics m JOIN runs r ON r.id = m.run_id")).all()
        benchmarks = connection.execute(text(
            "SELECT r.run_key, b.model, b.variant, b.resolution, b.batch_size, b.device, b.dtype "
            "FROM benchmarks b JOIN runs r ON r.id = b.run_id")).all()
    engine.dispose()
    untimed = [tuple(row) for row in metrics if not any(word in row.name for word in TIMED)]
    return {"runs": sorted(map(tuple, runs)), "metrics": sorted(untimed), "benchmarks": sorted(map(tuple, benchmarks)),
            "metric_rows": len(metrics)}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """Two experiment folders with the same parameters and one shared generated data set, prepared."""
    root = tmp_path_factory.mktemp("kill")
    made = []
    for name in ("whole", "killed"):
        (root / name).mkdir()
        made.append(write_params(root / name, data={"root": str(root / "data"), "sets": SETS},
                                 pretrain={"total_steps": 6, "checkpoint_every": CHECKPOINT_EVERY},
                                 finetune={"classification": CLASSIFICATION, "segmentation": SEGMENTATION}))
    for params in made:
        in_process("prepare_data", params)
    return made


@pytest.mark.openmmlab
def test_an_experiment_killed_in_every_phase_of_every_stage_ends_with_the_uninterrupted_store(folders, tmp_path):
    whole, killed = folders
    for name in STAGES[1:]:
        in_process(name, whole)
    expected_url, got_url = f"sqlite:///{tmp_path / 'whole.db'}", f"sqlite:///{tmp_path / 'killed.db'}"
    record(whole, expected_url)
    out = killed.parent / "outputs"

    # pre-training: 6 updates, checkpoints every 2; while the 2nd checkpoint is written (its file whole, not yet
    # renamed into place: the 1st is the one to resume from), then after the last one (at its export)
    killed_stage("pretrain", killed, "itpn.files:replace_atomically",
                 "args[1].endswith('checkpoint.pt') and __import__('os').path.exists(args[1])", tmp_path)
    assert torch.load(out / "pretrain/run/checkpoint.pt", weights_only=False)["step"] == CHECKPOINT_EVERY
    assert list((out / "pretrain/run").glob(".checkpoint.pt.*.tmp"))  # what the kill cut short
    assert [row["step"] for row in jsonl(out / "pretrain/run/metrics.jsonl")] == [1, 2, 3, 4]  # 3, 4 are redone
    killed_stage("pretrain", killed, "itpn.pretrain.trainer:Trainer.export", "True", tmp_path)
    assert torch.load(out / "pretrain/run/checkpoint.pt", weights_only=False)["step"] == 6
    assert not list((out / "pretrain/run").glob(".checkpoint.pt.*.tmp"))  # removed by the run after
    assert not (out / "pretrain/run/backbone.safetensors").exists()
    assert not (out / "pretrain/result.json").exists()
    stage("pretrain", killed)

    # ImageNet fine-tuning: 2 epochs of 3 updates, checkpoints every 2 updates and at each epoch's end (after
    # its evaluation); before the first checkpoint, between two, after the last (at the export), and at the
    # 2nd acceleration variant
    step_seed = "itpn.finetune.classification:step_seed"
    killed_stage("finetune_classification", killed, step_seed, "args[1] == 1", tmp_path)
    assert not (out / "finetune_classification/run/checkpoint.pt").exists()
    killed_stage("finetune_classification", killed, step_seed, "args[1] == 5", tmp_path)
    killed_stage("finetune_classification", killed, "itpn.finetune.classification:save_safetensors", "True", tmp_path)
    assert torch.load(out / "finetune_classification/run/checkpoint.pt", weights_only=False)["updates"] == 6
    killed_stage("finetune_classification", killed, "itpn.finetune.classification:set_acceleration",
                 "args[1].name == 'migration_30'", tmp_path)  # the variant, resolved with its window size
    finished_variant = out / "finetune_classification/run/eval/baseline.json"
    evaluated_at = finished_variant.stat().st_mtime_ns
    assert not (out / "finetune_classification/run/eval/migration_30.json").exists()
    stage("finetune_classification", killed)
    assert finished_variant.stat().st_mtime_ns == evaluated_at  # kept, not evaluated again

    # UPerNet through mmengine: 4 iterations, checkpoints every 2, validation after the 4th, then 2 variants;
    # while the 2nd checkpoint is written (mmengine's CheckpointHook, through AtomicCheckpointRunner), after
    # the last checkpoint (at the validation: mmengine's resumed loop trains nothing and would validate
    # nothing), and at the 2nd variant's evaluation
    run = out / "finetune_segmentation/run"
    killed_stage("finetune_segmentation", killed, "itpn.mmlab.checkpoints:replace_atomically",
                 "args[1].endswith('iter_4.pth')", tmp_path)
    assert (run / "iter_2.pth").exists() and not (run / "iter_4.pth").exists()
    assert list(run.glob(".iter_4.pth.*.tmp"))
    first_checkpoint = (run / "iter_2.pth").stat().st_mtime_ns
    killed_stage("finetune_segmentation", killed, "mmengine.runner.loops:ValLoop.run", "calls == 1", tmp_path)
    assert (run / "iter_2.pth").stat().st_mtime_ns == first_checkpoint  # resumed, not trained again
    assert (run / "iter_4.pth").exists() and not (run / "metrics.json").exists()
    assert not list(run.glob(".iter_4.pth.*.tmp"))
    killed_stage("finetune_segmentation", killed, "mmengine.runner.loops:ValLoop.run", "calls == 3", tmp_path)
    finished_variant = run / "eval/migration_30/metrics.json"
    evaluated_at = finished_variant.stat().st_mtime_ns
    assert (run / "metrics.json").exists() and not (run / "eval/window/metrics.json").exists()
    stage("finetune_segmentation", killed)
    assert finished_variant.stat().st_mtime_ns == evaluated_at

    # the benchmark (no checkpoint: a killed one runs again)
    killed_stage("benchmark_acceleration", killed, "itpn.bench.acceleration:measure_throughput", "True", tmp_path)
    stage("benchmark_acceleration", killed)

    # results written, store not yet recorded; then recorded again, as after a kill once it had committed
    record(killed, got_url, times=2)

    expected, got = store_contents(expected_url), store_contents(got_url)
    assert got["runs"] == expected["runs"]
    assert len(got["runs"]) == len(STAGES) and {run[2:] for run in got["runs"]} == {("completed", 1)}
    assert got["metrics"] == expected["metrics"]
    assert got["metric_rows"] == expected["metric_rows"]  # the timed rows too, once each
    assert got["benchmarks"] == expected["benchmarks"]
    want, have = (p.parent / "outputs" for p in (whole, killed))
    for name in ("pretrain", "finetune_classification", "finetune_segmentation"):
        assert untimed_metrics(have / name) == untimed_metrics(want / name), name
    assert ((have / "pretrain/run/backbone.safetensors").read_bytes()
            == (want / "pretrain/run/backbone.safetensors").read_bytes())
    assert (without_timing(jsonl(have / "pretrain/run/metrics.jsonl"))
            == without_timing(jsonl(want / "pretrain/run/metrics.jsonl")))
    assert ((have / "finetune_classification/run/model.safetensors").read_bytes()
            == (want / "finetune_classification/run/model.safetensors").read_bytes())
    assert (have / "finetune_classification/curves.csv").read_text() == (
        want / "finetune_classification/curves.csv").read_text()
    curve = "finetune_segmentation/run/curve.jsonl"
    assert jsonl(have / curve) == jsonl(want / curve)
    expected_weights = torch.load(want / "finetune_segmentation/run/iter_4.pth", weights_only=False)["state_dict"]
    weights = torch.load(run / "iter_4.pth", weights_only=False)["state_dict"]
    assert expected_weights.keys() == weights.keys() and all(torch.equal(expected_weights[k], weights[k])
                                                            for k in weights)


@pytest.mark.openmmlab
def test_no_metric_says_whether_the_evaluation_ran_on_which_weights_and_what_to_do(tmp_path):
    from mmengine.config import Config

    from itpn.mmlab import MetricRecordsHook
    from itpn.mmlab.runner import no_metric_message

    cfg = Config.fromfile(str(REPO / SEGMENTATION["config"]))
    cfg.work_dir = str(tmp_path)
    hook = MetricRecordsHook("segmentation", "ade20k", "m", "baseline", str(tmp_path))
    message = no_metric_message("segmentation", cfg, hook, 4, None)
    assert "no evaluation ran" in message and "val_dataloader" in message and cfg.filename in message
    hook.evaluated, hook.validated_at = {"mIoU": float("nan"), "aAcc": -1.0}, 4
    message = no_metric_message("segmentation", cfg, hook, 4, f"{tmp_path}/iter_4.pth")
    assert f"ran on the weights of iteration 4 ({tmp_path}/iter_4.pth)" in message
    assert "returned mIoU=nan, aAcc=-1.0" in message and "train longer" in message
    assert f"{tmp_path}/curve.jsonl" in message


def test_data_generation_killed_midway_is_generated_again_by_the_next_run(folders, tmp_path):
    """Killed after 3 images of the generated ImageNet, ``prepare_data`` again regenerates over what was left
    (the generator refuses a folder with files it did not finish) and ends with the same data set."""
    whole, _ = folders
    params = write_params(tmp_path, data={"root": str(tmp_path / "data"), "sets": {"imagenet": SETS["imagenet"]}})
    killed_stage("prepare_data", params, "itpn.data.imagenet.generate:write_bytes", "calls == 4", tmp_path)
    assert len(list((tmp_path / "data/imagenet").rglob("*.JPEG"))) == 3
    assert not (tmp_path / "data/imagenet/manifest.json").exists()
    stage("prepare_data", params)
    made = json.loads((tmp_path / "data/imagenet/manifest.json").read_text())
    expected = json.loads((whole.parent.parent / "data/imagenet/manifest.json").read_text())
    assert made["content_hash"] == expected["content_hash"] and made["counts"] == expected["counts"]
