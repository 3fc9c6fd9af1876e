"""The deployments in ``prefect.yaml`` as a user runs them: a real Prefect server on 127.0.0.1, the
process work pool, ``prefect deploy --all``, a worker; a run of the nightly benchmark deployment
completes and its rows land in the results store."""
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from services.store import open_reader

from flow_params import TINY_PARAMS, write_params

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
POOLS = ("itpn-cpu", "itpn-gpu")  # prefect.yaml's work pools
RUN_TIMEOUT_S = 300
FINAL_STATES = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def stop(process: subprocess.Popen) -> None:
    """Teardown: SIGTERM its process group, SIGKILL after 30 s. How fast a process exits is Prefect's
    business, not the product's: the tests assert on what the runs produced, never on this."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


def log_tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else "(no log)"


@pytest.fixture
def prefect_env(tmp_path) -> dict[str, str]:
    """A private Prefect home, no analytics or UI, every client pointed at a server on 127.0.0.1."""
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_")}
    env.update({
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_SERVER_API_HOST": "127.0.0.1",
        "PREFECT_SERVER_API_PORT": str(port),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_UI_ENABLED": "false",
        "PREFECT_WORKER_QUERY_SECONDS": "2",
        "DO_NOT_TRACK": "1",
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(REPO),
        "ITPN_REPO_DIR": str(REPO),
        "ITPN_STORE_URL": f"sqlite:///{tmp_path / 'results.db'}",
    })
    return env


@pytest.fixture
def prefect_server(prefect_env, tmp_path):
    """``prefect server start`` until healthy; stopped at teardown, after the run-once worker has exited."""
    log = tmp_path / "server.log"
    api = prefect_env["PREFECT_API_URL"]
    port = prefect_env["PREFECT_SERVER_API_PORT"]
    with log.open("w") as output:
        process = subprocess.Popen([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", port],
                                   env=prefect_env, cwd=tmp_path, stdout=output, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                pytest.fail(f"prefect server exited with {process.returncode}:\n{log_tail(log)}")
            try:
                if httpx.get(f"{api}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"prefect server was not healthy within 120 s:\n{log_tail(log)}")
            time.sleep(1)
        yield api
    finally:
        stop(process)


def prefect_cli(env: dict[str, str], cwd: Path, *arguments: str) -> str:
    process = subprocess.run([str(BIN / "prefect"), *arguments], env=env, cwd=cwd, capture_output=True, text=True,
                             timeout=180)
    assert process.returncode == 0, f"prefect {' '.join(arguments)} failed:\n{process.stdout}\n{process.stderr}"
    return process.stdout


@pytest.fixture
def deployed(prefect_server, prefect_env, tmp_path) -> str:
    """The work pool and every deployment of the repository's ``prefect.yaml``, deployed from a working
    directory outside the checkout (the deployments' pull step points runs back at ``ITPN_REPO_DIR``)."""
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(REPO / "prefect.yaml", project / "prefect.yaml")
    (project / "flows").symlink_to(REPO / "flows", target_is_directory=True)
    for pool in POOLS:
        prefect_cli(prefect_env, project, "work-pool", "create", pool, "--type", "process")
    prefect_cli(prefect_env, project, "--no-prompt", "deploy", "--all")
    return prefect_server


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
