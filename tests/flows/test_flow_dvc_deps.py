"""``dvc.yaml`` declares as dependencies all the library code each stage runs, so that a code change reruns
the stages it can change (and ``dvc repro`` agrees with the flows' cache key, which hashes that code)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from flows.outline import DISTRIBUTED_STAGES
from flows.stages.bodies import STAGES
from flows.stages.cache import CODE_ROOTS

REPO = Path(__file__).resolve().parents[2]
# The library module each stage of flows/stages/bodies.py calls into.
ENTRY_MODULES = {
    "prepare_data": "itpn.data",
    "pretrain": "itpn.pretrain",
    "finetune@classification": "itpn.finetune",
    "finetune@detection": "itpn.mmlab",
    "finetune@segmentation": "itpn.mmlab",
    "finetune@rotated": "itpn.mmlab",
    "benchmark_acceleration": "itpn.bench.acceleration",
}
# Imported without being run: ``import itpn`` registers the models with timm, data preparation uses none.
NOT_RUN = {"prepare_data": {"itpn/models"}}
LIST_LIBRARY_CODE = """
import json, sys
import {module}
names = {{name for name in sys.modules if name.startswith(("itpn.", "flows."))}}
paths = {{sys.modules[name].__file__ for name in names if getattr(sys.modules[name], "__file__", None)}}
print(json.dumps(sorted(paths)))
"""


def covered(path: str, deps: list[str]) -> bool:
    return any(path == dep or path.startswith(dep.rstrip("/") + "/") for dep in deps)


def stages() -> dict[str, dict]:
    """dvc.yaml's stages as DVC resolves them (templating and foreach expanded): name -> deps, params."""
    from dvc.repo import Repo

    with Repo(str(REPO)) as repo:
        return {stage.addressing: {"deps": [dep.def_path for dep in stage.deps if not hasattr(dep, "params")],
                                   "params": sorted(name for dep in stage.deps if hasattr(dep, "params")
                                                    for name in dep.params),
                                   "cmd": stage.cmd}
                for stage in repo.index.stages}


def test_every_stage_of_the_flows_is_a_dvc_stage():
    assert set(ENTRY_MODULES) | {"record"} == set(stages())
    assert {name.replace("@", "_") for name in ENTRY_MODULES} == set(STAGES)


@pytest.mark.parametrize("stage", sorted(DISTRIBUTED_STAGES))
def test_training_stages_key_on_the_world_size_and_launch_like_the_flows(stage):
    resolved = stages()[stage.replace("finetune_", "finetune@")]
    assert "experiment.gpus" in resolved["params"]
    assert resolved["cmd"].startswith(f"python -m flows.stages {stage} --params params.yaml")


@pytest.mark.parametrize("stage", [
    pytest.param(stage, marks=pytest.mark.openmmlab) if module == "itpn.mmlab" else stage
    for stage, module in ENTRY_MODULES.items()])
def test_each_stage_depends_on_the_code_it_runs(stage):
    process = subprocess.run([sys.executable, "-c", LIST_LIBRARY_CODE.format(module=ENTRY_MODULES[stage]),
                              ], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert process.returncode == 0, process.stderr
    files = [str(Path(path).resolve().relative_to(REPO)) for path in json.loads(process.stdout.splitlines()[-1])]
    imported = {path.rsplit("/", 1)[0] if path.count("/") > 1 else path for path in files}
    imported -= {"itpn/__init__.py"} | NOT_RUN.get(stage, set())
    deps = stages()[stage]["deps"]
    missing = sorted(path for path in imported if not covered(path, deps))
    assert not missing, f"dvc.yaml stage {stage!r} runs code it does not list in deps: {missing}"
    for code in [root for root in CODE_ROOTS if root.startswith("flows/")]:  # the stage code its key hashes
        assert code in deps
