"""The stages shared by Prefect and DVC: results, cache keys, parameter errors."""
import json

import pytest

from flows.params import PipelineParams
from flows.stages import StageResult, run_stage, stage_key

from flow_params import write_params


def test_prepare_data_writes_result_metrics_and_reuses_it(tiny_params):
    params = PipelineParams.load(tiny_params)
    first = run_stage("prepare_data", params)
    result_file = params.stage_dir("prepare_data") / "result.json"
    assert StageResult.read(result_file).key == first.key
    assert json.loads((result_file.parent / "metrics.json").read_text()) == {}
    manifest = json.loads((params.stage_dir("prepare_data").parent / "data" / "imagenet" / "manifest.json").read_text())
    assert manifest["counts"]
    mtime = result_file.stat().st_mtime_ns
    again = run_stage("prepare_data", params)
    assert again.key == first.key and result_file.stat().st_mtime_ns == mtime  # cached, not rerun


def test_changing_a_parameter_changes_the_key(tmp_path):
    base = PipelineParams.load(write_params(tmp_path))
    changed = PipelineParams.load(write_params(tmp_path, pretrain={"total_steps": 4}))
    from flows.stages import stage_inputs

    assert stage_key("pretrain", stage_inputs("pretrain", base)) != stage_key("pretrain", stage_inputs("pretrain", changed))
    assert stage_key("prepare_data", stage_inputs("prepare_data", base)) == \
        stage_key("prepare_data", stage_inputs("prepare_data", changed))


def test_relative_paths_follow_the_params_file(tiny_params):
    params = PipelineParams.load(tiny_params)
    assert params.experiment.output_dir == str(tiny_params.parent / "outputs")


def test_unknown_section_key_is_named(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("experiment: {modle: fast_itpn_tiny_patch16_224}\n")
    with pytest.raises(ValueError, match="experiment.modle"):
        PipelineParams.load(path)


def test_unknown_stage_lists_the_stages(tiny_params):
    with pytest.raises(ValueError, match="unknown stage 'train'.*prepare_data"):
        run_stage("train", PipelineParams.load(tiny_params))


def test_unknown_pretrain_key_fails_with_the_key(tmp_path):
    params = PipelineParams.load(write_params(tmp_path, pretrain={"bach_size": 4}))
    run_stage("prepare_data", params)
    with pytest.raises(Exception, match="bach_size"):
        run_stage("pretrain", params)


def test_changed_parameters_start_a_fresh_run_directory(tmp_path):
    params = PipelineParams.load(write_params(tmp_path))
    run_stage("prepare_data", params)
    first = run_stage("pretrain", params)
    assert first.metrics[0]["step"] == 3
    changed = PipelineParams.load(write_params(tmp_path, pretrain={"lr": 3e-3}))
    second = run_stage("pretrain", changed)
    assert second.key != first.key
    assert second.metrics[0]["step"] == 3  # trained again, did not resume the finished run
    assert second.metrics[0]["value"] == second.metrics[0]["value"]  # finite, not NaN
