# Rotated Faster R-CNN 1x on DOTA v1.0 with Fast-iTPN-B, the paper's Table 7 detector. Images are cut
# into 1024x1024 patches overlapping by 200 px (run_rotated calls itpn.data.split_dota), the detector
# trains on the train patches, and DOTA's Task-1 mAP is computed on the full val images after the
# patch detections are merged (DOTAMergedMetric). AdamW lr 1e-4, weight decay 0.05, layer-wise decay
# 0.90; 8 GPUs x 2 patches.
_base_ = ['mmrotate::rotated_faster_rcnn/rotated-faster-rcnn-le90_r50_fpn_1x_dota.py', '../_base_/itpn_runtime.py',
          '../_base_/itpn_backbone.py']

itpn_task = 'rotated'
itpn_dataset = 'dota'
itpn_dota_source = 'data/dota/'  # the unsplit data set: train/ and val/ with images/ and labelTxt/
itpn_dota_split = dict(patch_size=1024, gap=200)
data_root = 'data/dota/split_1024_200/'  # where run_rotated writes the patches

model = dict(
    backbone={{_base_.itpn_backbone}},
    neck=None,
)

dataset_type = 'ITPNDOTADataset'
train_dataloader = dict(
    dataset=dict(type=dataset_type, data_root=data_root, ann_file='train/labelTxt/',
                 data_prefix=dict(img_path='train/images/')))
val_dataloader = dict(
    dataset=dict(type=dataset_type, data_root=data_root, ann_file='val/labelTxt/',
                 data_prefix=dict(img_path='val/images/')))
test_dataloader = val_dataloader
val_evaluator = dict(_delete_=True, type='DOTAMergedMetric', full_ann_dir=itpn_dota_source + 'val/labelTxt/')
test_evaluator = val_evaluator

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    constructor='LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(layer_decay_rate=0.90),
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    clip_grad=dict(max_norm=35, norm_type=2),
)
