"""What ``itpn demo`` prints per stage: the trained variant's metrics, named, and how many variants more."""
import os
import time

from rich.console import Console

from flows.params import PipelineParams
from flows.stages.result import StageResult
from itpn_cli.main import _result_summary, _stage_table


def metric(name, value, variant, split="val"):
    return dict(task="detection", dataset="coco", split=split, name=name, value=value, step=0,
                model="fast_itpn_tiny_patch16_224", variant=variant)


def test_a_fine_tune_shows_its_trained_variant_and_counts_the_others():
    result = StageResult("finetune_detection", key="k", metrics=[
        metric("bbox_mAP", 0.0712, "baseline"), metric("seconds_per_iter", 1.5, "baseline", split="train"),
        metric("bbox_mAP_50", 0.31, "baseline"), metric("bbox_mAP", 0.07, "migration_30"),
        metric("bbox_mAP", 0.069, "window")])
    assert _result_summary(result) == "bbox_mAP 0.0712, bbox_mAP_50 0.31 (baseline; 2 more variants evaluated)"


def test_pre_training_shows_its_training_loss():
    result = StageResult("pretrain", key="k", metrics=[metric("loss", 0.9274, "", split="train")])
    assert _result_summary(result) == "loss 0.927"


def test_the_stage_table_prints_variant_names_verbatim(tmp_path):
    """Rich markup would swallow a bracketed name; the table shows it as it is."""
    params = tmp_path / "params.yaml"
    params.write_text("experiment: {name: cli, output_dir: outputs}\n")
    StageResult("finetune_detection", key="k", seconds=12.0, metrics=[
        metric("bbox_mAP", 0.07, "[window]"), metric("bbox_mAP", 0.06, "baseline")]).write(
        tmp_path / "outputs" / "finetune_detection")
    console = Console(record=True, width=200)
    console.print(_stage_table(["finetune_detection", "benchmark_acceleration"], PipelineParams.load(params),
                               time.time() - 60))
    text = console.export_text()
    row = "│ finetune_detection     │ done    │       │      12 │ bbox_mAP 0.07 ([window]; 1 more variant evaluated) │"
    assert row in text
    assert "│ benchmark_acceleration │ waiting │" in text


def test_fine_tunes_that_fan_out_show_running_together(tmp_path):
    """Each stage that claimed its run folder since the start is running, with its start offset; one that
    has not (waiting for a training slot) is waiting; a result from before the start is cached."""
    params = tmp_path / "params.yaml"
    params.write_text("experiment: {name: cli, output_dir: outputs}\n")
    started = time.time() - 60
    for stage in ("finetune_classification", "finetune_detection"):
        (tmp_path / "outputs" / stage / "run").mkdir(parents=True)
        (tmp_path / "outputs" / stage / "run" / ".stage_key").write_text("k")
    StageResult("pretrain", key="k").write(tmp_path / "outputs" / "pretrain")
    old = started - 3600
    os.utime(tmp_path / "outputs" / "pretrain" / "result.json", (old, old))
    console = Console(record=True, width=200)
    console.print(_stage_table(["pretrain", "finetune_classification", "finetune_detection", "finetune_rotated"],
                               PipelineParams.load(params), started))
    text = console.export_text()
    assert "│ pretrain                │ cached  │" in text
    assert "│ finetune_classification │ running │   +60 │" in text
    assert "│ finetune_detection      │ running │   +60 │" in text
    assert "│ finetune_rotated        │ waiting │" in text
