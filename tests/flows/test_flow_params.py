"""A parameters file is checked whole when it is read: every problem one line naming the file, the key, the
value and the fix, for the outline's keys and for each library section (through the library's config)."""
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from flows.params import ParamsError, PipelineParams
from flows.stages.run import run_stage

from flow_params import TINY_PARAMS, write_params

REPO = Path(__file__).resolve().parents[2]
CLASSIFICATION = {"img_size": 32, "batch_size": 4, "epochs": 1, "warmup_epochs": 0, "num_workers": 0,
                  "model_ema": False, "mixup": 0.0, "cutmix": 0.0, "progress": False}
DETECTION = {"config": "configs/detection/demo_mask-rcnn_fast-itpn-tiny_generated-coco.py"}


def problems(path: Path, check_data: bool = False) -> list[str]:
    """The lines of the ``ParamsError`` that loading ``path`` raises."""
    with pytest.raises(ParamsError) as raised:
        PipelineParams.load(path, check_data=check_data)
    lines = str(raised.value).splitlines()
    assert len(lines) == len(raised.value.problems)
    for line in lines:
        assert line.startswith(f"{path}: ") and ". Fix: " in line, line
    return lines


def test_a_misspelt_section_is_named_with_the_section_it_means(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({**TINY_PARAMS, "pretrian": TINY_PARAMS["pretrain"]}))
    [line] = problems(path)
    assert "pretrian = {" in line and "unknown section" in line and "rename it to 'pretrain'" in line


@pytest.mark.parametrize("section, key, near", [
    ("experiment", "modle", "model"),
    ("pretrain", "bach_size", "batch_size"),
    ("benchmark", "iteration", "iterations"),
])
def test_a_misspelt_key_is_named_with_the_key_it_means(tmp_path, section, key, near):
    [line] = problems(write_params(tmp_path, **{section: {key: 4}}))
    assert f"{section}.{key} = 4: unknown key" in line and f"rename it to {near!r}" in line


@pytest.mark.parametrize("section, key, value, expected", [
    ("pretrain", "total_steps", -5, "at least 1"),
    ("pretrain", "batch_size", 0, "at least 1"),
    ("pretrain", "epochs", 0, "at least 1"),
    ("pretrain", "warmup_steps", -1, "at least 0"),
    ("pretrain", "num_workers", -1, "at least 0"),
    ("pretrain", "lr", 0.0, "greater than 0"),
    ("pretrain", "mask_ratio", 1.0, "less than 1"),
    ("finetune.classification", "batch_size", 0, "at least 1"),
    ("finetune.classification", "epochs", 0, "at least 1"),
    ("finetune.classification", "lr", -1.0e-3, "greater than 0"),
    ("finetune.classification", "num_workers", -2, "at least 0"),
    ("finetune.classification", "warmup_epochs", -1, "at least 0"),
    ("benchmark", "iterations", 0, "at least 1"),
    ("benchmark", "batch_size", 0, "at least 1"),
    ("experiment", "cpu_jobs", 0, "at least 1"),
    ("experiment", "gpus", -1, "at least 0"),
    ("pretrain", "lr", float("inf"), "must be a finite number"),
    ("pretrain", "weight_decay", float("nan"), "must be a finite number"),
    ("finetune.classification", "lr", float("inf"), "must be a finite number"),
])
def test_a_number_out_of_its_range_is_named_with_the_range(tmp_path, section, key, value, expected):
    overrides = {section: {key: value}}
    if section == "finetune.classification":
        overrides = {"finetune": {"classification": {**CLASSIFICATION, key: value}}}
    [line] = problems(write_params(tmp_path, **overrides))
    assert f"{section}.{key} = {value!r}: " in line and expected in line


