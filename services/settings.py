"""Where the project keeps its state, and the environment that keeps its tools offline.

One place resolves the state directory, the results-store URL and the artifact root, so
the flows, the CLI and the dashboard agree on them:

- ``ITPN_STATE_DIR``: the state directory (default ``./state`` under the working directory).
- ``ITPN_STORE_URL``: the results store (default ``sqlite:///<state>/results.db``).
- ``ITPN_ARTIFACTS_URL``: the artifact root, any fsspec URL (default ``<state>/artifacts``).
- ``ITPN_DASHBOARD_URL``: where the dashboard is served, for links (default ``http://127.0.0.1:8501``).
"""

from __future__ import annotations

import os
from pathlib import Path

STATE_DIR_ENV = "ITPN_STATE_DIR"
STORE_URL_ENV = "ITPN_STORE_URL"
ARTIFACTS_URL_ENV = "ITPN_ARTIFACTS_URL"
DASHBOARD_URL_ENV = "ITPN_DASHBOARD_URL"


def state_dir(create: bool = False) -> Path:
    """The project's state directory, absolute; created when ``create`` is true."""
    configured = os.environ.get(STATE_DIR_ENV)
    path = Path(configured).expanduser() if configured else Path.cwd() / "state"
    path = path.resolve()
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


def store_url() -> str:
    """The results-store SQLAlchemy URL: ``ITPN_STORE_URL`` or the SQLite file in the state dir."""
    configured = os.environ.get(STORE_URL_ENV)
    if configured:
        return configured
    return f"sqlite:///{state_dir() / 'results.db'}"


def artifacts_url() -> str:
    """The root under which artifacts are stored: ``ITPN_ARTIFACTS_URL`` or ``<state>/artifacts``."""
    configured = os.environ.get(ARTIFACTS_URL_ENV)
    if configured:
        return configured.rstrip("/")
    return str(state_dir() / "artifacts")


def dashboard_url() -> str:
    """The dashboard's address for links (Prefect artifacts): ``ITPN_DASHBOARD_URL`` or ``itpn dashboard``'s."""
    return os.environ.get(DASHBOARD_URL_ENV, "http://127.0.0.1:8501").rstrip("/")


def prefect_env() -> dict[str, str]:
    """Variables that keep Prefect's home in the state dir and Prefect quiet and local."""
    return {
        "PREFECT_HOME": str(state_dir() / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_UI_ENABLED": "false",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
        "DO_NOT_TRACK": "1",
    }


def dvc_env() -> dict[str, str]:
    """Variables that turn DVC's analytics off."""
    return {"DVC_NO_ANALYTICS": "1"}


def offline_env() -> dict[str, str]:
    """Prefect's and DVC's variables together, for a subprocess or ``os.environ.update``."""
    return {**prefect_env(), **dvc_env()}
