"""Prefect for the flow tests: in-process flows against one temporary server for the whole session
(``prefect_harness``), and for the deployment tests a real ``prefect server`` on 127.0.0.1 with
``prefect.yaml``'s pools and deployments, started and deployed once (``deployed``)."""
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from flow_params import write_params
from prefect_helpers import BIN, POOLS, REPO, free_port, log_tail, prefect_cli, stop

_HOME = tempfile.mkdtemp(prefix="itpn-prefect-test-")
for key, value in {
    "PREFECT_HOME": _HOME,
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_UI_ENABLED": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    "DO_NOT_TRACK": "1",
    "DVC_NO_ANALYTICS": "1",
}.items():
    os.environ.setdefault(key, value)


@pytest.fixture
def tiny_params(tmp_path) -> Path:
    return write_params(tmp_path)


@pytest.fixture
def store_url(tmp_path, monkeypatch) -> str:
    url = f"sqlite:///{tmp_path / 'results.db'}"
    monkeypatch.setenv("ITPN_STORE_URL", url)
    return url


@pytest.fixture(scope="session")
def prefect_harness():
    """One temporary Prefect server for every in-process flow test of the session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=300):
        yield


@pytest.fixture(scope="session")
def server_env(tmp_path_factory) -> dict[str, str]:
    """A private Prefect home, no analytics or UI, every client pointed at one server on 127.0.0.1."""
    home = tmp_path_factory.mktemp("prefect-server")
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_")}
    env.update({
        "PREFECT_HOME": str(home / "prefect-home"),
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
    })
    return env


@pytest.fixture
def prefect_env(server_env, tmp_path) -> dict[str, str]:
    """The server's environment with this test's own results store and state folder (what its workers run with)."""
    return {**server_env, "ITPN_STORE_URL": f"sqlite:///{tmp_path / 'results.db'}",
            "ITPN_STATE_DIR": str(tmp_path / "state")}


@pytest.fixture(scope="session")
def prefect_server(server_env, tmp_path_factory):
    """``prefect server start`` until healthy; stopped at the session's end."""
    folder = tmp_path_factory.mktemp("prefect-server-log")
    log = folder / "server.log"
    api = server_env["PREFECT_API_URL"]
    with log.open("w") as output:
        process = subprocess.Popen([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port",
                                    server_env["PREFECT_SERVER_API_PORT"]], env=server_env, cwd=folder,
                                   stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
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


@pytest.fixture(scope="session")
def deployed(prefect_server, server_env, tmp_path_factory) -> str:
    """The work pools and every deployment of the repository's ``prefect.yaml``, deployed once from a working
    directory outside the checkout (the deployments' pull step points runs back at ``ITPN_REPO_DIR``)."""
    project = tmp_path_factory.mktemp("project")
    shutil.copy(REPO / "prefect.yaml", project / "prefect.yaml")
    (project / "flows").symlink_to(REPO / "flows", target_is_directory=True)
    for pool in POOLS:
        prefect_cli(server_env, project, "work-pool", "create", pool, "--type", "process")
    prefect_cli(server_env, project, "--no-prompt", "deploy", "--all")
    return prefect_server