@pytest.mark.parametrize("kind, key, value, expected", [
    ("imagenet", "num_classes", -3, "must be a whole number at least 1 and at most 1000"),
    ("imagenet", "train_per_class", 2.5, "must be a valid integer"),
    ("imagenet", "image_size", 30, "must be a multiple of 16 and at least 16"),
    ("imagenet", "seed", -1, "must be a whole number at least 0"),
    ("imagenet_tar", "samples_per_shard", 0, "must be a whole number at least 1"),
    ("coco", "objects_per_image", [5, 2], "must be [min, max] with 0 <= min <= max"),
    ("coco", "crowd_fraction", 1.5, "must be at least 0 and at most 1"),
    ("coco", "num_classes", 81, "must be a whole number at least 1 and at most 80"),
    ("ade20k", "val_images", 0, "must be a whole number at least 1"),
    ("dota", "object_scale", 0.0, "must be greater than 0"),
    ("dota", "object_scale", float("inf"), "must be a finite number"),
])
def test_a_generator_argument_is_checked_as_the_generator_checks_it(tmp_path, kind, key, value, expected):
    [line] = problems(write_params(tmp_path, data={"sets": {kind: {key: value}}}))
    assert f"data.sets.{kind}.{key} = {value!r}: {expected}" in line


def test_the_generators_refuse_the_same_values_before_writing_anything(tmp_path):
    from itpn.data import generate_coco, generate_imagenet

    with pytest.raises(ValueError, match=r"num_classes must be a whole number at least 1 and at most 1000, got -3"):
        generate_imagenet(str(tmp_path / "imagenet"), num_classes=-3)
    with pytest.raises(ValueError, match=r"crowd_fraction must be at least 0 and at most 1, got 1.5"):
        generate_coco(str(tmp_path / "coco"), crowd_fraction=1.5)
    assert not (tmp_path / "imagenet").exists() and not (tmp_path / "coco").exists()


def test_the_tar_layout_takes_the_imagenet_generators_arguments_but_its_layout(tmp_path):
    PipelineParams.load(write_params(tmp_path, data={"sets": {"imagenet_tar": {"num_classes": 3,
                                                                                "samples_per_shard": 4}}}))
    [line] = problems(write_params(tmp_path, data={"sets": {"imagenet_tar": {"layout": "folder"}}}))
    assert "data.sets.imagenet_tar.layout = 'folder': unknown generator argument" in line


def test_an_unknown_device_is_named_with_the_devices_there_are(tmp_path):
    [line] = problems(write_params(tmp_path, experiment={"device": "cdu"}))
    assert "experiment.device = 'cdu': unknown device" in line and "rename it to 'cpu'" in line
    for device in ("cuda:1", "auto", "cpu"):
        assert PipelineParams.load(write_params(tmp_path, experiment={"device": device})).experiment.device == device


def test_a_number_yaml_read_as_text_says_how_to_write_it(tmp_path):
    path = write_params(tmp_path)
    path.write_text(path.read_text().replace("warmup_steps: 1", "warmup_steps: 1\n  lr: 1e-3"))
    [line] = problems(path)
    assert "pretrain.lr = '1e-3'" in line and "write pretrain.lr: 0.001" in line


def test_a_value_of_the_wrong_type_is_named_with_the_type(tmp_path):
    [line] = problems(write_params(tmp_path, pretrain={"total_steps": "many"}))
    assert "pretrain.total_steps = 'many': must be a valid integer" in line


def test_openmmlab_sections_need_an_existing_config_and_known_keys_and_variants(tmp_path):
    lines = problems(write_params(tmp_path, finetune={
        "detection": {"config": "configs/detection/no_such.py"},
        "segmentation": {**DETECTION, "cfg_option": {}},
        "rotated": {**DETECTION, "eval_variants": ["migration_3O"]},
        "rotation": {**DETECTION}}))
    by_task = {line.split("finetune.")[1].split(".")[0].split(" ")[0]: line for line in lines}
    assert "finetune.detection.config = 'configs/detection/no_such.py': no such file" in by_task["detection"]
    assert "finetune.segmentation.cfg_option = {}: unknown key" in by_task["segmentation"]
    assert "rename it to 'cfg_options'" in by_task["segmentation"]
    assert "finetune.rotated.eval_variants = 'migration_3O': unknown acceleration variant" in by_task["rotated"]
    assert "rename it to 'migration_30'" in by_task["rotated"]
    assert "finetune.rotation = {" in by_task["rotation"] and "rename it to 'rotated'" in by_task["rotation"]
    assert len(lines) == 4


