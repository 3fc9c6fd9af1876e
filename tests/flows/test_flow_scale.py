"""The pipeline at the paper's scale, checked without a GPU: the real-data parameters file is valid for
every stage, and with several GPUs every training stage is launched by torchrun and joins its group."""
from pathlib import Path

import pytest

from flows.outline import FINETUNE_TASKS
from flows.params import OpenMMLabSection, PipelineParams
from flows.stages import bodies
from flows.stages.cli import stage_command
from itpn.finetune import ClassificationConfig
from itpn.models.acceleration import get_variant
from itpn.pretrain import PretrainConfig

from flow_params import write_params

REPO = Path(__file__).resolve().parents[2]
PAPER_SCALE = REPO / "configs" / "pipeline" / "fast-itpn-base_8gpu.yaml"


def test_the_paper_scale_parameters_are_valid_for_every_stage():
    params = PipelineParams.load(PAPER_SCALE)
    assert params.data.root == str(REPO / "data") and not params.data.generate
    assert set(params.data.sets) == {"imagenet", "coco", "ade20k", "dota"}
    assert set(params.finetune) == set(FINETUNE_TASKS)
    common = {"model": params.experiment.model, "device": params.experiment.device}

    pretrain = PretrainConfig.from_dict({**common, **params.pretrain, "data_url": params.data_url("imagenet")})
    assert pretrain.batch_size * pretrain.accum_steps * params.experiment.gpus == 4096  # the paper's batch

    classification = ClassificationConfig.from_dict({**common, **params.finetune["classification"],
                                                     "data_url": params.data_url("imagenet")})
    assert classification.batch_size * classification.accum_steps * params.experiment.gpus == 1024
    for task in ("detection", "segmentation", "rotated"):
        assert (REPO / params.finetune[task]["config"]).is_file(), task
        assert not set(params.finetune[task]) - set(OpenMMLabSection.model_fields)
    for section in params.finetune.values():
        for variant in section.get("eval_variants", []):
            get_variant(variant)


@pytest.mark.parametrize("stage", ["pretrain", "finetune_classification", "finetune_detection",
                                   "finetune_segmentation", "finetune_rotated"])
def test_training_stages_run_under_torchrun_when_several_gpus_are_asked_for(stage):
    command = stage_command(stage, "params.yaml", gpus=8)
    assert command[1:5] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=8"]
    assert command[-3:] == [stage, "--params", "params.yaml"]
    assert "torch.distributed.run" not in stage_command(stage, "params.yaml", gpus=1)


@pytest.mark.openmmlab
def test_an_openmmlab_stage_under_torchrun_uses_mmengines_pytorch_launcher(tmp_path, monkeypatch):
    import itpn.mmlab

    params = PipelineParams.load(write_params(tmp_path, finetune={"detection": {
        "config": "configs/detection/demo_mask-rcnn_fast-itpn-tiny_generated-coco.py"}}))
    export = params.stage_dir("pretrain") / "run" / "backbone.safetensors"
    export.parent.mkdir(parents=True)
    export.write_bytes(b"")
    calls = []
    monkeypatch.setattr(itpn.mmlab, "run_detection", lambda config, **kwargs: calls.append(kwargs) or [])
    monkeypatch.setenv("WORLD_SIZE", "8")
    bodies.finetune_openmmlab("detection")(params)
    assert calls[0]["cfg_options"]["launcher"] == "pytorch"

    monkeypatch.setenv("WORLD_SIZE", "1")
    bodies.finetune_openmmlab("detection")(params)
    assert "launcher" not in calls[1]["cfg_options"]
