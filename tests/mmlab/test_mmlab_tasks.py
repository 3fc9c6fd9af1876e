"""Each task end to end on generated data: config builds on ITPNBackbone, a few training iterations with a
finite loss, evaluation writes the task's metric, every acceleration variant runs through the task's forward."""
import copy
import math

import pytest
import torch

from itpn.mmlab import load_config, run_detection, run_rotated, run_segmentation
from itpn.models.acceleration import VARIANTS, set_acceleration
from itpn.records import read_rows

from mmlab_helpers import CONFIGS

DEMO = {
    "mask_rcnn": CONFIGS / "detection/demo_mask-rcnn_fast-itpn-tiny_generated-coco.py",
    "dino": CONFIGS / "detection/demo_dino-5scale_fast-itpn-tiny_generated-coco.py",
    "upernet": CONFIGS / "segmentation/demo_upernet_fast-itpn-tiny_generated-ade20k.py",
    "rotated": CONFIGS / "rotated_detection/demo_rotated-faster-rcnn-le90_fast-itpn-tiny_generated-dota.py",
}
FULL = {
    "mask_rcnn": CONFIGS / "detection/mask-rcnn_fast-itpn-base_1x_coco.py",
    "dino": CONFIGS / "detection/dino-5scale_fast-itpn-base_1x_coco.py",
    "upernet": CONFIGS / "segmentation/upernet_fast-itpn-base_8xb2-160k_ade20k-512x512.py",
    "rotated": CONFIGS / "rotated_detection/rotated-faster-rcnn-le90_fast-itpn-base_1x_dota.py",
}
SHORT = {"train_cfg.max_iters": 3, "train_cfg.val_interval": 3}


def build(config_path, **backbone):
    from mmengine.registry import DefaultScope, init_default_scope

    cfg = load_config(str(config_path))
    cfg.model.backbone.update(backbone)
    init_default_scope(cfg.get("default_scope", "mmdet"))
    registry = {"mmdet": "mmdet", "mmseg": "mmseg", "mmrotate": "mmrotate"}[DefaultScope.get_current_instance().scope_name]
    models = __import__(f"{registry}.registry", fromlist=["MODELS"]).MODELS
    model = models.build(cfg.model)
    model.init_weights()  # as the runner does: DINO's level embedding is uninitialised memory until then
    return cfg, model


def check_records(work_dir, rows, task, main_metric, evaluate):
    """The rows name the task and model, the curve has one finite loss per iteration, and the recorded
    metrics are those of the trained weights: ``evaluate(cfg_options)`` (the same runner with
    ``train=False`` on the last checkpoint) gives the same values."""
    names = {row["name"]: row["value"] for row in rows}
    assert main_metric in names
    assert all(row["task"] == task and row["model"] == "fast_itpn_tiny_patch16_224" for row in rows)
    assert names["seconds_per_iter"] > 0
    assert read_rows(f"{work_dir}/metrics.json") == rows
    losses = [row["value"] for row in read_rows(f"{work_dir}/curve.jsonl") if row["name"] == "loss"]
    assert len(losses) == 3 and all(math.isfinite(value) for value in losses)
    again = evaluate(dict(SHORT, load_from=f"{work_dir}/iter_3.pth"))
    recomputed = {row["name"]: row["value"] for row in again}
    assert {k: v for k, v in names.items() if k != "seconds_per_iter"} == recomputed


@pytest.mark.parametrize("name", list(FULL))
def test_full_config_builds_on_the_pretrained_pyramid(name):
    cfg, model = build(FULL[name], model_name="fast_itpn_tiny_patch16_224", model_kwargs=dict(depths=(1, 1, 2)))
    assert type(model.backbone).__name__ == "ITPNBackbone"
    if name != "upernet":
        assert not model.with_neck  # the pyramid is the neck
        assert model.backbone.out_channels == [256] * 5
    assert cfg.optim_wrapper.constructor == "LayerDecayOptimWrapperConstructor"


def test_mask_rcnn_trains_and_reports_box_and_mask_ap(coco_dir, tiny_export, tmp_path):
    rows = run_detection(str(DEMO["mask_rcnn"]), data_root=coco_dir, checkpoint=tiny_export, work_dir=str(tmp_path),
                         cfg_options=SHORT, log_every=1)
    check_records(tmp_path, rows, "detection", "bbox_mAP", lambda options: run_detection(
        str(DEMO["mask_rcnn"]), data_root=coco_dir, work_dir=str(tmp_path / "eval"), cfg_options=options, train=False))
    assert "segm_mAP" in {row["name"] for row in rows}


