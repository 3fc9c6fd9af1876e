"""The dashboard's Ablations page: a reproduced table from the store beside the paper's numbers."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from itpn.records import MetricRecord
from services.store import open_writer, upgrade

PAGE = Path(__file__).resolve().parents[2] / "dashboard" / "pages" / "ablations.py"
TOP1 = {"none": 40.0, "conv": 44.0, "conv_mfm": 46.0, "mim": 50.0, "mim_mfm": 55.0}
FINISHED = datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC)


def fill(url: str) -> None:
    with open_writer(url) as writer:
        for row, top1 in TOP1.items():
            params = {"reproduce": {"table": "table9", "scale": "demo", "row": row, "variant": "baseline"}}
            writer.record_run("reproduce-table9-demo", f"t9:{row}", flow_name="finetune_classification",
                              params=params, started_at=FINISHED, finished_at=FINISHED,
                              metrics=[MetricRecord("classification", "imagenet", "val", "top1", top1, 0,
                                                    "fast_itpn_tiny_patch16_224", "baseline")])


def started(url: str, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    monkeypatch.setenv("ITPN_STORE_URL", url)
    at = AppTest.from_file(str(PAGE), default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    return at


def test_the_page_shows_ours_beside_the_paper(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'results.db'}"
    fill(url)
    at = started(url, monkeypatch)
    frame = at.dataframe[0].value.set_index("row")
    assert frame["ImageNet-1K ours"].to_dict() == TOP1
    assert frame.loc["mim_mfm", "ImageNet-1K paper"] == 85.1 and frame.loc["conv", "COCO paper"] == 49.8
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert [trace["name"] for trace in spec["data"]] == ["ours", "paper"]
    assert any("Not run at this scale: COCO, ADE20K" in caption.value for caption in at.main.caption)


def test_an_empty_store_says_how_to_fill_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    upgrade(url)
    at = started(url, monkeypatch)
    assert "itpn reproduce table9 --scale demo" in at.info[0].value
