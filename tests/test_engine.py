"""The shared training engine: the curve log, the resume rule and the checkpoint formats it reads."""
from __future__ import annotations

import json

import fsspec
import pytest
import torch

from itpn.engine import Checkpoint, CheckpointFormat, CurveLog
from itpn.runtime import Runtime

RUNTIME = Runtime(0, 1, torch.device("cpu"))
FORMAT = CheckpointFormat(name="itpn-test/2", kind="test", free=frozenset({"workers"}),
                          older={"itpn-test/1": lambda state: {**state, "config": json.loads(state["config"])}})


def test_curve_log_keeps_the_rows_up_to_the_resumed_step_or_starts_afresh(tmp_path):
    url = str(tmp_path / "curve.jsonl")
    CurveLog(url, None).write([{"step": step, "loss": 1.0 / step} for step in (1, 2, 3)])
    resumed = CurveLog(url, 2)
    resumed.write([{"step": 3, "loss": 0.5}])
    assert [json.loads(line) for line in open(url)] == [{"step": 1, "loss": 1.0}, {"step": 2, "loss": 0.5},
                                                        {"step": 3, "loss": 0.5}]
    CurveLog(url, None)
    assert open(url).read() == ""


def test_curve_log_in_object_storage_appears_when_published():
    url = "memory://itpn-engine-test/curve.jsonl"
    curve = CurveLog(url, None)
    curve.write([{"step": 1, "loss": 2.0}])
    assert not fsspec.filesystem("memory").exists(url)  # appended to a local copy until published
    curve.publish()
    with fsspec.open(url, "rt") as handle:
        assert json.loads(handle.read()) == {"step": 1, "loss": 2.0}


def test_resume_rule_names_the_file_each_setting_both_values_and_the_fix(tmp_path):
    settings = {"lr": 1e-3, "workers": 2, "betas": (0.9, 0.95)}
    Checkpoint(str(tmp_path), FORMAT, RUNTIME, settings, 16, {"total_steps": 10}).save({"step": 3})
    same = Checkpoint(str(tmp_path), FORMAT, RUNTIME, dict(settings, workers=8), 16, {"total_steps": 10})
    assert same.load()["step"] == 3  # a free setting changed: continues
    other = Checkpoint(str(tmp_path), FORMAT, RUNTIME, dict(settings, lr=2e-3), 32, {"total_steps": 20})
    with pytest.raises(ValueError) as caught:
        other.load()
    message = str(caught.value)
    for expected in (f"cannot resume from {tmp_path}/checkpoint.pt", "lr=0.001 there, 0.002 here",
                     "total_steps=10 there, 20 here (the resolved schedule)", "global batch 16 there, 32 here",
                     "resume=False"):
        assert expected in message


def test_an_older_format_is_read_through_its_upgrade_and_a_foreign_file_is_refused(tmp_path):
    url = tmp_path / "checkpoint.pt"
    torch.save({"format": "itpn-test/1", "config": json.dumps({"lr": 1e-3}), "global_batch": 16, "step": 1}, url)
    assert Checkpoint(str(tmp_path), FORMAT, RUNTIME, {"lr": 1e-3}, 16, {}).load()["config"] == {"lr": 1e-3}
    torch.save({"format": "itpn-other/1", "config": {}, "global_batch": 16}, url)
    with pytest.raises(ValueError, match=r"checkpoint\.pt is not an itpn test checkpoint \(format 'itpn-other/1'\)"):
        Checkpoint(str(tmp_path), FORMAT, RUNTIME, {"lr": 1e-3}, 16, {}).load()
