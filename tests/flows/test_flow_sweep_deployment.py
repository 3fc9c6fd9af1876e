"""A sweep as a lab runs it: a real Prefect server on 127.0.0.1, the CPU and GPU work pools of
``prefect.yaml`` each served by a process worker, the ``sweep`` deployment over two acceleration variants
dispatching every stage to its own deployment. Data preparation runs on the CPU pool, training on the
GPU pool; the two fine-tunes overlap in time (from their recorded start and end) and every result is in
the store once. Workers are stopped only after every flow run has ended, so none is cut short."""
import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from services.store import open_reader

from flow_params import write_params
from test_flow_deployment import BIN, REPO, log_tail, prefect_cli, prefect_env, prefect_server  # noqa: F401

POOLS = ("itpn-cpu", "itpn-gpu")
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
TIMEOUT_S = 900
# 150 epochs of 12 images: about 17 s of training alone, longer than two flow-run processes' start can
# differ under load (8 s seen in CI with 1 epoch, 3 s long: they ran one after the other).
CLASSIFICATION = {"img_size": 32, "batch_size": 4, "epochs": 150, "warmup_epochs": 0, "num_workers": 0,
                  "model_ema": False, "mixup": 0.0, "cutmix": 0.0, "progress": False, "eval_variants": []}

pytestmark = pytest.mark.slow


def flow_runs(api: str) -> list[dict]:
    response = httpx.post(f"{api}/flow_runs/filter", json={"limit": 200}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def stop_worker(process: subprocess.Popen) -> None:
    """SIGINT (a worker's Ctrl-C: it stops polling and exits), then SIGTERM, then SIGKILL; its process
    group each time. Called once every flow run has ended, so nothing it runs is cut short."""
    for sig, wait_s in ((signal.SIGINT, 20), (signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        if process.poll() is not None:
            return
        os.killpg(process.pid, sig)
        try:
            process.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture
def workers(prefect_server, prefect_env, tmp_path):
    """Both pools, every deployment of prefect.yaml (deployed from outside the checkout), a process worker
    per pool. Teardown waits for every flow run to end before stopping the workers, then the server."""
    env = {**prefect_env, "ITPN_STATE_DIR": str(tmp_path / "state")}
    project = tmp_path / "project"
    project.mkdir()
    (project / "prefect.yaml").write_text((REPO / "prefect.yaml").read_text())
    (project / "flows").symlink_to(REPO / "flows", target_is_directory=True)
    for pool in POOLS:
        prefect_cli(env, project, "work-pool", "create", pool, "--type", "process")
    prefect_cli(env, project, "--no-prompt", "deploy", "--all")
    processes, logs = [], {}
    for pool in POOLS:
        logs[pool] = tmp_path / f"worker-{pool}.log"
        with logs[pool].open("w") as output:
            processes.append(subprocess.Popen([str(BIN / "prefect"), "worker", "start", "--pool", pool], env=env,
                                              cwd=tmp_path, stdout=output, stderr=subprocess.STDOUT,
                                              start_new_session=True))
    try:
        yield env, logs
    finally:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and any(run["state_type"] not in FINAL for run in flow_runs(prefect_server)):
            time.sleep(2)
        for process in processes:
            stop_worker(process)


def test_a_sweep_of_two_variants_on_two_workers(workers, prefect_server, tmp_path):
    env, logs = workers
    api = prefect_server
    params = write_params(tmp_path, experiment={"cpu_jobs": 2}, finetune={"classification": CLASSIFICATION})
    sweep = httpx.get(f"{api}/deployments/name/sweep/sweep", timeout=30).json()
    response = httpx.post(f"{api}/deployments/{sweep['id']}/create_flow_run", timeout=30, json={"parameters": {
        "params_file": str(params), "name": "pair", "variants": ["baseline", "migration_30"],
        "dispatch": "deployments"}})
    assert response.status_code == 201, response.text
    run = response.json()
    deadline = time.monotonic() + TIMEOUT_S
    while run["state"]["type"] not in FINAL:
        assert time.monotonic() < deadline, "sweep still running; workers:\n" + "\n".join(
            f"{pool}:\n{log_tail(log)}" for pool, log in logs.items())
        time.sleep(3)
        run = httpx.get(f"{api}/flow_runs/{run['id']}", timeout=30).json()
    assert run["state"]["type"] == "COMPLETED", (run["state"]["message"], {pool: log_tail(log)
                                                                          for pool, log in logs.items()})

    by_flow: dict[str, list[dict]] = {}
    names = {flow["id"]: flow["name"] for flow in httpx.post(f"{api}/flows/filter", json={}, timeout=30).json()}
    for flow_run in flow_runs(api):
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
    [a, b] = list(finetunes.itertuples())
    assert a.started_at < b.finished_at and b.started_at < a.finished_at, "the fine-tunes did not overlap"
    assert sorted(runs.loc[runs["experiment"] == "pair", "flow_name"]) == ["benchmark_acceleration", "prepare_data",
                                                                          "pretrain"]
    assert set(finetunes["flow_run_id"]) == {r["id"] for r in by_flow["finetune_classification"]}
    assert not metrics.duplicated(["run_id", "task", "dataset", "split", "name", "step", "model", "variant"]).any()