@pytest.mark.slow
def test_dino_trains_and_reports_box_ap(coco_dir, tiny_export, tmp_path):
    rows = run_detection(str(DEMO["dino"]), data_root=coco_dir, checkpoint=tiny_export, work_dir=str(tmp_path),
                         cfg_options=SHORT, log_every=1)
    check_records(tmp_path, rows, "detection", "bbox_mAP", lambda options: run_detection(
        str(DEMO["dino"]), data_root=coco_dir, work_dir=str(tmp_path / "eval"), cfg_options=options, train=False))


def test_upernet_trains_and_reports_miou(ade_dir, tiny_export, tmp_path):
    rows = run_segmentation(str(DEMO["upernet"]), data_root=ade_dir, checkpoint=tiny_export, work_dir=str(tmp_path),
                            cfg_options=SHORT, log_every=1)
    check_records(tmp_path, rows, "segmentation", "mIoU", lambda options: run_segmentation(
        str(DEMO["upernet"]), data_root=ade_dir, work_dir=str(tmp_path / "eval"), cfg_options=options, train=False))


@pytest.mark.slow
def test_rotated_detector_trains_on_patches_and_reports_merged_dota_map(dota_dir, tiny_export, tmp_path):
    options = dict(SHORT, itpn_dota_split=dict(patch_size=64, gap=16))
    rows = run_rotated(str(DEMO["rotated"]), data_root=dota_dir, checkpoint=tiny_export, work_dir=str(tmp_path),
                       cfg_options=options, log_every=1)
    check_records(tmp_path, rows, "rotated", "mAP", lambda evaluation: run_rotated(
        str(DEMO["rotated"]), data_root=dota_dir, work_dir=str(tmp_path / "eval"), train=False,
        split_root=str(tmp_path / "split_64_16"), cfg_options={**options, **evaluation}))
    assert (tmp_path / "split_64_16" / "val" / "labelTxt").is_dir()


def test_task_and_config_must_match(tmp_path):
    with pytest.raises(ValueError, match="for task 'segmentation', not 'detection'"):
        run_detection(str(DEMO["upernet"]), work_dir=str(tmp_path))


def test_evaluation_only_needs_the_fine_tuned_weights(tmp_path):
    with pytest.raises(ValueError, match="train=False\\) needs the fine-tuned .*load_from"):
        run_detection(str(DEMO["mask_rcnn"]), work_dir=str(tmp_path), train=False)


def test_missing_data_root_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="data_root .*nowhere is not a folder"):
        run_detection(str(DEMO["mask_rcnn"]), data_root=str(tmp_path / "nowhere"), work_dir=str(tmp_path))


def _test_batch(name):
    from mmengine.structures import PixelData  # noqa: F401  (mmseg samples)

    image = torch.randint(0, 255, (3, 64, 64), dtype=torch.uint8)
    meta = dict(img_shape=(64, 64), ori_shape=(64, 64), pad_shape=(64, 64), scale_factor=(1.0, 1.0), img_id=0,
                img_path="generated.png")
    if name == "upernet":
        from mmseg.structures import SegDataSample

        sample = SegDataSample(metainfo=meta)
    else:
        from mmdet.structures import DetDataSample

        sample = DetDataSample(metainfo=meta)
    return dict(inputs=[image], data_samples=[sample])


@pytest.mark.parametrize("name", list(DEMO))
def test_every_acceleration_variant_runs_through_the_task_and_switching_back_restores_the_baseline(name):
    """The pipeline evaluates one fine-tuned model under variant after variant: each variant reaches the
    task's output (migration changes it), and switching back to the baseline gives its predictions again."""
    _, model = build(DEMO[name])
    model.eval()
    torch.manual_seed(0)
    batch = _test_batch(name)

    def predict(variant):
        set_acceleration(model.backbone.model, variant)
        with torch.no_grad():
            (prediction,) = model.test_step(copy.deepcopy(batch))
        if name == "upernet":
            assert prediction.pred_sem_seg.data.shape[-2:] == (64, 64)
            return prediction.seg_logits.data
        boxes = prediction.pred_instances.bboxes
        boxes = getattr(boxes, "tensor", boxes)
        assert boxes.shape[-1] == (5 if name == "rotated" else 4)
        return torch.cat([boxes.flatten(), prediction.pred_instances.scores])

    baseline = predict("baseline")
    outputs = {variant: predict(variant) for variant in VARIANTS}
    assert all(torch.isfinite(output).all() for output in outputs.values())
    assert torch.equal(predict("baseline"), baseline)
    for variant, output in outputs.items():
        if variant.startswith("migration"):
            assert output.shape != baseline.shape or not torch.allclose(output, baseline), variant
