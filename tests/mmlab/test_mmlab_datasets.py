"""The COCO and ADE20K fine-tunes read through OpenMMLab's data sets, which must leave out what prepare()
listed as skipped (a 0-byte image would otherwise reach mmdet / mmseg training), as the DOTA split does."""
import os

import pytest

from itpn.data import generate_ade20k, generate_coco, prepare
from itpn.mmlab import load_config
from itpn.mmlab.runner import set_data_root

from mmlab_helpers import CONFIGS

CASES = {  # data set kind: (config, generator and arguments, the image emptied, the data_root handed to mmlab)
    "coco": (CONFIGS / "detection/demo_mask-rcnn_fast-itpn-tiny_generated-coco.py",
             lambda url: generate_coco(url, seed=0, num_classes=3, train_images=4, val_images=2, image_size=64),
             "train2017/000000000002.jpg", ""),
    "ade20k": (CONFIGS / "segmentation/demo_upernet_fast-itpn-tiny_generated-ade20k.py",
               lambda url: generate_ade20k(url, seed=0, num_classes=3, train_images=4, val_images=2, image_size=64),
               "ADEChallengeData2016/images/training/ADE_train_00000002.jpg", "ADEChallengeData2016"),
}


def _train_set(config, data_root):
    from mmengine.registry import DefaultScope, init_default_scope

    cfg = load_config(str(config))
    set_data_root(cfg, data_root)
    init_default_scope(cfg.get("default_scope", "mmdet"))
    scope = DefaultScope.get_current_instance().scope_name
    datasets = __import__(f"{scope}.registry", fromlist=["DATASETS"]).DATASETS
    return datasets.build(cfg.train_dataloader.dataset)


@pytest.mark.parametrize("kind", list(CASES))
def test_an_image_prepare_skipped_does_not_reach_openmmlab_training(kind, tmp_path):
    config, generate, emptied, inner = CASES[kind]
    root = str(tmp_path / kind)
    generate(root)
    with open(os.path.join(root, emptied), "wb"):
        pass  # 0 bytes
    manifest = prepare(kind, root).manifest
    assert manifest["skipped"] == [emptied]
    dataset = _train_set(config, os.path.join(root, inner))
    paths = [os.path.relpath(dataset.get_data_info(i)["img_path"], root) for i in range(len(dataset))]
    assert emptied not in paths and len(paths) == 3
    os.remove(os.path.join(root, "manifest.json"))  # without a manifest nothing is left out
    assert len(_train_set(config, os.path.join(root, inner))) == 4
