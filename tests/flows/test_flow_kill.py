"""Stages killed with SIGKILL between two periodic checkpoints and run again end exactly where an
uninterrupted run ends: the same export bytes (what DVC hashes), the same metric rows and curve.

The killed process is ``flows.stages``' own ``main`` (as ``python -m flows.stages <stage>`` runs it),
started through a small gate that holds the run at the start of update ``kill_at`` (after one periodic
checkpoint, before the next) by wrapping the trainer module's ``step_seed``, which both trainers
call at the start of every micro-step: the kill then always lands between two checkpoints. The rerun is
the plain ``python -m flows.stages <stage>``. Pre-training: 6 updates, checkpoints every 2, killed in the
4th. ImageNet fine-tuning: 2 epochs of 3 updates (mixup, cutmix and EMA on), checkpoints every 2 updates
and at each epoch's end, killed in the 6th (last checkpoint at update 4).
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from flow_params import write_params

REPO = Path(__file__).resolve().parents[2]
CHECKPOINT_EVERY = 2
pytestmark = pytest.mark.slow  # several interpreter starts per test
GATE = """
import importlib, sys, time
target, update, ready = sys.argv[1], int(sys.argv[2]), sys.argv[3]
module_name, _, name = target.partition(":")
owner = importlib.import_module(module_name)
if "." in name:  # mmengine's IterBasedTrainLoop.run_iter: the update is the loop's _iter
    owner = getattr(owner, name.split(".")[0])
    name = name.split(".")[1]
    update_of = lambda args: args[0]._iter
else:  # a trainer module's step_seed(seed, update, micro, rank)
    update_of = lambda args: args[1]
original = getattr(owner, name)

def gate(*args, **kwargs):
    if update_of(args) == update:
        open(ready, "w").close()
        time.sleep(3600)  # held here until the test kills the process
    return original(*args, **kwargs)

