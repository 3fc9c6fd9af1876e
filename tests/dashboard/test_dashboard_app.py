"""The dashboard script under Streamlit's AppTest: charts exist and the filters change them."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from services.store import upgrade

TINY = "fast_itpn_tiny_patch16_224"


def chart_titles(at: AppTest) -> list[str]:
    return [json.loads(chart.proto.spec)["layout"]["title"]["text"] for chart in at.get("plotly_chart")]


def values(array: list[float] | dict[str, str]) -> list[float]:
    """A plotly data array: a list, or the typed-array form plotly writes for numpy data."""
    if isinstance(array, dict):
        return np.frombuffer(base64.b64decode(array["bdata"]), dtype=np.dtype(array["dtype"])).tolist()
    return list(array)


def table(at: AppTest, column: str) -> pd.DataFrame:
    """The table that has ``column``: images_per_s for benchmarks, run_key for runs."""
    return next(frame.value for frame in at.dataframe if column in frame.value.columns)


def started(app_path: Path, url: str, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    monkeypatch.setenv("ITPN_STORE_URL", url)
    at = AppTest.from_file(str(app_path), default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    return at


def test_charts_and_tables_render(app_path: Path, filled_store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    at = started(app_path, filled_store_url, monkeypatch)
    assert [header.value for header in at.header] == ["Accuracy vs speed-up", "Benchmarks", "Runs", "Training curves"]
    titles = chart_titles(at)
    assert titles[:2] == ["classification: top1 vs speed-up", "detection: bbox_mAP vs speed-up"]
    # the newest run (a benchmark) has no curves: the section opens on the newest run that has them
    assert titles[2:] == ["loss", "lr"]
    assert "pretrain-base" in at.selectbox(key="curve-run").format_func(at.selectbox(key="curve-run").value)

    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    points = [trace for trace in spec["data"] if trace["mode"] == "markers"]
    fronts = [trace for trace in spec["data"] if trace["mode"] == "lines"]
    assert len(points) == 10 and len(fronts) == 2  # a trace per (model, variant), a front per model
    assert all("text" not in trace for trace in points)  # labels live in the legend and the hover, never on a point
    base = {trace["customdata"][0][0]: values(trace["x"])[0] for trace in points
            if trace["customdata"][0][1] == "fast_itpn_base_patch16_224"}
    assert base == pytest.approx({"baseline": 1.0, "migration_10": 1.15, "migration_20": 1.2,
                                  "window_gathering_hrpe": 1.7, "window": 1.9})
    assert {trace["name"] for trace in points} >= {"window · base", "window · tiny"}
    window = next(trace for trace in points if trace["name"] == "window · base")
    assert window["customdata"][0][2] == "224×224 px, grid 14×14, 2×2 windows of 7×7"  # its configuration on hover
    base_front = next(trace for trace in fronts if trace["name"].startswith("fast_itpn_base"))
    assert values(base_front["x"]) == pytest.approx([1.15, 1.7, 1.9])  # migration_20 is dominated
    assert any(shape["x0"] == 1.0 and shape["x1"] == 1.0 for shape in spec["layout"]["shapes"])
    assert spec["layout"]["xaxis"]["title"]["text"] == ("measured speed-up over baseline (×)<br>at 224×224 px on cpu, "
                                                        "float32, batch 32")
    assert spec["layout"]["yaxis"]["title"]["text"] == "top1 (%, val)<br>at 224×224 px on cpu, float32"
    assert at.sidebar.selectbox(key="device").value == "cpu"
    table_of_points = table(at, "configuration")
    assert len(table_of_points) == 20  # 2 tasks x 2 models x 5 variants, each with its configuration
    assert table_of_points["configuration"].str.startswith("224×224 px, grid 14×14, ").all()
    assert set(table_of_points.loc[table_of_points["variant"] == "window", "configuration"]) == {
        "224×224 px, grid 14×14, 2×2 windows of 7×7"}
    [warning] = [element.value for element in at.warning]
    assert "no benchmark at 128×128 for window_gathering" in warning  # the half that is missing, named
    assert "no accuracy at 512×512 for window (fast_itpn_base_patch16_224" in warning

    benchmarks = table(at, "images_per_s")
    assert len(benchmarks) == 11 and set(benchmarks["device"]) == {"cpu"}
    assert "memory_mb" not in benchmarks.columns  # nothing measured it on CPU
    window = benchmarks[benchmarks["variant"] == "window"]
    assert window.loc[window["resolution"] == 224, "speedup"].round(2).tolist() == [1.9, 1.9]
    assert window.loc[window["resolution"] == 512, "speedup"].isna().all()  # no baseline timed at 512²
    runs = table(at, "run_key")
    assert set(runs["status"]) == {"completed", "failed"}
    assert runs.loc[runs["status"] == "failed", "error"].tolist() == ["RuntimeError: CUDA out of memory"]


def test_filters_change_what_is_shown(app_path: Path, filled_store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    at = started(app_path, filled_store_url, monkeypatch)

    at.sidebar.multiselect(key="tasks").set_value(["detection"]).run()
    assert [title for title in chart_titles(at) if "speed-up" in title] == ["detection: bbox_mAP vs speed-up"]

    at.sidebar.multiselect(key="models").set_value([TINY]).run()
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert {trace["customdata"][0][1] for trace in spec["data"]
            if trace["mode"] == "markers" and not trace["name"].startswith("paper")} == {TINY}
    assert set(table(at, "images_per_s")["model"]) == {TINY}

    at.sidebar.selectbox(key="device").set_value("cuda").run()
    assert set(table(at, "images_per_s")["device"]) == {"cuda"}
    assert table(at, "images_per_s")["memory_mb"].tolist() == [800.0] * 5

    at.sidebar.selectbox(key="experiment").set_value("smoke").run()
    assert not at.exception
    assert table(at, "run_key")["run_key"].tolist() == ["broken-run"]
    assert not [title for title in chart_titles(at) if "speed-up" in title]
    assert any("No accuracy with a benchmark of the same configuration" in info.value for info in at.info)


def test_x_axis_switches_to_flop_reduction_and_the_paper_points_stand_beside_ours(
    app_path: Path, filled_store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = started(app_path, filled_store_url, monkeypatch)
    detection = json.loads(at.get("plotly_chart")[1].proto.spec)
    paper = [trace for trace in detection["data"] if trace["name"].startswith("paper, Fig. 5")]
    assert len(paper) == 1 and "yaxis" not in paper[0]  # the same quantities (speed-up ×, mAP %): the same axes
    paper_points = dict(zip([row[0] for row in paper[0]["customdata"]], values(paper[0]["x"])))
    ours = [trace for trace in detection["data"] if trace["mode"] == "markers" and trace["name"] == "baseline · base"]
    assert values(ours[0]["y"]) == pytest.approx([53.4])  # COCO's [0, 1] mAP drawn in % beside the paper's 53.4
    assert paper_points["migration_30"] == pytest.approx(1.23) and paper_points["window"] == pytest.approx(1.9)
    assert len(paper_points) == 8  # Figure 5's rows

    at.radio(key="x-axis").set_value("FLOP reduction").run()
    assert chart_titles(at)[:2] == ["classification: top1 vs FLOP reduction", "detection: bbox_mAP vs FLOP reduction"]
    spec = json.loads(at.get("plotly_chart")[1].proto.spec)
    assert not [trace for trace in spec["data"] if trace["name"].startswith("paper")]  # the paper gives no FLOPs
    assert "the paper's points" in chart_titles(at)[2]  # ... so they stand in a panel of their own
    base = {trace["customdata"][0][0]: values(trace["x"])[0] for trace in spec["data"]
            if trace["mode"] == "markers" and trace["customdata"][0][1] == "fast_itpn_base_patch16_224"}
    # gflops = 17 / factor in the test rows, so the FLOP reduction equals each variant's factor
    assert base == pytest.approx(
        {"baseline": 1.0, "migration_10": 1.15, "migration_20": 1.2, "window_gathering_hrpe": 1.7, "window": 1.9})
    assert spec["layout"]["xaxis"]["title"]["text"].startswith("FLOP reduction")


def test_run_selection_switches_training_curves(
    app_path: Path, filled_store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = started(app_path, filled_store_url, monkeypatch)
    at.multiselect(key="curve-metrics").set_value(["loss"]).run()
    assert [title for title in chart_titles(at) if "speed-up" not in title] == ["loss"]
    loss = json.loads(at.get("plotly_chart")[-1].proto.spec)["data"][0]
    assert values(loss["x"]) == list(range(20))

    evaluation = next(run_id for run_id in at.selectbox(key="curve-run").options if "eval-accel" in run_id)
    at.selectbox(key="curve-run").set_value(int(evaluation.split()[0].lstrip("#"))).run()
    assert [title for title in chart_titles(at) if "speed-up" not in title] == []
    assert any("no metric over several steps" in info.value for info in at.info)


def test_empty_store_says_how_to_fill_it(app_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = started(app_path, f"sqlite:///{tmp_path}/missing.db", monkeypatch)
    assert any("itpn demo" in info.value for info in missing.info)
    assert not missing.get("plotly_chart")
    assert not (tmp_path / "missing.db").exists()

    url = f"sqlite:///{tmp_path}/empty.db"
    upgrade(url)
    empty = started(app_path, url, monkeypatch)
    assert any("itpn demo" in info.value for info in empty.info)
    assert not empty.get("plotly_chart")
