"""``itpn reproduce``: the grid each table needs, the paper's numbers beside ours, and table9 end to end."""
from __future__ import annotations

import math

import pandas as pd
import pytest
import yaml

from flows.params import PipelineParams
from flows.reproduce import TABLES, plan
from services.paper_tables import load_paper_tables, ours, side_by_side


def _params(job) -> PipelineParams:
    return PipelineParams.load(job.params_file)


def test_table9_plan_pretrains_each_ablation_once_and_fine_tunes_every_row(tmp_path):
    jobs = plan("table9", "demo", output_dir=str(tmp_path))
    pretrainings = [job for job in jobs if job.stage == "pretrain"]
    finetunes = {job.rows[0]: _params(job) for job in jobs if job.stage == "finetune_classification"}
    assert sorted(finetunes) == ["conv", "conv_mfm", "mim", "mim_mfm", "none"]
    assert len(pretrainings) == 4 and sorted(row for job in pretrainings for row in job.rows) == [
        "conv", "conv_mfm", "mim", "mim_mfm"]
    assert finetunes["none"].finetune["classification"]["pretrained"] is None
    assert finetunes["mim"].pretrain["teacher"] == "none" and finetunes["mim_mfm"].pretrain["teacher"] == "ema"
    assert finetunes["conv"].experiment.model_kwargs["cmlp"] is False
    assert "cmlp" not in finetunes["mim"].experiment.model_kwargs
    # every row reads the export of its own pre-training
    for job in pretrainings:
        for row in job.rows:
            assert finetunes[row].stage_dir("pretrain") == _params(job).stage_dir("pretrain")
    data = {_params(job).stage_dir("prepare_data") for job in jobs}
    assert len(data) == 1  # one prepared data set for the whole grid
    assert {_params(job).experiment.name for job in jobs} == {"reproduce-table9-demo"}


def test_table8_shares_the_integral_pretraining_and_leaves_the_pyramid_out_where_asked(tmp_path):
    jobs = plan("table8", "small", output_dir=str(tmp_path))
    pretrainings = {tuple(job.rows): _params(job) for job in jobs if job.stage == "pretrain"}
    assert pretrainings[("no_ipt",)].pretrain["integral"] is False
    assert ("ipt_pyramid_not_loaded", "ipt_pyramid_loaded") in pretrainings
    detection = {job.rows[0]: _params(job).finetune["detection"] for job in jobs if job.stage == "finetune_detection"}
    assert detection["ipt_pyramid_not_loaded"]["cfg_options"]["model.backbone.load_pyramid"] is False
    assert "model.backbone.load_pyramid" not in detection["ipt_pyramid_loaded"]["cfg_options"]


def test_acceleration_tables_evaluate_every_variant_and_time_it(tmp_path):
    demo = plan("figure5", "demo", output_dir=str(tmp_path / "demo"))
    finetune = [job for job in demo if job.stage == "finetune_detection"]
    assert len(finetune) == 1  # one model, evaluated under every variant
    assert set(_params(finetune[0]).finetune["detection"]["eval_variants"]) == set(TABLES["figure5"].variants) - {
        "baseline"}
    bench = next(job for job in demo if job.stage == "benchmark_acceleration")
    assert _params(bench).benchmark.variants == TABLES["figure5"].variants
    paper = plan("table7", "paper", data_root="/data/real", output_dir=str(tmp_path / "paper"))
    per_variant = {job.rows[0]: _params(job) for job in paper if job.stage == "finetune_rotated"}
    assert sorted(per_variant) == sorted(TABLES["table7"].variants)  # the paper fine-tunes each variant
    assert per_variant["window_hrpe"].finetune["rotated"]["variant"] == "window_hrpe"
    assert per_variant["window_hrpe"].data.root == "/data/real" and not per_variant["window_hrpe"].data.generate


def test_unknown_table_and_scale_are_named():
    with pytest.raises(ValueError, match="table10.*table9, table8, table7, figure5"):
        plan("table10", "demo")
    with pytest.raises(ValueError, match="huge.*demo, small, paper"):
        plan("table9", "huge")


def test_every_table_row_has_its_paper_row_and_the_other_way_round():
    numbers = load_paper_tables()
    assert set(numbers) == set(TABLES)
    for name, table in TABLES.items():
        assert [row.name for row in table.rows] == [row.name for row in numbers[name].rows]
    assert numbers["table9"].rows[-1].paper == {"ImageNet-1K": 85.1, "COCO": 52.1, "ADE20K": 52.2}
    assert numbers["table7"].rows[0].paper == {"mAP": 79.3, "speed": 17.3}


def test_a_malformed_numbers_file_is_named(tmp_path):
    path = tmp_path / "numbers.yaml"
    path.write_text(yaml.safe_dump({"table9": {"title": "t", "columns": {"A": {"task": "classification",
                                                                               "metric": "top1"}},
                                               "rows": [{"name": "x", "paper_row": "x", "paper": {"B": 1.0}}]}}))
    with pytest.raises(ValueError, match=r"table9 row 'x' gives numbers for unknown columns \['B'\]"):
        load_paper_tables(path)


