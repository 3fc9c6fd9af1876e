"""``itpn run`` / ``itpn demo`` / ``itpn reproduce`` check the parameters whole before Prefect starts: each
problem one line naming the file, the key, the value and the fix; exit 2, no traceback, no flow run."""
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from itpn_cli import main

REPO = Path(__file__).resolve().parents[2]

runner = CliRunner()


@pytest.fixture
def no_flow(monkeypatch, tmp_path):
    """Records any flow the CLI would start (none should), with the state directory in ``tmp_path``."""
    monkeypatch.setenv("ITPN_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("COLUMNS", "300")
    started = []
    monkeypatch.setattr(main, "_run_flow_live", lambda *args: started.append(args))
    return started


def invoke(*arguments: str):
    result = runner.invoke(main.app, list(arguments))
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    return result.output


def test_run_names_a_misspelt_section_before_prefect_starts(tmp_path, no_flow):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"experiment": {"name": "cli"}, "pretrian": {"total_steps": 4}}))
    output = invoke("run", "--params", str(path))
    assert f"{path}: pretrian = {{'total_steps': 4}}: unknown section. Fix: rename it to 'pretrain'" in output
    assert no_flow == []


def test_demo_names_every_bad_number(tmp_path, no_flow, monkeypatch):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"pretrain": {"total_steps": -5},
                                                          "finetune": {"classification": {"batch_size": 0}}}))
    monkeypatch.chdir(tmp_path)
    output = invoke("demo")
    assert "params.yaml: pretrain.total_steps = -5: must be at least 1. Fix: set pretrain.total_steps to at least 1." \
        in output
    assert "params.yaml: finetune.classification.batch_size = 0: must be at least 1." in output
    assert no_flow == []


def test_reproduce_names_real_data_that_is_not_there(tmp_path, no_flow):
    missing = tmp_path / "datasets"
    output = invoke("reproduce", "table9", "--scale", "smoke", "--rows", "mim", "--data-root", str(missing),
                    "--output-dir", str(tmp_path / "grid"))
    assert f"data.root = '{missing}': no such folder" in output and "Fix: point data.root at" in output
    assert no_flow == []


def test_demo_starts_the_experiment_and_prices_nothing(tmp_path, no_flow, monkeypatch):
    """``itpn demo`` calls ``run`` as a function: every option of ``run`` must arrive as a value (a typer
    default is an object, and a truthy ``--plan`` printed a plan, or failed, instead of running the demo)."""
    monkeypatch.chdir(REPO)
    result = runner.invoke(main.app, ["demo"])
    assert [started[0] for started in no_flow] == ["experiment"], result.output
    assert "GPU-hours" not in result.output