def test_every_problem_of_a_file_is_reported_at_once(tmp_path):
    lines = problems(write_params(tmp_path, pretrain={"total_steps": -5},
                                  finetune={"classification": {**CLASSIFICATION, "batch_size": 0}},
                                  data={"sets": {"imagenet": {"num_clases": 3}}}))
    assert [line.split(" = ")[0].split(": ")[1] for line in lines] == [
        "pretrain.total_steps", "finetune.classification.batch_size", "data.sets.imagenet.num_clases"]
    assert "rename it to 'num_classes'" in lines[2]


def test_a_section_the_outline_rejects_does_not_hide_the_library_sections_problems(tmp_path):
    """The outline's own keys (pydantic) and the library sections are checked in one pass: a bad benchmark
    value or a misspelt section is reported beside a bad pre-training value, not instead of it."""
    path = write_params(tmp_path, benchmark={"batch_size": 0}, pretrain={"batch_size": 0})
    lines = problems(path)
    assert [line.split(" = ")[0].split(": ")[1] for line in lines] == ["benchmark.batch_size", "pretrain.batch_size"]
    assert "benchmark.batch_size = 0: must be at least 1. Fix: set benchmark.batch_size to a value that is at " \
           "least 1" in lines[0]
    raw = yaml.safe_load(write_params(tmp_path, finetune={"classification": {**CLASSIFICATION, "epochs": 0}}).read_text())
    raw["pretrian"] = raw.pop("pretrain")
    path.write_text(yaml.safe_dump(raw))
    lines = problems(path)
    assert "unknown section" in lines[0] and "finetune.classification.epochs = 0" in lines[1]


def test_every_bad_value_of_one_library_section_is_reported_and_quoted_booleans_are_refused(tmp_path):
    lines = problems(write_params(tmp_path, pretrain={"total_steps": -40, "batch_size": 0, "norm_pix_loss": "false",
                                                      "warmup_steps": 1.5}))
    by_key = {line.split(" = ")[0].split(": ")[1]: line for line in lines}
    assert sorted(by_key) == ["pretrain.batch_size", "pretrain.norm_pix_loss", "pretrain.total_steps",
                              "pretrain.warmup_steps"]
    assert "pretrain.norm_pix_loss = 'false': must be true or false" in by_key["pretrain.norm_pix_loss"]
    assert "Fix: set pretrain.warmup_steps to a valid integer" in by_key["pretrain.warmup_steps"]  # a sentence


def test_real_data_that_is_not_there_is_named_with_the_fix(tmp_path):
    """params.yaml's own advice for real runs: point data.root at the data, set data.generate: false. The
    data sets' generator arguments are then not used; a missing root is named before anything runs."""
    path = write_params(tmp_path, data={"root": str(tmp_path / "datasets"), "generate": False})
    PipelineParams.load(path)  # without the data check: the file itself is fine
    [line] = problems(path, check_data=True)
    assert f"data.root = '{tmp_path / 'datasets'}': no such folder" in line
    assert "point data.root at the folder holding your data sets" in line and "data.generate: true" in line

    (tmp_path / "datasets").mkdir()
    [line] = problems(path, check_data=True)
    assert f"data.sets.imagenet = '{tmp_path / 'datasets' / 'imagenet'}': no such folder under data.root" in line


def test_real_data_leave_the_generator_arguments_unused_with_a_note(tmp_path):
    generated = PipelineParams.load(write_params(tmp_path))
    run_stage("prepare_data", generated)
    (tmp_path / "real").mkdir()
    real = PipelineParams.load(write_params(tmp_path / "real", data={"root": generated.data.root, "generate": False},
                                            experiment={"output_dir": "outputs"}), check_data=True)
    result = run_stage("prepare_data", real)
    assert any("generator arguments" in note and "not used" in note for note in result.notes)
    assert "imagenet/train/images: 12 samples" in result.notes


def test_the_stage_command_prints_the_problems_and_no_traceback(tmp_path):
    path = write_params(tmp_path, pretrain={"total_steps": -5})
    process = subprocess.run([sys.executable, "-m", "flows.stages", "prepare_data", "--params", str(path)], cwd=REPO,
                             capture_output=True, text=True, timeout=300)
    assert process.returncode == 2
    assert process.stderr.strip() == f"{path}: pretrain.total_steps = -5: must be at least 1. Fix: set " \
                                     f"pretrain.total_steps to at least 1."
    assert not (tmp_path / "outputs").exists()


