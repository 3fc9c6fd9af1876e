"""The result rows and their files: a malformed log names its line and a fine-tune writes its own tasks only."""

from __future__ import annotations

from pathlib import Path

import pytest

from itpn.records import MetricRecord, read_metrics_jsonl, read_rows, write_metrics


def test_a_malformed_metrics_log_names_file_and_line(tmp_path: Path) -> None:
    no_step = tmp_path / "no_step.jsonl"
    no_step.write_text('{"step": 0, "loss": 1.0}\n{"loss": 0.5}\n')
    with pytest.raises(ValueError, match=r"no_step\.jsonl:2 must be a JSON object with a 'step' key"):
        read_metrics_jsonl(no_step, task="pretrain", dataset="in1k")


def test_fine_tunes_write_their_tasks_only(tmp_path: Path) -> None:
    row = MetricRecord("detection", "coco", "val", "bbox_mAP", 0.5, model="m", variant="baseline")
    write_metrics(str(tmp_path), [row])
    assert read_rows(str(tmp_path / "metrics.json")) == [row.to_dict()]
    with pytest.raises(ValueError, match="unknown task 'pretrain'"):
        write_metrics(str(tmp_path), [row, MetricRecord("pretrain", "in1k", "train", "loss", 1.0)])
    assert read_rows(str(tmp_path / "metrics.json")) == [row.to_dict()]  # nothing of the bad batch written
