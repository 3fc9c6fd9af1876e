"""The stage list is defined once (``flows/outline.py``); the stage bodies, the flows, ``prefect.yaml``'s
deployments and ``dvc.yaml`` follow it."""
from pathlib import Path

import yaml

from flows import pipeline
from flows.outline import FINETUNE_TASKS, STAGE_NAMES, finetune_stage
from flows.params import PipelineParams
from flows.stages.bodies import STAGES
from flows.tasks import DEPLOYMENTS

from test_flow_dvc_deps import stages

REPO = Path(__file__).resolve().parents[2]
# prefect.yaml's deployments beyond one per stage: the whole experiment, the sweep, the nightly benchmark, reproduce
OTHER_DEPLOYMENTS = {"experiment", "sweep", "benchmark-nightly", "reproduce"}


def test_the_stage_bodies_run_in_the_outlines_order():
    assert tuple(STAGES) == STAGE_NAMES
    assert [finetune_stage(task) for task in FINETUNE_TASKS] == [stage for stage in STAGE_NAMES if "finetune" in stage]


def test_prefect_yaml_deploys_the_flow_of_every_stage():
    deployments = {entry["name"]: entry for entry in yaml.safe_load((REPO / "prefect.yaml").read_text())["deployments"]}
    assert set(deployments) - OTHER_DEPLOYMENTS == set(STAGE_NAMES)
    for stage in STAGE_NAMES:
        assert deployments[stage]["entrypoint"] == f"flows/pipeline.py:{stage}"
        assert getattr(pipeline, stage).name == stage
        assert DEPLOYMENTS[stage] == f"{stage}/{stage}"  # flow name / deployment name, for dispatch="deployments"


def test_dvc_record_reads_every_stage_result_and_fine_tunes_read_the_export():
    resolved = stages()
    params = PipelineParams.load(REPO / "params.yaml")
    results = {str(params.stage_dir(stage).relative_to(REPO) / "result.json") for stage in STAGE_NAMES}
    assert results <= set(resolved["record"]["deps"])
    for task in FINETUNE_TASKS:
        assert str(params.pretrain_export().relative_to(REPO)) in resolved[f"finetune@{task}"]["deps"]


def test_the_outline_fine_tunes_exactly_the_tasks_the_results_store_knows():
    """``FINETUNE_TASKS`` stays a literal for DVC; the task names themselves are ``itpn.records.TASKS``."""
    from itpn.records import TASKS

    assert tuple(FINETUNE_TASKS) == TASKS