setattr(owner, name, gate)
from flows.stages.cli import main
sys.exit(main(sys.argv[4:]))
"""
CLASSIFICATION = {"img_size": 32, "batch_size": 4, "epochs": 2, "warmup_epochs": 0, "lr": 1.0e-3, "num_workers": 0,
                  "model_ema": True, "mixup": 0.8, "cutmix": 1.0, "progress": False, "log_every": 1,
                  "checkpoint_every": CHECKPOINT_EVERY, "eval_variants": []}


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}


def stage(name: str, params: Path) -> None:
    subprocess.run([sys.executable, "-m", "flows.stages", name, "--params", str(params)], cwd=REPO, env=_env(),
                   check=True, capture_output=True, timeout=600)


def killed_stage(name: str, params: Path, target: str, kill_at: int, tmp_path: Path) -> None:
    """Run ``name`` until it starts update ``kill_at`` (0-based: ``kill_at`` updates done) and SIGKILL it there."""
    gate, ready = tmp_path / "gate.py", tmp_path / f"{name}.ready"
    gate.write_text(GATE)
    process = subprocess.Popen([sys.executable, str(gate), target, str(kill_at), str(ready), name, "--params",
                                str(params)], cwd=REPO, env=_env(), stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    deadline = time.monotonic() + 600
    while not ready.exists():
        if process.poll() is not None:
            raise AssertionError(f"{name} ended before update {kill_at}: {process.stderr.read().decode()[-2000:]}")
        assert time.monotonic() < deadline, f"{name} did not reach update {kill_at}"
        time.sleep(0.1)
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=60) == -signal.SIGKILL


def without_timing(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in ("img_per_s", "seconds")} for row in rows]


def untimed_metrics(stage_dir: Path) -> dict[str, float]:
    """A stage's ``metrics.json`` without the measured seconds."""
    return {k: v for k, v in json.loads((stage_dir / "metrics.json").read_text()).items() if "seconds" not in k}


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two pipeline folders with the same parameters and one shared generated data set, prepared."""
    root = tmp_path_factory.mktemp("kill")
    data = root / "data"
    folders = []
    for name in ("whole", "killed"):
        folder = root / name
        folder.mkdir()
        params = write_params(folder, data={"root": str(data)},
                              pretrain={"total_steps": 6, "checkpoint_every": CHECKPOINT_EVERY},
                              finetune={"classification": CLASSIFICATION})
        folders.append(params)
    stage("prepare_data", folders[0])
    stage("prepare_data", folders[1])
    return folders


def test_pretrain_killed_between_checkpoints_resumes_to_the_uninterrupted_result(runs, tmp_path):
    whole, killed = runs
    stage("pretrain", whole)
    killed_stage("pretrain", killed, "itpn.pretrain.trainer:step_seed", 3, tmp_path)
    run = killed.parent / "outputs" / "pretrain" / "run"
    import torch

    assert torch.load(run / "checkpoint.pt", weights_only=False)["step"] == CHECKPOINT_EVERY
    assert [row["step"] for row in jsonl(run / "metrics.jsonl")] == [1, 2, 3]  # the 3rd update is redone
    assert not (killed.parent / "outputs" / "pretrain" / "result.json").exists()
    stage("pretrain", killed)
    expected, got = (p.parent / "outputs" / "pretrain" for p in (whole, killed))
    assert (got / "run" / "backbone.safetensors").read_bytes() == (expected / "run" / "backbone.safetensors").read_bytes()
    assert without_timing(jsonl(got / "run" / "metrics.jsonl")) == without_timing(jsonl(expected / "run" / "metrics.jsonl"))
    assert untimed_metrics(got) == untimed_metrics(expected)


def test_finetune_classification_killed_between_checkpoints_resumes_to_the_uninterrupted_result(runs, tmp_path):
    whole, killed = runs
    for params in runs:  # both from the same pre-training export
        if not (params.parent / "outputs" / "pretrain" / "result.json").exists():
            stage("pretrain", params)
    stage("finetune_classification", whole)
    killed_stage("finetune_classification", killed, "itpn.finetune.classification:step_seed", 5, tmp_path)
    assert not (killed.parent / "outputs" / "finetune_classification" / "result.json").exists()
    stage("finetune_classification", killed)
    expected, got = (p.parent / "outputs" / "finetune_classification" for p in (whole, killed))
    want, have = load_file(expected / "run" / "model.safetensors"), load_file(got / "run" / "model.safetensors")
    assert want.keys() == have.keys() and all(want[k].equal(have[k]) for k in want)
    assert (got / "run" / "model.safetensors").read_bytes() == (expected / "run" / "model.safetensors").read_bytes()
    assert untimed_metrics(got) == untimed_metrics(expected)
    assert (got / "curves.csv").read_text() == (expected / "curves.csv").read_text()


@pytest.mark.openmmlab
def test_finetune_segmentation_killed_between_checkpoints_resumes_from_its_last_checkpoint(tmp_path):
    """UPerNet on ADE20K through mmengine: 4 iterations, checkpoints every 2, killed in the 3rd. The rerun
    starts at iteration 2 and ends with the uninterrupted run's weights and metrics."""
    data = tmp_path / "data"
    segmentation = {"config": "configs/segmentation/demo_upernet_fast-itpn-tiny_generated-ade20k.py",
                    "cfg_options": {"train_cfg.max_iters": 4, "train_cfg.val_interval": 4,
                                    "default_hooks.checkpoint.interval": CHECKPOINT_EVERY}}
    sets = {"imagenet": {"seed": 0, "num_classes": 3, "train_per_class": 4, "val_per_class": 2, "image_size": 32},
            "ade20k": {"seed": 0, "num_classes": 3, "train_images": 4, "val_images": 2, "image_size": 64}}
    folders = []
    for name in ("whole", "killed"):
        (tmp_path / name).mkdir()
        folders.append(write_params(tmp_path / name, data={"root": str(data), "sets": sets},
                                    finetune={"segmentation": segmentation}))
    for params in folders:
        stage("prepare_data", params)
        stage("pretrain", params)
    whole, killed = folders
    stage("finetune_segmentation", whole)
    killed_stage("finetune_segmentation", killed, "mmengine.runner.loops:IterBasedTrainLoop.run_iter", 2, tmp_path)
    run = killed.parent / "outputs" / "finetune_segmentation" / "run"
    assert (run / "iter_2.pth").exists() and not (run / "iter_4.pth").exists()
    first_checkpoint = (run / "iter_2.pth").stat().st_mtime_ns
    stage("finetune_segmentation", killed)
    assert (run / "iter_2.pth").stat().st_mtime_ns == first_checkpoint  # resumed, not trained again
    expected, got = (p.parent / "outputs" / "finetune_segmentation" for p in (whole, killed))
    assert jsonl(got / "run" / "curve.jsonl") == jsonl(expected / "run" / "curve.jsonl")
    import torch

    want = torch.load(expected / "run" / "iter_4.pth", weights_only=False)["state_dict"]
    have = torch.load(got / "run" / "iter_4.pth", weights_only=False)["state_dict"]
    assert want.keys() == have.keys() and all(torch.equal(want[k], have[k]) for k in want)
    assert untimed_metrics(got) == untimed_metrics(expected)
