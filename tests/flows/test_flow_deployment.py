"""The deployments in ``prefect.yaml`` as a user runs them: a real Prefect server on 127.0.0.1, the
process work pool, ``prefect deploy --all``, a worker; a run of the nightly benchmark deployment
completes and its rows land in the results store."""
import subprocess
from pathlib import Path

import httpx
import pytest

from services.store import open_reader

from flow_params import TINY_PARAMS, write_params
from prefect_helpers import BIN, FINAL_STATES, log_tail, stop

RUN_TIMEOUT_S = 300

pytestmark = pytest.mark.slow


def deployment(api: str, flow_name: str, deployment_name: str) -> dict:
    response = httpx.get(f"{api}/deployments/name/{flow_name}/{deployment_name}", timeout=30)
    assert response.status_code == 200, f"deployment {flow_name}/{deployment_name} not found: {response.text}"
    return response.json()


def run_deployment(api: str, deployment: dict, parameters: dict, env: dict[str, str], tmp_path: Path) -> dict:
    """Schedule a run of the deployment now (what the nightly schedule does at 02:00), then let a worker
    started with ``--run-once`` take it: the worker polls once, submits the run, waits for it to end
    (``--limit 1`` makes Prefect wait on its run limiter) and exits by itself. Returns the flow run."""
    response = httpx.post(f"{api}/deployments/{deployment['id']}/create_flow_run", json={"parameters": parameters},
                          timeout=30)
    assert response.status_code == 201, response.text
    run = response.json()
    assert run["state"]["type"] == "SCHEDULED"
    log = tmp_path / "worker.log"
    with log.open("w") as output:
        worker = subprocess.Popen([str(BIN / "prefect"), "worker", "start", "--pool", deployment["work_pool_name"], "--run-once",
                                   "--limit", "1"], env=env, cwd=tmp_path, stdout=output, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    try:
        worker.wait(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pass  # the run's state below says what happened
    finally:
        stop(worker)
    run = httpx.get(f"{api}/flow_runs/{run['id']}", timeout=30).json()
    assert run["state"]["type"] in FINAL_STATES, (f"flow run still {run['state']['type']} after {RUN_TIMEOUT_S} s; "
                                                  f"worker log:\n{log_tail(log)}")
    assert run["state"]["type"] == "COMPLETED", (f"flow run ended {run['state']['type']}: {run['state']['message']}"
                                                 f"\nworker log:\n{log_tail(log)}")
    return run


def test_nightly_benchmark_deployment_runs_on_a_worker_and_records_rows(deployed, prefect_env, tmp_path):
    nightly = deployment(deployed, "benchmark_acceleration", "benchmark-nightly")
    crons = [(entry["schedule"].get("cron"), entry["schedule"].get("timezone")) for entry in nightly["schedules"]]
    assert crons == [("0 2 * * *", "UTC")]
    assert nightly["work_pool_name"] == "itpn-cpu"
    params_file = write_params(tmp_path)

    run = run_deployment(deployed, nightly, {"params_file": str(params_file)}, prefect_env, tmp_path)

    with open_reader(prefect_env["ITPN_STORE_URL"]) as reader:
        rows = reader.benchmarks(experiment="test")
        runs = reader.runs(experiment="test")
    assert list(runs["flow_name"]) == ["benchmark_acceleration"]
    assert list(runs["flow_run_id"]) == [run["id"]]
    model, bench = TINY_PARAMS["experiment"]["model"], TINY_PARAMS["benchmark"]
    expected = {(model, variant, resolution)
                for variant in {"baseline", *bench["variants"]} for resolution in bench["resolutions"]}
    assert set(zip(rows["model"], rows["variant"], rows["resolution"])) == expected
    assert (rows["images_per_s"] > 0).all()
    assert (tmp_path / "outputs" / "benchmark_acceleration" / "result.json").exists()