def test_a_missing_or_broken_file_is_one_line(tmp_path):
    [line] = problems(tmp_path / "nowhere.yaml")
    assert "no such parameters file" in line
    broken = tmp_path / "broken.yaml"
    broken.write_text("pretrain: {total_steps: 4\n")
    [line] = problems(broken)
    assert "not valid YAML" in line and line.startswith(f"{broken}: line ")
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing set yet\n")
    [line] = problems(empty)
    assert "the file is empty (no sections)" in line


def test_a_variant_that_would_not_act_at_its_size_is_refused_naming_the_grid_and_the_fix(tmp_path):
    """Windows as large as the token grid are global attention, and 10 % of a 4-token grid migrates no token:
    such a variant would be recorded as a result equal to the baseline, so loading the parameters refuses it,
    one line per setting, naming the grid and the setting that makes it act."""
    path = write_params(tmp_path, finetune={
        "classification": {**CLASSIFICATION, "eval_variants": ["baseline", "migration_10", "window", "window_hrpe"]},
        "detection": {**DETECTION, "eval_variants": ["window_gathering"]}},
        benchmark={"resolutions": [64, 512], "variants": ["window"], "window_size": {512: 8}})
    lines = problems(path)
    by_key = {line.split(": ", 1)[1].split(" = ")[0]: line for line in lines}
    assert set(by_key) == {"finetune.classification.window_size", "finetune.classification.eval_variants",
                           "finetune.detection.cfg_options.model.backbone.window_size", "benchmark.window_size.64"}
    window = by_key["finetune.classification.window_size"]
    assert ("window, window_hrpe: windows of 16×16 tokens cover the whole grid at 32×32 px (a 2×2 token grid)"
            in window and "Fix: set window_size to at most 1" in window)
    migration = by_key["finetune.classification.eval_variants"]
    assert "migration_10: migration drops no token of the 4 per window at 32×32 px (a 2×2 token grid)" in migration
    detection = by_key["finetune.detection.cfg_options.model.backbone.window_size"]
    assert "at 128×128 px (a 8×8 token grid)" in detection and "at most 4" in detection  # the config's test size
    assert "at 64×64 px (a 4×4 token grid)" in by_key["benchmark.window_size.64"]  # 512 has its own windows of 8

    path = write_params(tmp_path, finetune={
        "classification": {**CLASSIFICATION, "window_size": 1, "eval_variants": ["migration_30", "window"]},
        "detection": {**DETECTION, "cfg_options": {"model.backbone.window_size": 4},
                      "eval_variants": ["window_gathering"]}},
        benchmark={"resolutions": [64, 512], "variants": ["window"], "window_size": {64: 2, 512: 8}})
    assert PipelineParams.load(path).benchmark.window_for(64) == 2  # the settings the lines named: accepted


def test_the_demo_evaluates_and_times_every_variant_in_one_acting_configuration():
    """params.yaml (`itpn demo`): every task's variants act where they are evaluated (windows split the token
    grid in two or more per side, migration drops tokens), and the benchmark times each of them at the same
    size with the same layout, so every accuracy of the demo has its speed-up on the dashboard."""
    from flows.params import OpenMMLabSection
    from itpn.models import get_variant
    from itpn.models.layout import effective_layout, stage3_depth

    params = PipelineParams.load(REPO / "params.yaml")
    depth = stage3_depth(params.experiment.model, params.experiment.model_kwargs)
    timed = {(size, size): params.benchmark.window_for(size) for size in params.benchmark.resolutions}
    sizes = {}
    for task, section in params.finetune.items():
        if task == "classification":
            size, window = (section["img_size"],) * 2, section.get("window_size")
        else:
            size, window = params.openmmlab_evaluation(OpenMMLabSection.model_validate(section))
        sizes[task] = size
        assert size in timed and timed[size] == window, (task, size, window)  # the same configuration is timed
        for variant in section["eval_variants"]:
            layout = effective_layout(variant, size, depth, window_size=window)
            if get_variant(variant).window_size is not None:
                assert layout.windows_h > 1 and layout.windows_w > 1, (task, variant, layout)
            if get_variant(variant).migration:
                assert layout.tokens_left < 1.0, (task, variant, layout)
    assert sizes == {"classification": (64, 64), "detection": (128, 128), "segmentation": (512, 512),
                     "rotated": (128, 128)}
