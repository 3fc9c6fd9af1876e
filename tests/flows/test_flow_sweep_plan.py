"""A sweep's plan: one parameters file per point, pre-training shared per (model, recipe), the
benchmark per model, data preparation with the base experiment; and what a stage holds while it runs."""
import threading
import time
from pathlib import Path

import pytest

from flows.params import PipelineParams
from flows.resources import CPU_LIMIT, device_lease, stage_slots
from flows.sweep import model_name, plan_sweep

from flow_params import write_params

# windows that split the grids (2x2 tokens at 32 px, 8x8 at the detector's 128): a "window" point acts
CLASSIFICATION = {"img_size": 32, "window_size": 1, "batch_size": 4, "epochs": 1, "eval_variants": ["migration_30"]}
DETECTION = {"config": "configs/detection/demo_mask-rcnn_fast-itpn-tiny_generated-coco.py",
             "cfg_options": {"train_cfg.max_iters": 2, "model.backbone.window_size": 4}}


@pytest.fixture
def base(tmp_path) -> Path:
    return write_params(tmp_path, finetune={"classification": CLASSIFICATION, "detection": DETECTION})


def test_points_share_pretraining_per_model_and_recipe_and_set_their_coordinates(base, tmp_path):
    points = plan_sweep(base, "s1", models=["T", "fast_itpn_small_patch16_224"], variants=["baseline", "window"],
                        seeds=[0, 1], recipes={"default": {}, "long": {"total_steps": 6}})
    assert len(points) == 2 * 2 * 2 * 2
    loaded = {point.name: PipelineParams.load(point.params_file) for point in points}
    assert len({point.name for point in points}) == 16

    tiny_window_s1_long = loaded["s1/tiny-window-s1-long"]
    assert tiny_window_s1_long.experiment.model == "fast_itpn_tiny_patch16_224"
    assert tiny_window_s1_long.finetune["classification"]["variant"] == "window"
    assert tiny_window_s1_long.finetune["classification"]["seed"] == 1
    assert tiny_window_s1_long.finetune["detection"]["cfg_options"] == {
        "train_cfg.max_iters": 2, "model.backbone.window_size": 4, "randomness.seed": 1}
    assert tiny_window_s1_long.pretrain["total_steps"] == 6
    assert tiny_window_s1_long.experiment.sweep == "s1" and tiny_window_s1_long.experiment.shared_name == "s1"

    pretrain_dirs = {(p.model, p.recipe): set() for p in points}
    for point in points:
        pretrain_dirs[point.group].add(loaded[point.name].stage_dir("pretrain"))
    assert all(len(dirs) == 1 for dirs in pretrain_dirs.values())  # shared inside a group
    assert len({dirs.pop() for dirs in pretrain_dirs.values()}) == 4  # and one per (model, recipe)
    assert len({params.stage_dir("benchmark_acceleration") for params in loaded.values()}) == 2  # one per model
    base_params = PipelineParams.load(base)
    assert {params.stage_dir("prepare_data") for params in loaded.values()} == {base_params.stage_dir("prepare_data")}
    assert len({params.stage_dir("finetune_classification") for params in loaded.values()}) == 16
    # shared stages are recorded under the sweep, the fine-tunes under their point
    assert tiny_window_s1_long.record_name("pretrain") == "s1"
    assert tiny_window_s1_long.record_name("finetune_classification") == "s1/tiny-window-s1-long"


def test_a_second_sweep_finds_the_same_pretraining_folder(base):
    [first] = plan_sweep(base, "a", variants=["baseline"])
    [second] = plan_sweep(base, "b", variants=["window"])
    assert (PipelineParams.load(first.params_file).stage_dir("pretrain")
            == PipelineParams.load(second.params_file).stage_dir("pretrain"))


def test_sweep_errors_name_the_problem(base):
    with pytest.raises(ValueError, match="rotated"):
        plan_sweep(base, "s", tasks=["rotated"])
    with pytest.raises(ValueError, match="warp_speed"):
        plan_sweep(base, "s", variants=["warp_speed"])
    with pytest.raises(ValueError, match="without '/'"):
        plan_sweep(base, "a/b")
    assert model_name("B") == "fast_itpn_base_patch16_224" and model_name("itpn_base_patch16_224") == "itpn_base_patch16_224"


def test_training_stages_take_a_cpu_slot_and_the_others_none(base):
    params = PipelineParams.load(base)
    assert stage_slots("finetune_classification", params) == (CPU_LIMIT, 1, params.experiment.cpu_jobs)
    assert stage_slots("pretrain", params) == (CPU_LIMIT, 1, params.experiment.cpu_jobs)
    assert stage_slots("prepare_data", params) is None and stage_slots("benchmark_acceleration", params) is None


def test_device_leases_hand_out_disjoint_gpus_and_wait_for_a_free_one(tmp_path):
    with device_lease(2, 3, tmp_path) as first, device_lease(1, 3, tmp_path) as second:
        assert sorted(first + second) == [0, 1, 2]
        got: list[list[int]] = []
        waiter = threading.Thread(target=lambda: got.append(_lease(tmp_path)))
        waiter.start()
        time.sleep(0.5)
        assert not got  # every GPU is held
    waiter.join(timeout=10)
    assert got and len(got[0]) == 1
    with pytest.raises(ValueError, match="needs 4 GPUs but this node has 3"):
        with device_lease(4, 3, tmp_path):
            pass


def _lease(lock_dir: Path) -> list[int]:
    with device_lease(1, 3, lock_dir, poll_s=0.1) as devices:
        return devices