def test_our_numbers_come_from_each_row_s_final_metrics():
    table = load_paper_tables()["table9"]
    runs = pd.DataFrame([
        {"run_id": 1, "status": "completed", "params": {"reproduce": {"row": "mim"}}},
        {"run_id": 2, "status": "completed", "params": {"reproduce": {"row": "mim_mfm"}}},
        {"run_id": 3, "status": "failed", "params": {"reproduce": {"row": "none"}}},
    ])
    metrics = pd.DataFrame([
        {"run_id": 1, "task": "classification", "split": "val", "name": "top1", "step": 0, "variant": "baseline",
         "value": 61.0},
        {"run_id": 1, "task": "classification", "split": "val", "name": "top1", "step": 90, "variant": "baseline",
         "value": 12.0},  # a point of the training curve, not the result
        {"run_id": 2, "task": "classification", "split": "val", "name": "top1", "step": 0, "variant": "baseline",
         "value": 64.5},
        {"run_id": 2, "task": "detection", "split": "val", "name": "bbox_mAP", "step": 0, "variant": "baseline",
         "value": 0.25},
        {"run_id": 3, "task": "classification", "split": "val", "name": "top1", "step": 0, "variant": "baseline",
         "value": 99.0},
    ])
    frame = side_by_side(table, ours(table, runs, metrics)).set_index("row")
    assert frame.loc["mim", "ImageNet-1K ours"] == 61.0 and frame.loc["mim", "ImageNet-1K paper"] == 84.9
    assert frame.loc["mim_mfm", "COCO ours"] == 25.0  # mAP in [0, 1] shown in the paper's %
    assert math.isnan(frame.loc["none", "ImageNet-1K ours"])  # the failed run counts for nothing
    assert math.isnan(frame.loc["none", "ImageNet-1K paper"])  # a row of ours the paper does not have


def test_a_row_subset_keeps_the_grid_s_sharing_and_names_unknown_rows(tmp_path):
    jobs = plan("table9", "smoke", output_dir=str(tmp_path), rows=["mim_mfm", "none"])
    assert [(job.stage, job.rows) for job in jobs] == [("prepare_data", []), ("finetune_classification", ["none"]),
                                                       ("pretrain", ["mim_mfm"]),
                                                       ("finetune_classification", ["mim_mfm"])]
    variants = plan("figure5", "smoke", output_dir=str(tmp_path / "figure5"), rows=["window"])
    bench = next(job for job in variants if job.stage == "benchmark_acceleration")
    assert bench.rows == ["baseline", "window"]  # speed-ups need the baseline beside the variant
    with pytest.raises(ValueError, match=r"table9 has no rows \['mfm'\]; its rows are none, conv, conv_mfm"):
        plan("table9", "smoke", rows=["none", "mfm"])


@pytest.mark.slow
def test_reproduce_table9_two_rows_end_to_end_land_beside_the_paper(tmp_path, monkeypatch):
    """``itpn reproduce table9 --scale smoke --rows none,mim_mfm``: data prepared, one pre-training, two
    fine-tunes, every run recorded completed under the table's experiment and printed beside the paper's
    numbers. (What the rows measure at demo scale is a benchmark: ``benchmarks/reproduce_table9.py``.)"""
    from typer.testing import CliRunner

    from itpn_cli.main import app
    from services.paper_tables import reproduced_table
    from services.store import open_reader

    url = f"sqlite:///{tmp_path / 'results.db'}"
    monkeypatch.setenv("ITPN_STORE_URL", url)
    monkeypatch.setenv("ITPN_STATE_DIR", str(tmp_path / "state"))
    result = CliRunner().invoke(app, ["reproduce", "table9", "--scale", "smoke", "--rows", "none,mim_mfm",
                                      "--output-dir", str(tmp_path / "grid")])
    assert result.exit_code == 0, result.output
    assert "Table 9" in result.output and "85.1" in result.output  # the paper's number printed beside ours
    with open_reader(url) as reader:
        runs = reader.runs(experiment="reproduce-table9-smoke")
        table = reproduced_table(reader, "table9", "smoke").set_index("row")
    assert set(runs["status"]) == {"completed"}
    assert sorted(runs["flow_name"]) == ["finetune_classification", "finetune_classification", "prepare_data",
                                         "pretrain"]
    assert {run["reproduce"]["row"] for run in runs["params"]} == {"", "none", "mim_mfm"}
    measured = table["ImageNet-1K ours"]
    assert measured[["none", "mim_mfm"]].between(0, 100).all(), table
    assert measured.drop(["none", "mim_mfm"]).isna().all(), table  # rows not run stay empty
    assert table.loc["mim_mfm", "ImageNet-1K paper"] == 85.1


def test_prefect_yaml_deploys_the_reproduce_flow():
    from flows.reproduce import reproduce
    from flows.outline import REPO_ROOT

    deployments = {entry["name"]: entry for entry in yaml.safe_load((REPO_ROOT / "prefect.yaml").read_text())[
        "deployments"]}
    entry = deployments["reproduce"]
    module, name = entry["entrypoint"].split(":")
    assert module == "flows/reproduce.py" and name == "reproduce" and reproduce.name == "reproduce"
    assert set(entry["parameters"]) <= {"table", "scale", "data_root", "output_dir"}
