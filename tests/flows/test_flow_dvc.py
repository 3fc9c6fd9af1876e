"""``dvc.yaml`` as a user runs it, in a throwaway git repository holding the pipeline files: ``dvc repro``
writes metrics and plots DVC can read, a changed parameter reruns only the stages that depend on it (a
fine-tuning parameter the fine-tune alone, a pre-training parameter the pre-training and the fine-tune
built on it, never the benchmark), an unchanged pipeline is a no-op, and ``dvc exp run --temp`` runs an
experiment without touching the workspace."""
import csv
import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from flow_params import TINY_PARAMS, write_params

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
# The stages run here (DVC runs prepare_data first, as pretrain needs it); the benchmark is independent
# of pre-training, so a pre-training parameter must not rerun it.
TARGETS = ("finetune@classification", "benchmark_acceleration")
STAGES = {"prepare_data", "pretrain", "finetune@classification", "benchmark_acceleration"}
CLASSIFICATION = {"img_size": 32, "batch_size": 4, "epochs": 1, "warmup_epochs": 0, "lr": 1.0e-3, "num_workers": 0,
                  "model_ema": False, "mixup": 0.0, "cutmix": 0.0, "progress": False,
                  "eval_variants": ["migration_30"]}
GIT_IDENTITY = {"GIT_AUTHOR_NAME": "itpn test", "GIT_AUTHOR_EMAIL": "test@example.invalid",
                "GIT_COMMITTER_NAME": "itpn test", "GIT_COMMITTER_EMAIL": "test@example.invalid"}

pytestmark = pytest.mark.slow


@pytest.fixture
def dvc_repo(tmp_path) -> Path:
    """A git repository with ``dvc.yaml``, ``.dvc/config``, a tiny ``params.yaml`` and copies of the code
    folders ``dvc.yaml`` lists as dependencies (DVC hashes them; it does not follow symlinked folders)."""
    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copy(REPO / "dvc.yaml", repo / "dvc.yaml")
    (repo / ".dvc").mkdir()
    shutil.copy(REPO / ".dvc" / "config", repo / ".dvc" / "config")
    for folder in ("itpn", "flows", "configs"):
        shutil.copytree(REPO / folder, repo / folder, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    write_params(repo, pretrain={"lr": 1.0e-3}, finetune={"classification": CLASSIFICATION})
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "pipeline")
    return repo


@pytest.fixture
def dvc_env(tmp_path) -> dict[str, str]:
    """The venv's ``python`` first on PATH (stage commands say ``python -m flows.stages``), the services
    importable, a private store, no analytics, a git identity for the experiment commits."""
    env = dict(os.environ)
    env.update({
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(REPO),
        "DVC_NO_ANALYTICS": "1",
        "DVC_SITE_CACHE_DIR": str(tmp_path / "dvc-site-cache"),
        "ITPN_STORE_URL": f"sqlite:///{tmp_path / 'results.db'}",
        **GIT_IDENTITY,
    })
    return env


def git(repo: Path, *arguments: str) -> str:
    process = subprocess.run(["git", *arguments], cwd=repo, env={**os.environ, **GIT_IDENTITY}, capture_output=True,
                             text=True)
    assert process.returncode == 0, f"git {' '.join(arguments)} failed:\n{process.stderr}"
    return process.stdout


def dvc(repo: Path, env: dict[str, str], *arguments: str) -> str:
    process = subprocess.run([str(BIN / "dvc"), *arguments], cwd=repo, env=env, capture_output=True, text=True,
                             timeout=900)
    assert process.returncode == 0, f"dvc {' '.join(arguments)} failed:\n{process.stdout}\n{process.stderr}"
    return process.stdout


def changed(repo: Path, env: dict[str, str]) -> set[str]:
    """The stages ``dvc status`` finds changed, upstream ones included."""
    return set(json.loads(dvc(repo, env, "status", "--json", "--with-deps", *TARGETS)))


def ran(output: str) -> list[str]:
    """The stages ``dvc repro`` / ``dvc exp run`` ran, in order."""
    return re.findall(r"Running stage '([\w@]+)'", output)


def result_times(repo: Path) -> dict[str, int]:
    return {stage: (repo / "outputs" / stage.replace("@", "_") / "result.json").stat().st_mtime_ns for stage in STAGES}


def set_param(repo: Path, dotted: str, value) -> None:
    path = repo / "params.yaml"
    params = yaml.safe_load(path.read_text())
    *sections, key = dotted.split(".")
    node = params
    for section in sections:
        node = node[section]
    node[key] = value
    path.write_text(yaml.safe_dump(params))


