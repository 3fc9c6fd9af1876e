"""A sweep as a lab runs it: a real Prefect server on 127.0.0.1, the CPU and GPU work pools of
``prefect.yaml`` each served by a process worker, the ``sweep`` deployment over two acceleration variants
dispatching every stage to its own deployment. Data preparation runs on the CPU pool, training on the
GPU pool; the two fine-tunes overlap in time (from their recorded start and end) and every result is in
the store once. Workers are stopped only after every flow run has ended, so none is cut short."""
import subprocess
import time

import httpx
import pytest

from services.store import open_reader

from flow_params import TINY_PARAMS, write_params
from prefect_helpers import BIN, FINAL_STATES, POOLS, log_tail, stop

TIMEOUT_S = 900
# A run a worker has taken and not finished. Not SCHEDULED: the nightly deployment's cron keeps future runs
# scheduled on the server, which never end while the test runs (waiting on them cost 120 s of teardown).
ACTIVE_STATES = {"PENDING", "RUNNING", "CANCELLING"}
# Two epochs of 48 images: a short fine-tune. Whether the two fine-tunes ran at once is read from the flow
# runs' own start and end on the server (each flow-run process imports Prefect, runs the stage and records it),
# not from the stage's training time alone: two worker-started processes can begin several seconds apart
# under load (8 s seen in CI), longer than a short training, while each flow run lasts well over that.
CLASSIFICATION = {"img_size": 32, "batch_size": 4, "epochs": 2, "warmup_epochs": 0, "num_workers": 0,
                  "model_ema": False, "mixup": 0.0, "cutmix": 0.0, "progress": False, "eval_variants": []}
IMAGENET = {**TINY_PARAMS["data"]["sets"]["imagenet"], "train_per_class": 16}

pytestmark = pytest.mark.slow


def flow_runs(api: str, since: str = "") -> list[dict]:
    """Every flow run on the server created at or after ``since`` (an ISO time; the server is shared by the
    session's deployment tests)."""
    response = httpx.post(f"{api}/flow_runs/filter", json={"limit": 200}, timeout=30)
    assert response.status_code == 200, response.text
    return [run for run in response.json() if run["created"] >= since]


@pytest.fixture
def workers(deployed, prefect_env, tmp_path):
    """A process worker per pool of prefect.yaml (deployed once for the session). Teardown waits for every
    flow run a worker took to end, then stops both workers at once."""
    processes, logs = [], {}
    for pool in POOLS:
        logs[pool] = tmp_path / f"worker-{pool}.log"
        with logs[pool].open("w") as output:
            processes.append(subprocess.Popen([str(BIN / "prefect"), "worker", "start", "--pool", pool],
                                              env=prefect_env, cwd=tmp_path, stdout=output,
                                              stderr=subprocess.STDOUT, start_new_session=True))
    try:
        yield prefect_env, logs
    finally:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and any(run["state_type"] in ACTIVE_STATES for run in flow_runs(deployed)):
            time.sleep(2)
        stop(*processes)


def test_a_sweep_of_two_variants_on_two_workers(workers, deployed, tmp_path):
    env, logs = workers
    api = deployed
    params = write_params(tmp_path, experiment={"cpu_jobs": 2}, finetune={"classification": CLASSIFICATION},
                          data={"sets": {"imagenet": IMAGENET}})
    sweep = httpx.get(f"{api}/deployments/name/sweep/sweep", timeout=30).json()
    response = httpx.post(f"{api}/deployments/{sweep['id']}/create_flow_run", timeout=30, json={"parameters": {
        "params_file": str(params), "name": "pair", "variants": ["baseline", "migration_30"],
        "dispatch": "deployments"}})
    assert response.status_code == 201, response.text
    run = response.json()
    deadline = time.monotonic() + TIMEOUT_S
    while run["state"]["type"] not in FINAL_STATES:
        assert time.monotonic() < deadline, "sweep still running; workers:\n" + "\n".join(
            f"{pool}:\n{log_tail(log)}" for pool, log in logs.items())
        time.sleep(3)
        run = httpx.get(f"{api}/flow_runs/{run['id']}", timeout=30).json()
    assert run["state"]["type"] == "COMPLETED", (run["state"]["message"], {pool: log_tail(log)
                                                                          for pool, log in logs.items()})

    by_flow: dict[str, list[dict]] = {}
    names = {flow["id"]: flow["name"] for flow in httpx.post(f"{api}/flows/filter", json={}, timeout=30).json()}
    for flow_run in flow_runs(api, since=run["created"]):
        by_flow.setdefault(names[flow_run["flow_id"]], []).append(flow_run)
    assert {r["work_pool_name"] for r in by_flow["prepare_data"]} == {"itpn-cpu"}
    assert {r["work_pool_name"] for r in by_flow["pretrain"] + by_flow["finetune_classification"]} == {"itpn-gpu"}
    assert len(by_flow["pretrain"]) == 1 and len(by_flow["finetune_classification"]) == 2

    with open_reader(env["ITPN_STORE_URL"]) as reader:
        runs = reader.runs()
        metrics = reader.metrics()
    assert set(runs["status"]) == {"completed"} and (runs["attempts"] == 1).all()
    assert not runs.duplicated(["experiment", "flow_name"]).any()  # every result once
    finetunes = runs[runs["flow_name"] == "finetune_classification"].sort_values("experiment")
    assert list(finetunes["experiment"]) == ["pair/tiny-baseline", "pair/tiny-migration_30"]
    [a, b] = by_flow["finetune_classification"]
    assert a["start_time"] < b["end_time"] and b["start_time"] < a["end_time"], (
        "the two fine-tune flow runs did not overlap on the GPU pool's worker",
        [(r["start_time"], r["end_time"]) for r in (a, b)])
    assert sorted(runs.loc[runs["experiment"] == "pair", "flow_name"]) == ["benchmark_acceleration", "prepare_data",
                                                                          "pretrain"]
    assert set(finetunes["flow_run_id"]) == {r["id"] for r in by_flow["finetune_classification"]}
    assert not metrics.duplicated(["run_id", "task", "dataset", "split", "name", "step", "model", "variant"]).any()
