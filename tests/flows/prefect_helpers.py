"""Helpers for the tests that run Prefect as a user does: a real server, work pools, deployments, workers."""
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
POOLS = ("itpn-cpu", "itpn-gpu")  # prefect.yaml's work pools
FINAL_STATES = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def stop(*processes: subprocess.Popen, grace_s: float = 10) -> None:
    """Teardown of every process group at once: ``SIGINT`` (a worker's or server's Ctrl-C), ``SIGKILL``
    after ``grace_s``. Called once every flow run has ended, so nothing is cut short; how fast Prefect exits
    is Prefect's business, the tests assert only on what the runs produced."""
    running = [process for process in processes if process.poll() is None]
    for process in running:
        os.killpg(process.pid, signal.SIGINT)
    for process in running:
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)


def log_tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else "(no log)"


def prefect_cli(env: dict[str, str], cwd: Path, *arguments: str) -> str:
    process = subprocess.run([str(BIN / "prefect"), *arguments], env=env, cwd=cwd, capture_output=True, text=True,
                             timeout=180)
    assert process.returncode == 0, f"prefect {' '.join(arguments)} failed:\n{process.stdout}\n{process.stderr}"
    return process.stdout
