"""The paper's COCO and ADE20K rows as configs (Table 5, section 5.3): Mask R-CNN 1x/3x and Cascade Mask R-CNN
1x/3x for every size, UPerNet for every size. Each resolves to the schedule the paper states, the size's backbone
and, for UPerNet, a head whose input channels are what that backbone gives; the Cascade detector trains on
generated data and reports its box and mask AP."""
import math
from pathlib import Path

import pytest
import torch

from itpn.mmlab import load_config, run_detection
from itpn.mmlab.backbone import ITPNBackbone
from itpn.records import read_rows

from mmlab_helpers import CONFIGS
from test_mmlab_tasks import build

SIZES = {"fast-itpn-tiny": "fast_itpn_tiny_patch16_224", "fast-itpn-small": "fast_itpn_small_patch16_224",
         "fast-itpn-base": "fast_itpn_base_patch16_224", "fast-itpn-large": "fast_itpn_large_patch16_224",
         "itpn-base": "itpn_base_patch16_224", "itpn-large": "itpn_large_patch16_224"}
DETECTORS = [(family, schedule, size) for family in ("mask-rcnn", "cascade-mask-rcnn") for schedule in ("1x", "3x")
             for size in SIZES]


def detection_config(family: str, schedule: str, size: str) -> Path:
    return CONFIGS / "detection" / f"{family}_{size}_{schedule}_coco.py"


@pytest.mark.parametrize("family, schedule, size", DETECTORS)
def test_every_coco_row_has_its_schedule_and_its_backbone(family, schedule, size):
    cfg = load_config(str(detection_config(family, schedule, size)))
    epochs = {"1x": 12, "3x": 36}[schedule]
    [warmup, steps] = cfg.param_scheduler
    # section 5.3: "decays by a factor of 10 after 3/4 and 11/12 of fine-tuning epochs"
    assert cfg.train_cfg.max_epochs == epochs and steps.milestones == [epochs * 3 // 4, epochs * 11 // 12]
    assert steps.gamma == 0.1 and cfg.optim_wrapper.paramwise_cfg.layer_decay_rate == 0.90
    assert cfg.optim_wrapper.optimizer.lr == (3e-4 if family == "mask-rcnn" else 1e-4)
    assert cfg.model.type == ("MaskRCNN" if family == "mask-rcnn" else "CascadeRCNN")
    backbone = cfg.model.backbone
    assert backbone.type == "ITPNBackbone" and backbone.model_name == SIZES[size] and cfg.model.neck is None
    if family == "cascade-mask-rcnn":
        heads = cfg.model.roi_head.bbox_head
        assert [head.bbox_coder.target_stds[0] for head in heads] == [0.1, 0.05, 0.033]
        assert [stage.assigner.pos_iou_thr for stage in cfg.model.train_cfg.rcnn] == [0.5, 0.6, 0.7]
    # multi-scale training, single-scale testing (section 5.3)
    assert cfg.train_pipeline[3].type == "RandomChoice"


@pytest.mark.parametrize("size", list(SIZES))
def test_every_upernet_size_feeds_its_head_the_channels_its_backbone_gives(size):
    cfg = load_config(str(CONFIGS / "segmentation" / f"upernet_{size}_8xb2-160k_ade20k-512x512.py"))
    arguments = {key: value for key, value in cfg.model.backbone.items() if key != "type"}
    with torch.device("meta"):
        backbone = ITPNBackbone(**arguments)
    assert arguments["model_name"] == SIZES[size]
    assert cfg.model.decode_head.in_channels == backbone.out_channels
    assert cfg.model.auxiliary_head.in_channels == backbone.out_channels[2]


def test_the_full_cascade_config_builds_on_the_pretrained_pyramid():
    _, model = build(detection_config("cascade-mask-rcnn", "3x", "fast-itpn-base"),
                     model_name="fast_itpn_tiny_patch16_224", model_kwargs=dict(depths=(1, 1, 2)))
    assert type(model).__name__ == "CascadeRCNN" and not model.with_neck
    assert [type(head).__name__ for head in model.roi_head.bbox_head] == ["Shared4Conv1FCBBoxHead"] * 3


def test_cascade_mask_rcnn_trains_on_the_export_and_reports_box_and_mask_ap(coco_dir, tiny_export, tmp_path):
    config = CONFIGS / "detection" / "demo_cascade-mask-rcnn_fast-itpn-tiny_generated-coco.py"
    # two iterations, two validation images, fewer proposals, samples and detections than the demo keeps
    fewer = {"train_cfg.max_iters": 2, "train_cfg.val_interval": 2, "val_dataloader.dataset.indices": 2,
             "model.train_cfg.rpn_proposal.max_per_img": 64, "model.test_cfg.rpn.max_per_img": 64,
             "model.test_cfg.rcnn.max_per_img": 10,
             **{f"model.train_cfg.rcnn.{stage}.sampler.num": 64 for stage in range(3)}}
    rows = run_detection(str(config), data_root=coco_dir, checkpoint=tiny_export, work_dir=str(tmp_path),
                         cfg_options=fewer, log_every=1)
    names = {row["name"]: row["value"] for row in rows}
    assert {"bbox_mAP", "segm_mAP"} <= set(names) and all(row["model"] == "fast_itpn_tiny_patch16_224" for row in rows)
    losses = [row["value"] for row in read_rows(f"{tmp_path}/curve.jsonl") if row["name"] == "loss"]
    assert len(losses) == 2 and all(math.isfinite(value) for value in losses)


def test_objects365_pretraining_and_the_six_epoch_coco_fine_tune_of_table6():
    pretraining = load_config(str(CONFIGS / "detection" / "dino-5scale_fast-itpn-base_objects365.py"))
    assert pretraining.model.bbox_head.num_classes == 365 and pretraining.itpn_dataset == "objects365"
    for loader in (pretraining.train_dataloader, pretraining.val_dataloader):
        assert loader.dataset.type == "ITPNObjects365Dataset"
    assert pretraining.val_evaluator.ann_file.endswith("annotations/zhiyuan_objv2_val.json")
    fine_tune = load_config(str(CONFIGS / "detection" / "dino-5scale_fast-itpn-base_6e_coco-from-objects365.py"))
    assert fine_tune.train_cfg.max_epochs == 6 and fine_tune.model.bbox_head.num_classes == 80
    assert fine_tune.train_dataloader.dataset.type == "ITPNCocoDataset"
    assert fine_tune.model.backbone.model_name == pretraining.model.backbone.model_name
