"""The Prefect flows against a real (temporary) Prefect server: results land in the store once,
re-runs add no duplicates, a failed stage leaves a failed run with its error."""
import pytest

from flows import pipeline
from services.store import open_reader

from flow_params import write_params

pytestmark = pytest.mark.usefixtures("prefect_harness")


def test_pretrain_flow_records_curve_and_export_once(tiny_params, store_url):
    pipeline.prepare_data(str(tiny_params))
    result = pipeline.pretrain(str(tiny_params))
    assert result.outputs["export"].endswith("backbone.safetensors")
    with open_reader(store_url) as reader:
        runs = reader.runs(experiment="test")
        curve_rows = len(reader.metrics(experiment="test"))
        artifacts = len(reader.artifacts())
    assert set(runs["flow_name"]) == {"prepare_data", "pretrain"}
    assert set(runs["status"]) == {"completed"}
    assert curve_rows >= 3  # loss (and more) for each of the 3 steps
    from prefect.artifacts import Artifact

    from flows.report import artifact_key

    published = Artifact.get(artifact_key("test", "pretrain"))  # the stage's results in the Prefect UI
    assert published.type == "markdown" and "| pretrain | imagenet | train | loss |" in published.data
    assert f"key `{result.key}`" in published.data and "[test](http://127.0.0.1:8501/?experiment=test)" in published.data
    assert "curves.csv](file://" in published.data
    pipeline.pretrain(str(tiny_params))  # cached stage, recorded again: same run, same rows
    with open_reader(store_url) as reader:
        assert len(reader.runs(experiment="test")) == len(runs)
        assert len(reader.metrics(experiment="test")) == curve_rows
        assert len(reader.artifacts()) == artifacts


def test_failed_stage_is_recorded_with_its_error(tmp_path, store_url, monkeypatch):
    """A stage whose process fails leaves a failed run with the process's error. (A parameters file with a
    bad key fails before any stage runs, so the failure here is the stage process's own.)"""
    import subprocess

    from flows import tasks

    with pytest.raises(Exception, match="bach_size"):
        pipeline.pretrain(str(write_params(tmp_path, pretrain={"bach_size": 4})))
    params = write_params(tmp_path)
    pipeline.prepare_data(str(params))
    monkeypatch.setattr(tasks.subprocess, "run", lambda command, **kwargs: subprocess.CompletedProcess(
        command, 1, stdout="", stderr="ValueError: unknown key(s) ['bach_size'] in pretrain"))
    with pytest.raises(Exception, match="bach_size"):
        pipeline.pretrain(str(params))
    with open_reader(store_url) as reader:
        runs = reader.runs(experiment="test")
    failed = runs[runs["flow_name"] == "pretrain"]
    assert list(failed["status"]) == ["failed"]
    assert "bach_size" in failed["error"].iloc[0]


def test_a_failed_attempt_that_later_succeeds_is_one_completed_run(tiny_params, store_url, monkeypatch):
    """A stage killed once (exit 137), then run again with the same inputs: one run, completed, whose
    history holds the failed attempt and the successful one, each with the times its process ran."""
    import subprocess

    from flows import tasks

    pipeline.prepare_data(str(tiny_params))
    real_run = subprocess.run
    calls = []

    def killed_once(command, **kwargs):
        calls.append(command)
        if len(calls) == 1:
            return subprocess.CompletedProcess(command, 137, stdout="", stderr="Killed")
        return real_run(command, **kwargs)

    monkeypatch.setattr(tasks.subprocess, "run", killed_once)
    with pytest.raises(Exception, match="exit 137"):
        pipeline.pretrain(str(tiny_params))
    result = pipeline.pretrain(str(tiny_params))
    with open_reader(store_url) as reader:
        runs = reader.runs(experiment="test")
        pretrain = runs[runs["flow_name"] == "pretrain"]
        history = reader.attempts(run_id=int(pretrain["run_id"].item()))
    assert list(pretrain["status"]) == ["completed"] and pretrain["run_key"].item().endswith(result.key)
    assert list(history["status"]) == ["failed", "completed"]
    assert "exit 137" in history["error"].iloc[0]
    assert pretrain["started_at"].item().isoformat() == result.started_at


def test_slots_left_taken_by_a_killed_run_are_freed_for_the_next_run():
    """A demo killed mid-stage leaves its training slot taken in Prefect's database; the next `itpn run`
    (on the temporary server) frees it instead of waiting forever."""
    from prefect.concurrency.sync import concurrency

    from flows.resources import CPU_LIMIT, ensure_limit, reset_slots

    ensure_limit(CPU_LIMIT, 1, force=True)
    with concurrency(CPU_LIMIT, occupy=1, strict=True):  # held; stands for the killed run's slot
        with pytest.raises(TimeoutError):
            with concurrency(CPU_LIMIT, occupy=1, strict=True, timeout_seconds=3):
                pass
        assert reset_slots() == [CPU_LIMIT]
        with concurrency(CPU_LIMIT, occupy=1, strict=True, timeout_seconds=30):
            pass  # the slot is free again
