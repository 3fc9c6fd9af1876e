"""The dashboard in a real browser: `streamlit run` served to headless Debian chromium.

Needs /usr/bin/chromium (`bash scripts/install_system_deps.sh`). The screenshot is kept at
``$ITPN_TEST_ARTIFACTS/artifacts/dashboard.png`` (default: the test's tmp dir).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from dashboard.launch import streamlit_command, streamlit_env

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
REPO_ROOT = Path(__file__).resolve().parents[2]
# Per plot: the boxes of every text that names a variant (legend entries, and text drawn at points if any).
LABEL_BOXES = """() => Array.from(document.querySelectorAll('.js-plotly-plot')).map(plot => ({
    title: (plot.querySelector('.gtitle') || {}).textContent || '',
    boxes: Array.from(plot.querySelectorAll('.legend .legendtext, .scatterlayer .textpoint text')).map(node => {
        const box = node.getBoundingClientRect();
        return {text: node.textContent, left: box.left, right: box.right, top: box.top, bottom: box.bottom};
    }),
}))"""


def overlapping(boxes: list[dict]) -> list[tuple[str, str]]:
    """The pairs of label boxes that cover each other (more than a pixel each way)."""
    return [(a["text"], b["text"]) for index, a in enumerate(boxes) for b in boxes[index + 1:]
            if min(a["right"], b["right"]) - max(a["left"], b["left"]) > 1
            and min(a["bottom"], b["bottom"]) - max(a["top"], b["top"]) > 1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_healthy(url: str, server: subprocess.Popen[bytes], log: Path, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"streamlit exited with {server.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.3)
    pytest.fail(f"streamlit was not healthy after {timeout_s:.0f} s:\n{log.read_text()}")


@pytest.fixture
def dashboard_url(filled_store_url: str, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    log = tmp_path / "streamlit.log"
    env = {**os.environ, **streamlit_env(filled_store_url)}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    with log.open("wb") as output:
        server = subprocess.Popen(streamlit_command(port=port), cwd=tmp_path, env=env, stdout=output, stderr=output)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, server, log)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def test_dashboard_renders_in_chromium(dashboard_url: str, tmp_path: Path) -> None:
    if shutil.which(CHROMIUM) is None:
        pytest.fail(f"{CHROMIUM} is missing: run `bash scripts/install_system_deps.sh` (installs Debian's chromium)")
    artifacts = Path(os.environ.get("ITPN_TEST_ARTIFACTS", tmp_path)) / "artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    screenshot = artifacts / "dashboard.png"

    with sync_playwright() as playwright:
        # Playwright gives the browser a fresh temporary profile of its own.
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 2600})
            page.goto(dashboard_url, wait_until="domcontentloaded")
            # Both accuracy charts plus the two training curves, each drawn with its points.
            page.wait_for_function(
                "document.querySelectorAll('.js-plotly-plot .scatterlayer .trace').length >= 8",
                timeout=60_000,
            )
            page.wait_for_selector("[data-testid='stDataFrame']", timeout=30_000)
            titles = page.locator(".js-plotly-plot .gtitle").all_text_contents()
            annotations = page.locator(".js-plotly-plot .annotation-text").all_text_contents()
            markers = page.locator(".js-plotly-plot .scatterlayer .point").count()
            headers = page.locator("h2").all_inner_texts()
            labels = page.evaluate(LABEL_BOXES)
            body = page.inner_text("body")
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()

    assert titles[:2] == ["classification: top1 vs speed-up", "detection: bbox_mAP vs speed-up"]
    assert {"loss", "lr"} <= set(titles)
    assert markers >= 20  # 2 tasks x 2 models x 5 variants
    expected_headers = ["Accuracy vs speed-up", "Benchmarks", "Runs", "Training curves"]
    assert [header.strip() for header in headers[:4]] == expected_headers
    assert annotations.count("baseline 1.0×") == 2  # the 1.0× line on both accuracy charts
    panels = [plot for plot in labels if "vs speed-up" in plot["title"]]
    assert len(panels) == 2
    for panel in panels:  # every variant named once per model, and no two names drawn over each other
        assert len(panel["boxes"]) >= 10 and all(box["right"] > box["left"] for box in panel["boxes"]), panel
        assert overlapping(panel["boxes"]) == [], panel["title"]
    assert "no benchmark at 128×128 for window_gathering" in body  # the missing half, said on the page
    assert "(broken-run)" in body  # the failed run's error expander (tables draw on a canvas)
    assert "(read-only)" in body
    assert screenshot.stat().st_size > 20_000
