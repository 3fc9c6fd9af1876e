"""The stages shared by Prefect and DVC: results, cache keys, parameter errors."""
import json
from pathlib import Path
import threading
import time

import pytest

from flows.params import PipelineParams
from flows.stages.cache import stage_key
from flows.stages.result import StageResult
from flows.stages.run import run_stage
from flows.stages.run_folder import claim_run_directory

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

    assert stage_key("pretrain", base) != stage_key("pretrain", changed)
    assert stage_key("prepare_data", base) == stage_key("prepare_data", changed)


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
    """The parameters file is checked whole when it is read: the key fails there, before any stage runs."""
    with pytest.raises(Exception, match="bach_size"):
        PipelineParams.load(write_params(tmp_path, pretrain={"bach_size": 4}))


def test_changed_parameters_start_a_fresh_run_directory(tmp_path):
    """A run folder left by other parameters is cleared, not resumed: the changed run trains from step 0
    and ends where a run of the changed parameters in an empty folder ends."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    params = PipelineParams.load(write_params(tmp_path / "a"))
    run_stage("prepare_data", params)
    first = run_stage("pretrain", params)
    assert first.metrics[0]["step"] == 3
    changed = PipelineParams.load(write_params(tmp_path / "a", pretrain={"lr": 3e-3}))
    second = run_stage("pretrain", changed)
    assert second.key != first.key
    alone = PipelineParams.load(write_params(tmp_path / "b", pretrain={"lr": 3e-3}))
    run_stage("prepare_data", alone)
    expected = run_stage("pretrain", alone)
    assert second.metrics[0]["step"] == 3
    assert second.metrics[0]["value"] == expected.metrics[0]["value"] != first.metrics[0]["value"]
    curve = [json.loads(line) for line in open(second.curves[0]["url"])]
    assert [row["step"] for row in curve] == [1, 2, 3]  # trained every step again, no row of the stale run


def test_a_changed_run_that_fails_leaves_no_stale_result_for_the_parameters_before_it(tmp_path, monkeypatch):
    """Parameters A run; parameters B (another key) clear A's run folder and fail; A again must run, not
    take A's old result.json as current while its files are gone."""
    import flows.stages.run as run_module

    def body(params):
        run_dir = params.run_dir("prepare_data")
        if params.data.sets["imagenet"]["seed"] == 1:
            raise RuntimeError("killed")
        (run_dir / "made.txt").write_text("made")
        return StageResult("prepare_data", "", outputs={"made": str(run_dir / "made.txt")})

    monkeypatch.setitem(run_module.STAGES, "prepare_data", body)
    imagenet = {"seed": 0, "num_classes": 3, "train_per_class": 4, "val_per_class": 2, "image_size": 32}
    first = PipelineParams.load(write_params(tmp_path, data={"sets": {"imagenet": imagenet}}))
    made = run_stage("prepare_data", first).outputs["made"]
    changed = PipelineParams.load(write_params(tmp_path, data={"sets": {"imagenet": {**imagenet, "seed": 1}}}))
    with pytest.raises(RuntimeError, match="killed"):
        run_stage("prepare_data", changed)
    again = run_stage("prepare_data", PipelineParams.load(write_params(tmp_path, data={"sets": {"imagenet": imagenet}})))
    assert again.outputs["made"] == made and Path(made).read_text() == "made"  # run again, its file is there


def test_under_torchrun_the_other_ranks_wait_until_rank_0_has_cleared_a_stale_run(tmp_path):
    run_dir = tmp_path / "run"
    claim_run_directory(run_dir, "old-key", launch="launch-1")
    (run_dir / "checkpoint.pt").write_bytes(b"stale")
    seen = []

    def rank_1():
        claim_run_directory(run_dir, "new-key", rank=1, launch="launch-2", wait_s=30)
        seen.append((run_dir / "checkpoint.pt").exists())

    waiting = threading.Thread(target=rank_1)
    waiting.start()
    time.sleep(0.5)
    assert waiting.is_alive() and not seen  # rank 1 has not gone on to read the stale checkpoint
    claim_run_directory(run_dir, "new-key", rank=0, launch="launch-2")
    waiting.join(timeout=10)
    assert seen == [False]
    assert (run_dir / ".stage_key").read_text() == "new-key"


def test_a_rank_waiting_for_a_missing_rank_0_says_so(tmp_path):
    with pytest.raises(TimeoutError, match="rank 1 waited 0 s for rank 0 to claim .*run"):
        claim_run_directory(tmp_path / "run", "key", rank=1, launch="launch-1", wait_s=0.3)


def test_a_forced_stage_resumes_its_run_folder_and_a_fresh_one_starts_over(tmp_path):
    """DVC runs every stage with --force; a run folder of the same key (a killed run's) is resumed."""
    params = PipelineParams.load(write_params(tmp_path))
    run_stage("prepare_data", params)
    first = run_stage("pretrain", params)
    checkpoint = params.stage_dir("pretrain") / "run" / "checkpoint.pt"
    written = checkpoint.stat().st_mtime_ns

    again = run_stage("pretrain", params, force=True)
    assert checkpoint.stat().st_mtime_ns == written  # resumed at its last step: nothing trained again
    assert again.metrics == first.metrics

    run_stage("pretrain", params, force=True, fresh=True)
    assert checkpoint.stat().st_mtime_ns != written


def test_the_world_size_is_in_the_training_stages_keys(tmp_path):
    """experiment.gpus sets the global batch and the scaled learning rate: a training stage run on 8 GPUs
    is not the cached result of a 1-GPU run; data preparation and the benchmark do not depend on it."""
    one = PipelineParams.load(write_params(tmp_path))
    eight = PipelineParams.load(write_params(tmp_path, experiment={"gpus": 8}))
    for stage in ("pretrain", "finetune_classification"):
        assert stage_key(stage, one) != stage_key(stage, eight)
    for stage in ("prepare_data", "benchmark_acceleration"):
        assert stage_key(stage, one) == stage_key(stage, eight)


def test_a_training_stage_on_several_gpus_relaunches_itself_under_torchrun(tmp_path, monkeypatch):
    """`python -m flows.stages pretrain` (what the flows and dvc.yaml run) becomes torchrun with one process
    per GPU; under torchrun (TORCHELASTIC_RUN_ID set) it runs the stage instead of launching again."""
    from flows.stages import cli

    params = write_params(tmp_path, experiment={"gpus": 4})
    launched = []
    monkeypatch.delenv("TORCHELASTIC_RUN_ID", raising=False)
    monkeypatch.setattr(cli.os, "execv", lambda path, command: launched.append(command) or exit(0))
    with pytest.raises(SystemExit):
        cli.main(["pretrain", "--params", str(params), "--force"])
    assert launched[0][1:5] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=4"]
    assert launched[0][-4:] == ["pretrain", "--params", str(params), "--force"]

    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "launch-1")
    ran = []
    monkeypatch.setattr(cli, "run_stage", lambda stage, *args, **kwargs: ran.append(stage) or StageResult(stage, "k"))
    assert cli.main(["pretrain", "--params", str(params)]) == 0
    assert ran == ["pretrain"] and len(launched) == 1


def test_a_stage_records_when_it_really_ran(tiny_params):
    params = PipelineParams.load(tiny_params)
    before = time.time()
    result = run_stage("prepare_data", params)
    from datetime import datetime

    started, finished = datetime.fromisoformat(result.started_at), datetime.fromisoformat(result.finished_at)
    assert before <= started.timestamp() <= finished.timestamp() <= time.time()
    assert abs((finished - started).total_seconds() - result.seconds) < 0.5
