"""Fine-tunes in parallel under the training concurrency limit, and sweeps that share their pre-training
(the flows in-process, against a temporary Prefect server): the recorded start and end of the fine-tune
runs overlap when two slots are free and do not when one is, every result is in the store once, and a
later sweep reuses the pre-training whose key is unchanged."""
from dataclasses import asdict

import pytest

from flows import pipeline
from flows.record import result_rows
from services.store import open_reader

from flow_params import write_params

# Three epochs: the stage's own run lasts about a second (the libraries are imported before it, when the
# parameters are checked, so their import time is not the stage's).
CLASSIFICATION = {"img_size": 32, "window_size": 1, "batch_size": 4, "epochs": 3, "warmup_epochs": 0, "num_workers": 0,
                  "model_ema": False, "mixup": 0.0, "cutmix": 0.0, "progress": False, "eval_variants": []}

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """One folder and store for the module's sweeps: a later sweep reuses the data, pre-training and
    benchmark an earlier one ran (their keys do not change), so it runs only its own fine-tunes."""
    folder = tmp_path_factory.mktemp("fanout")
    url = f"sqlite:///{folder / 'results.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ITPN_STORE_URL", url)
        yield folder, url


def metric_keys(result) -> set[tuple]:
    """The distinct metric rows a stage result holds (the store's key, within one run)."""
    rows = [row if isinstance(row, dict) else asdict(row) for row in result_rows(result)[0]]
    return {(row["task"], row["dataset"], row["split"], row["name"], row.get("step", 0), row.get("model", ""),
             row.get("variant", "")) for row in rows}


def overlapping(runs) -> bool:
    [a, b] = list(runs.itertuples())
    return a.started_at < b.finished_at and b.started_at < a.finished_at


def test_sweep_finetunes_overlap_each_result_once_and_pretraining_is_reused(workspace):
    tmp_path, store_url = workspace
    params = write_params(tmp_path, experiment={"cpu_jobs": 2}, finetune={"classification": CLASSIFICATION})
    results = pipeline.sweep(str(params), name="pair", variants=["baseline", "migration_30"])

    assert set(results) == {"pair/tiny-baseline", "pair/tiny-migration_30"}
    with open_reader(store_url) as reader:
        runs = reader.runs()
        finetunes = runs[runs["flow_name"] == "finetune_classification"]
        assert sorted(finetunes["experiment"]) == ["pair/tiny-baseline", "pair/tiny-migration_30"]
        assert overlapping(finetunes), finetunes[["experiment", "started_at", "finished_at"]]
        # the stage's run, not the moment of recording: as long as the stage measured itself, and not nothing
        measured = {name: point["finetune_classification"].seconds for name, point in results.items()}
        for experiment, duration in zip(finetunes["experiment"], finetunes["duration_s"]):
            assert duration == pytest.approx(measured[experiment], abs=0.05) and duration > 0.3, (duration, measured)
        shared = runs[runs["experiment"] == "pair"]
        assert sorted(shared["flow_name"]) == ["benchmark_acceleration", "prepare_data", "pretrain"]
        assert set(runs["sweep"]) == {"pair"} and set(runs["status"]) == {"completed"}
        assert (runs["attempts"] == 1).all()
        top1 = reader.sweep_comparison("pair")
        metrics = reader.metrics()
    assert sorted(top1["variant"]) == ["baseline", "migration_30"]
    assert top1.loc[top1["variant"] == "baseline", "speedup"].item() == 1.0
    assert top1["speedup"].notna().all()  # from the benchmark the sweep shares
    # every row of every stage once: shared stages once, not once per experiment
    stages = [results["pair/tiny-baseline"][stage] for stage in ("prepare_data", "pretrain", "benchmark_acceleration")]
    stages += [point["finetune_classification"] for point in results.values()]
    assert len(metrics) == sum(len(metric_keys(result)) for result in stages)

    first_pretrain = results["pair/tiny-baseline"]["pretrain"]

    again = pipeline.sweep(str(params), name="later", variants=["window"])
    pretrain = again["later/tiny-window"]["pretrain"]
    assert (pretrain.key, pretrain.started_at) == (first_pretrain.key, first_pretrain.started_at)  # not run again
    with open_reader(store_url) as reader:
        later = reader.runs(experiment="later")
    assert later.loc[later["flow_name"] == "pretrain", "started_at"].item().isoformat() == first_pretrain.started_at


def test_one_cpu_slot_runs_the_finetunes_one_after_the_other(workspace):
    tmp_path, store_url = workspace
    params = write_params(tmp_path, experiment={"cpu_jobs": 1}, finetune={"classification": CLASSIFICATION})
    pipeline.sweep(str(params), name="single", variants=["baseline", "migration_30"])
    with open_reader(store_url) as reader:
        runs = reader.runs()
    finetunes = runs[(runs["flow_name"] == "finetune_classification") & (runs["sweep"] == "single")]
    assert len(finetunes) == 2 and not overlapping(finetunes)
