"""The command line and environment that start the dashboard (used by ``itpn dashboard``)."""

from __future__ import annotations

import sys
from pathlib import Path

from services import settings

APP_PATH = Path(__file__).resolve().parent / "app.py"


def streamlit_command(port: int = 8501, address: str = "127.0.0.1", headless: bool = True) -> list[str]:
    """``streamlit run dashboard/app.py`` with this interpreter, bound to ``address:port``, no usage stats."""
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(APP_PATH),
        "--server.headless",
        "true" if headless else "false",
        "--server.address",
        address,
        "--server.port",
        str(port),
        "--browser.gatherUsageStats",
        "false",
        "--client.toolbarMode",
        "viewer",
    ]


def streamlit_env(store_url: str | None = None) -> dict[str, str]:
    """Variables to add to the environment of ``streamlit_command()``: the store to show, no telemetry."""
    return {
        settings.STORE_URL_ENV: store_url or settings.store_url(),
        "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false",
    }