def test_dvc_repro_reruns_only_changed_stages_and_exp_run_leaves_workspace(dvc_repo, dvc_env):
    first = dvc(dvc_repo, dvc_env, "repro", *TARGETS)
    order = ran(first)
    assert set(order) == STAGES
    assert order.index("prepare_data") < order.index("pretrain") < order.index("finetune@classification")

    metrics = json.loads((dvc_repo / "outputs" / "pretrain" / "metrics.json").read_text())
    assert math.isfinite(metrics["pretrain/imagenet/train/loss"])
    with (dvc_repo / "outputs" / "pretrain" / "curves.csv").open() as handle:
        curve = list(csv.DictReader(handle))
    assert [int(row["step"]) for row in curve] == [1, 2, 3]  # total_steps: 3
    assert all(math.isfinite(float(row["loss"])) for row in curve)
    shown = json.loads(dvc(dvc_repo, dvc_env, "metrics", "show", "--json", "outputs/pretrain/metrics.json"))
    assert shown[""]["data"]["outputs/pretrain/metrics.json"]["data"] == metrics
    plots = json.loads(dvc(dvc_repo, dvc_env, "plots", "show", "--json", "outputs/pretrain/curves.csv"))
    [plot] = plots["data"]["outputs/pretrain/curves.csv"]
    assert plot["content"]["encoding"]["x"]["field"] == "step"
    assert [float(point["loss"]) for point in plot["content"]["data"]["values"]] == [float(r["loss"]) for r in curve]
    benchmark = json.loads((dvc_repo / "outputs" / "benchmark_acceleration" / "result.json").read_text())
    assert {row["variant"] for row in benchmark["benchmarks"]} == {"baseline", *TINY_PARAMS["benchmark"]["variants"]}
    assert all(row["images_per_s"] > 0 for row in benchmark["benchmarks"])
    accuracy = json.loads((dvc_repo / "outputs" / "finetune_classification" / "metrics.json").read_text())
    assert {f"classification/imagenet/val/top1/{variant}" for variant in ("baseline", "migration_30")} <= set(accuracy)

    before = result_times(dvc_repo)
    again = dvc(dvc_repo, dvc_env, "repro", *TARGETS)
    assert ran(again) == [] and result_times(dvc_repo) == before  # unchanged parameters: a no-op

    set_param(dvc_repo, "finetune.classification.lr", 2.0e-3)
    assert changed(dvc_repo, dvc_env) == {"finetune@classification"}
    assert ran(dvc(dvc_repo, dvc_env, "repro", *TARGETS)) == ["finetune@classification"]
    after = result_times(dvc_repo)
    assert {stage for stage in STAGES if after[stage] != before[stage]} == {"finetune@classification"}

    before = after
    set_param(dvc_repo, "pretrain.lr", 2.0e-3)
    assert changed(dvc_repo, dvc_env) == {"pretrain"}
    assert ran(dvc(dvc_repo, dvc_env, "repro", *TARGETS)) == ["pretrain", "finetune@classification"]
    after = result_times(dvc_repo)
    assert {stage for stage in STAGES if after[stage] != before[stage]} == {"pretrain", "finetune@classification"}
    assert changed(dvc_repo, dvc_env) == set()

    # an experiment in a temporary workspace, from the committed results
    git(dvc_repo, "add", "-A")
    git(dvc_repo, "commit", "-q", "-m", "baseline results")  # cache: false outputs live in git
    workspace_params = (dvc_repo / "params.yaml").read_text()

    output = dvc(dvc_repo, dvc_env, "exp", "run", "--temp", "-S", "pretrain.lr=3.0e-3", *TARGETS)

    assert ran(output) == ["pretrain", "finetune@classification"]
    assert (dvc_repo / "params.yaml").read_text() == workspace_params
    experiments = json.loads(dvc(dvc_repo, dvc_env, "exp", "show", "--json"))
    lrs = [run["data"]["params"]["params.yaml"]["data"]["pretrain"]["lr"]
           for commit in experiments for experiment in (commit.get("experiments") or [])
           for run in experiment["revs"]]
    assert 3.0e-3 in lrs


def test_dvc_repro_prepare_data_with_the_data_root_elsewhere(dvc_repo, dvc_env, tmp_path):
    """The README's advice for real runs: data.root outside the repository. dvc.yaml takes its paths from
    params.yaml, so the data land (and are looked for) there, and DVC neither caches nor deletes them."""
    elsewhere = tmp_path / "datasets"
    set_param(dvc_repo, "data.root", str(elsewhere))
    assert ran(dvc(dvc_repo, dvc_env, "repro", "prepare_data")) == ["prepare_data"]
    manifest = json.loads((elsewhere / "imagenet" / "manifest.json").read_text())
    assert manifest["counts"]
    assert not (dvc_repo / "outputs" / "data").exists()
    assert changed(dvc_repo, dvc_env) >= {"pretrain"} and "prepare_data" not in changed(dvc_repo, dvc_env)
    cache = dvc_repo / ".dvc" / "cache"
    assert not cache.exists() or not any(path.is_file() for path in cache.rglob("*"))  # no copy of the data
