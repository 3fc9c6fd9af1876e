"""Prefect runs against a temporary local server with its home in a temporary directory."""
import os
import tempfile
from pathlib import Path

import pytest

from flow_params import write_params

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
